//! One environment serves every role, and start-up failures say what to do: a coordinator reads
//! only `DEAI_NODE_*` (a participant's `DEAI_COORDINATORS` beside it is no error; an unknown
//! `DEAI_NODE_*` is a warning), and `deai dev` on a busy port fails at once, naming the port.

mod common;

use common::{free_port_run, wait_for, KilledOnDrop, Processes};
use std::process::{Command, Stdio};

#[test]
fn a_coordinator_starts_beside_participant_variables_and_warns_about_unknown_node_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-env"]);
    for (name, value) in [
        ("DEAI_COORDINATORS", "127.0.0.1:1"),
        ("DEAI_CLIENT_KEY_FILE", "client.key"),
        ("DEAI_MINER_BACKEND", "demo"),
        ("DEAI_NODE_NOT_A_SETTING", "1"),
    ] {
        cluster.env.push((name.into(), value.into()));
    }
    cluster.start_all();
    let log = std::fs::read_to_string(dir.path().join("node-0.log")).unwrap();
    let warning = log.lines().find(|l| l.contains("DEAI_NODE_NOT_A_SETTING")).expect("a warning naming the variable");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(!log.contains("DEAI_COORDINATORS"), "a participant's variable is none of the coordinator's business");
    cluster.stop_all_cleanly();
}

#[test]
fn deai_dev_on_a_busy_port_fails_at_once_naming_it() {
    let (raft, http, miners) = (free_port_run(), free_port_run(), free_port_run());
    let busy = std::net::TcpListener::bind(("127.0.0.1", http + 1)).expect("hold a port");
    let child = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["dev", "--raft-port-base", &raft.to_string()])
        .args(["--http-port-base", &http.to_string()])
        .args(["--miner-port-base", &miners.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deai dev runs");
    let mut child = KilledOnDrop(child);
    let status = wait_for("deai dev to give up", || child.0.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&format!("port {}", http + 1)), "{stderr}");
    assert!(stderr.contains("--http-port-base"), "the error says how to choose another: {stderr}");
    assert!(stdout.trim().is_empty(), "no banner for a network that did not start: {stdout}");
    drop(busy);
}

#[test]
fn a_missing_config_file_says_how_to_make_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["coordinator", "--config", "no-such-dir/node-0.toml"])
        .output()
        .expect("deai coordinator runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("deai genesis"), "{stderr}");
}

#[test]
fn a_coordinator_on_a_busy_http_port_names_it_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Processes::create(dir.path(), &["--network", "deai-busy"]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = busy.local_addr().unwrap().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_deai"))
        .arg("coordinator")
        .arg("--config")
        .arg(dir.path().join("node-0.toml"))
        .env("DEAI_NODE_RAFT_ADDR", &cluster.nodes[0].raft)
        .env("DEAI_NODE_HTTP_ADDR", &taken)
        .env("DEAI_NODE_PEERS", &cluster.peers)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deai coordinator runs");
    let mut child = KilledOnDrop(child);
    let status = wait_for("the coordinator to give up", || child.0.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&format!("cannot serve HTTP on {taken}")), "{stderr}");
    assert!(stderr.contains("DEAI_NODE_HTTP_ADDR"), "the error names the setting to change: {stderr}");
    drop(busy);
}
