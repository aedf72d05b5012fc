//! A miner's session moves when its coordinator dies (issue 5: `deai miner` keeps a session
//! with any coordinator and fails over to another). Three coordinator processes and one real
//! `deai miner`; an order is served; the coordinator holding the miner's session (its
//! `deai_actors_running{actor="miner_session"}` is 1) is killed with SIGKILL; the next order is
//! served too, and the session now lives on a surviving node.

mod common;

use common::{get_text, hex, new_agent, spawn_miner, wait_for, Processes};
use deai_protocol::message::{AcquirePass, DevFaucet, LockStake, Message, OrderMode, Payload, PutOrder};
use deai_protocol::types::AssetId;
use deai_protocol::{Ledger, SignedEnvelope};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

const TOKEN: u128 = deai_protocol::params::TOKEN;

/// Sessions node `i` holds now, from its metrics.
fn sessions_on(agent: &ureq::Agent, cluster: &Processes, i: usize) -> Option<i64> {
    let text = get_text(agent, &cluster.url(i, "/metrics"))?;
    let line = text.lines().find(|l| l.starts_with("deai_actors_running{actor=\"miner_session\""))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[test]
fn a_miner_keeps_serving_when_its_sessions_coordinator_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-session-failover"]);
    let network = cluster.network_id();
    cluster.start_all();
    let agent = new_agent();
    wait_for("a leader", || {
        let mut r = agent.get(&cluster.url(0, "/v1/admin/status")).call().ok()?;
        r.body_mut().read_json::<Value>().ok()?["leader"].as_u64()
    });

    // A real miner, told about all three coordinators.
    let coordinators: Vec<String> = cluster.nodes.iter().map(|n| n.http.clone()).collect();
    let _miner = spawn_miner(dir.path(), [42u8; 32], &coordinators.join(","), "text-generation", &["--faucet"]);
    let holder =
        wait_for("the miner's session to open", || (0..3).find(|&i| sessions_on(&agent, &cluster, i) == Some(1)));

    // A client with stake and a pass; each order goes through a node that stays up.
    let client = SigningKey::from_bytes(&[43; 32]);
    let through = (holder + 1) % 3;
    let entries_url = cluster.url(through, "/v1/entries");
    let orders_url = cluster.url(through, "/v1/orders");
    let mut nonce = 0;
    let mut put = |message: Message| {
        nonce += 1;
        let envelope = SignedEnvelope::seal(&client, &network, nonce, &message);
        let body = json!({ "envelopes": [hex(&envelope.to_wire())] });
        let answer: Value = wait_for("the write to be answered", || {
            let mut r = agent.post(&entries_url).send_json(&body).ok()?;
            (r.status().as_u16() == 200).then(|| r.body_mut().read_json().ok()).flatten()
        });
        assert_eq!(answer["outcomes"][0], "accepted", "{answer}");
        envelope
    };
    put(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 100 * TOKEN }));
    put(Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 100 * TOKEN }));
    put(Message::AcquirePass(AcquirePass {}));
    let order = |text: &str| {
        Message::PutOrder(PutOrder {
            service: "text-generation".into(),
            mode: OrderMode::Free,
            payload: Payload::Inline(text.as_bytes().to_vec()),
        })
    };
    let claimed = |envelope: &SignedEnvelope| {
        let id = hex(&Ledger::order_id_of(envelope).0);
        wait_for("the miner to claim the order", || {
            let mut r = agent.get(&format!("{orders_url}/{id}?consistency=stale&wait_ms=1000")).call().ok()?;
            let view: Value = r.body_mut().read_json().ok()?;
            view["output_hash"].as_str().map(str::to_string)
        })
    };

    let first = put(order("before the kill"));
    claimed(&first);

    // The session's coordinator dies; the miner moves its session and serves the next order.
    let mut child = cluster.nodes[holder].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let second = put(order("after the kill"));
    claimed(&second);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    wait_for("the session to live on a surviving node", || {
        survivors.iter().any(|&i| sessions_on(&agent, &cluster, i) == Some(1)).then_some(())
    });
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new());
}
