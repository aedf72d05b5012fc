//! Leader failover during client load loses no accepted order (issue 5): clients put orders
//! through every node of three real coordinator processes; the leader is killed with SIGKILL
//! mid-load and restarted; every order the API acknowledged as accepted is then on every node.

mod common;

use common::{get_json, hex, new_agent, wait_for, Processes};
use deai_protocol::message::{AcquirePass, DevFaucet, LockStake, Message, OrderMode, Payload, PutOrder};
use deai_protocol::types::AssetId;
use deai_protocol::{Ledger, SignedEnvelope};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const CLIENTS: u8 = 4;
const TOKEN: u128 = deai_protocol::params::TOKEN;

/// Posts one envelope; `Some(outcome)` if the API answered 200.
fn post(agent: &ureq::Agent, url: &str, envelope: &SignedEnvelope) -> Option<String> {
    let body = json!({ "envelopes": [hex(&envelope.to_wire())] });
    let mut r = agent.post(url).send_json(body).ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    let v: Value = r.body_mut().read_json().ok()?;
    v["outcomes"][0].as_str().map(str::to_string)
}

#[test]
fn no_accepted_order_is_lost_when_the_leader_dies_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-failover"]);
    let network = cluster.network_id();
    cluster.start_all();
    let agent = new_agent();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i, "/v1/entries")).collect();

    // Clients with stake (room for 100,000 requests per window) and a pass.
    let keys: Vec<SigningKey> = (0..CLIENTS).map(|c| SigningKey::from_bytes(&[c + 60; 32])).collect();
    for key in &keys {
        for (nonce, message) in [
            Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 200_000 * TOKEN }),
            Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 100_000 * TOKEN }),
            Message::AcquirePass(AcquirePass {}),
        ]
        .into_iter()
        .enumerate()
        {
            let e = SignedEnvelope::seal(key, &network, nonce as u64 + 1, &message);
            let outcome = wait_for("a setup entry", || post(&agent, &urls[0], &e));
            assert_eq!(outcome, "accepted");
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(c, key)| {
            let (key, network, urls) = (key.clone(), network.clone(), urls.clone());
            let (stop, acked, accepted) = (stop.clone(), acked.clone(), accepted.clone());
            std::thread::spawn(move || {
                let agent = new_agent();
                let mut nonce = 3;
                let mut target = c % 3;
                while !stop.load(Ordering::Relaxed) {
                    nonce += 1;
                    let order = Message::PutOrder(PutOrder {
                        service: "text-generation".into(),
                        mode: OrderMode::Free,
                        payload: Payload::Inline(format!("order {c}/{nonce}").into_bytes()),
                    });
                    let envelope = SignedEnvelope::seal(&key, &network, nonce, &order);
                    if post(&agent, &urls[target], &envelope).as_deref() == Some("accepted") {
                        accepted.lock().unwrap().push(hex(&Ledger::order_id_of(&envelope).0));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    target = (target + 1) % 3;
                }
            })
        })
        .collect();

    let count = || acked.load(Ordering::Relaxed);
    wait_for("orders under way", || (count() >= 100).then_some(()));
    let leader = wait_for("a leader", || {
        get_json(&agent, &cluster.url(0, "/v1/admin/status")).and_then(|s| s["leader"].as_u64())
    }) as usize;
    let mut child = cluster.nodes[leader].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = count();
    wait_for("orders accepted by the new leader", || (count() >= at_kill + 100).then_some(()));
    cluster.start(leader);
    cluster.wait_ready(leader);
    let at_restart = count();
    wait_for("orders after the restart", || (count() >= at_restart + 50).then_some(()));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let accepted = accepted.lock().unwrap().clone();
    wait_for("all nodes at the same applied index", || {
        let s: Vec<Value> = (0..3).filter_map(|i| get_json(&agent, &cluster.url(i, "/v1/admin/status"))).collect();
        (s.len() == 3 && s.iter().all(|x| x["applied_index"] == s[0]["applied_index"])).then_some(())
    });
    for i in 0..3 {
        for order in &accepted {
            let view = get_json(&agent, &cluster.url(i, &format!("/v1/orders/{order}?consistency=stale")));
            assert!(view.is_some(), "node {i} lost accepted order {order}");
        }
    }
    assert!(accepted.len() >= 250, "{} orders accepted", accepted.len());
    cluster.stop_all_cleanly();
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new());
}
