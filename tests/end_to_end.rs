//! The main job end to end, through the real binary (issue 5): `deai dev --demo` brings up three
//! coordinators, three demo miners and a faucet, and a scripted client goes through stake →
//! pass → order → allocation → the miner executes → the client fetches the output and checks
//! it against the miner's claim → rating, for several cycles; then the epoch closes and its
//! payouts must sum exactly to the epoch reward and be in the miners' balances. The command
//! exits 0 only if all of that held.

mod common;

use common::free_port_run;
use std::process::Command;

#[test]
fn deai_dev_demo_completes_cycles_and_pays_out_exactly_the_epoch_reward() {
    let (raft, http, miners) = (free_port_run(), free_port_run(), free_port_run());
    let output = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["dev", "--demo", "--demo-cycles", "6"])
        .args(["--raft-port-base", &raft.to_string()])
        .args(["--http-port-base", &http.to_string()])
        .args(["--miner-port-base", &miners.to_string()])
        .output()
        .expect("deai dev runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "deai dev --demo failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("output checked, rated good").count(), 6, "{stdout}");
    assert!(stdout.contains("payouts sum exactly to the epoch reward"), "{stdout}");
    let paid = stdout.lines().find(|l| l.contains("closed: reward")).expect("an epoch line");
    // "epoch N closed: reward R, M miners paid P, S coordinator signatures"
    let numbers: Vec<u128> =
        paid.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).map(|t| t.parse().unwrap()).collect();
    assert_eq!(numbers[1], numbers[3], "reward equals the sum paid: {paid}");
    assert!(numbers[1] > 0 && numbers[2] >= 1, "{paid}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
