//! `deai sim` end to end: a thousand seeds hold every invariant, a seed replays with the same
//! fingerprint, and the canary (a test build's known bug) is caught with the command that
//! replays it.

use std::process::{Command, Output};

/// Seeds the suite runs on every change.
const SEEDS: &str = "1000";

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deai")).arg("sim").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_thousand_seeds_hold_every_invariant() {
    let output = sim(&["--seeds", SEEDS]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains(&format!("{SEEDS} seeds (0 to 999): all valid")), "{stdout}");
    assert!(stdout.contains("seeds per minute"), "{stdout}");
}

fn fingerprint(stdout: &str) -> &str {
    stdout.split("fingerprint ").nth(1).map(str::trim).unwrap_or_else(|| panic!("no fingerprint in {stdout:?}"))
}

#[test]
fn a_seed_replays_the_same_run() {
    let runs: Vec<String> = [17, 17, 18].iter().map(|s| text(&sim(&["--seed", &s.to_string()]).stdout)).collect();
    for run in &runs {
        assert!(run.contains(": valid;") && run.contains("faults:"), "{run}");
    }
    assert_eq!(runs[0], runs[1], "seed 17 twice: the same operations, faults, messages and states");
    assert_ne!(fingerprint(&runs[0]), fingerprint(&runs[2]), "another seed, another run");
}

/// The canary acknowledges every third batch without proposing it: the simulation must call
/// that a lost acknowledged write and print how to replay it.
#[test]
fn the_canary_is_caught_with_a_replay_command() {
    let canary = r#"{"canary_ack_without_commit_every": 3}"#;
    let output = sim(&["--seeds", "8", "--node-faults", canary]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("INVALID") && stdout.contains("violated: acknowledged_writes_kept"), "{stdout}");
    assert!(stdout.contains("replay: deai sim --seed ") && stdout.contains("--node-faults"), "{stdout}");
}

#[test]
fn a_sim_without_seeds_or_with_a_bad_node_count_is_refused() {
    for args in [&[][..], &["--seed", "1", "--nodes", "4"][..]] {
        let output = sim(args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("--seed") || stderr.contains("--nodes"), "{stderr}");
    }
}
