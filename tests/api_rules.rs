//! Protocol rules and bad input through the public API of a running `deai dev` network
//! (issue 5): every bad request is answered with its stable code and changes nothing; an order
//! sent to a follower is served; a flooding client is frozen at its threshold (SPEC 5.2).

mod common;

use common::{free_port_run, hex, new_agent, wait_for, KilledOnDrop};
use deai_protocol::message::{AcquirePass, DevFaucet, LockStake, Message, OrderMode, Payload, PutOrder};
use deai_protocol::types::{AssetId, NetworkId};
use deai_protocol::SignedEnvelope;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const TOKEN: u128 = deai_protocol::params::TOKEN;

struct Api {
    agent: ureq::Agent,
    nodes: Vec<String>,
    network: NetworkId,
}

impl Api {
    fn post(&self, node: usize, path: &str, body: &Value) -> (u16, Value) {
        let mut r = self.agent.post(&format!("http://{}{path}", self.nodes[node])).send_json(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn post_raw(&self, node: usize, path: &str, bytes: &[u8]) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&format!("http://{}{path}", self.nodes[node]))
            .header("content-type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn get(&self, node: usize, path: &str) -> Value {
        let mut r = self.agent.get(&format!("http://{}{path}", self.nodes[node])).call().unwrap();
        r.body_mut().read_json().unwrap()
    }

    fn head(&self) -> Value {
        self.get(0, "/v1/ledger/head?consistency=stale")
    }

    /// Submits one envelope through `node`; returns the HTTP status and the entry's outcome or
    /// error code.
    fn submit(&self, node: usize, envelope: &SignedEnvelope) -> (u16, String) {
        let (status, body) = self.post(node, "/v1/entries", &json!({ "envelopes": [hex(&envelope.to_wire())] }));
        let outcome = body["outcomes"][0].as_str().or(body["code"].as_str()).unwrap_or("?").to_string();
        (status, outcome)
    }
}

struct Client {
    key: SigningKey,
    nonce: u64,
}

impl Client {
    fn seal(&mut self, api: &Api, message: Message) -> SignedEnvelope {
        self.nonce += 1;
        SignedEnvelope::seal(&self.key, &api.network, self.nonce, &message)
    }
}

fn order(prompt: &str) -> Message {
    Message::PutOrder(PutOrder {
        service: "text-generation".into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(prompt.as_bytes().to_vec()),
    })
}

/// Starts `deai dev` on free ports and waits for its three miners; returns the process (killed
/// on drop), the API and the registered miners' ids.
fn start_dev() -> (KilledOnDrop, Api, Vec<String>) {
    let (raft, http, miners) = (free_port_run(), free_port_run(), free_port_run());
    let dev = KilledOnDrop(
        Command::new(env!("CARGO_BIN_EXE_deai"))
            .args(["dev", "--raft-port-base", &raft.to_string(), "--http-port-base", &http.to_string()])
            .args(["--miner-port-base", &miners.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let nodes: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", http + i)).collect();
    let agent = new_agent();
    let miner_ids: Vec<String> = wait_for("three registered miners", || {
        let mut r = agent.get(&format!("http://{}/v1/miners?consistency=stale", nodes[0])).call().ok()?;
        let list: Vec<Value> = r.body_mut().read_json().ok()?;
        (list.len() == 3).then(|| list.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect())
    });
    let network = {
        let mut r = agent.get(&format!("http://{}/v1/ledger/head?consistency=stale", nodes[0])).call().unwrap();
        let head: Value = r.body_mut().read_json().unwrap();
        NetworkId(head["network_id"].as_str().unwrap().to_string())
    };
    (dev, Api { agent, nodes, network }, miner_ids)
}

#[test]
fn bad_requests_get_their_codes_follower_orders_are_served_and_a_flooder_is_frozen() {
    let (_dev, api, _) = start_dev();
    let status: Value = api.get(0, "/v1/admin/status");
    let leader = status["leader"].as_u64().unwrap() as usize;
    let follower = (leader + 1) % 3;

    // Bad input: each answered with its code, and the ledger does not move.
    let before = api.head();
    let (s, body) = api.post_raw(0, "/v1/ledger/entries", b"\x01garbage");
    assert_eq!((s, body["code"].as_str()), (400, Some("codec_invalid")), "{body}");
    let (s, body) = api.post(0, "/v1/entries", &json!({ "envelopes": ["zz"] }));
    assert_eq!((s, body["code"].as_str()), (400, Some("bad_hex")), "{body}");
    let (s, body) = api.post(0, "/v1/entries", &json!({ "envelopes": [] }));
    assert_eq!((s, body["code"].as_str()), (400, Some("empty_batch")), "{body}");
    let (s, body) = api.post_raw(0, "/v1/ledger/entries", &vec![1u8; 9 * 1024 * 1024]);
    assert_eq!(s, 413, "an oversized body is refused before it is read: {body}");
    let mut alice = Client { key: SigningKey::from_bytes(&[7; 32]), nonce: 0 };
    let faucet = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 * TOKEN });
    let mut unsigned = alice.seal(&api, faucet.clone());
    unsigned.signature = [0; 64];
    let log_index = |api: &Api| api.get(0, "/v1/admin/status")["last_log_index"].as_u64().unwrap();
    let index_before = log_index(&api);
    assert_eq!(api.submit(0, &unsigned), (400, "bad_signature".into()), "an unsigned entry is refused at the edge");
    assert_eq!(api.submit(follower, &unsigned), (400, "bad_signature".into()), "on every node");
    let wrong_network = SignedEnvelope::seal(&alice.key, &NetworkId("elsewhere".into()), 1, &faucet);
    assert_eq!(api.submit(0, &wrong_network), (400, "wrong_network".into()));
    let bricking = SignedEnvelope::seal(&alice.key, &api.network, u64::MAX, &faucet);
    assert_eq!(api.submit(0, &bricking), (400, "nonce_gap".into()), "no nonce can brick an account");
    assert_eq!(log_index(&api), index_before, "invalid envelopes never reach the log");
    // A miner session asked for an impossible length, or for an id that is not a key.
    let miner = hex(&[9; 32]);
    for (path, code) in [
        (format!("/v1/miners/{miner}/session?max_ms=0"), "bad_max_ms"),
        (format!("/v1/miners/{miner}/session?max_ms=300001"), "bad_max_ms"),
        ("/v1/miners/not-hex/session".to_string(), "bad_id"),
    ] {
        let mut r = api.agent.get(&format!("http://{}{path}", api.nodes[0])).call().unwrap();
        let body: Value = r.body_mut().read_json().unwrap();
        assert_eq!((r.status().as_u16(), body["code"].as_str()), (400, Some(code)), "{path}: {body}");
    }
    assert_eq!(api.head()["root"], before["root"], "rejected entries change nothing");
    assert_eq!(api.head()["height"], before["height"]);

    let funded = alice.seal(&api, faucet.clone());
    assert_eq!(api.submit(follower, &funded), (200, "accepted".into()), "writes through a follower");
    wait_for("the follower's write applied on node 0", || {
        (api.get(0, &format!("/v1/ledger/accounts/{}?consistency=stale", hex(alice.key.verifying_key().as_bytes())))
            ["last_nonce"]
            .as_u64()
            == Some(alice.nonce))
        .then_some(())
    });
    assert_eq!(
        api.submit(0, &funded),
        (400, "replay".into()),
        "the same envelope twice is a replay, refused at the edge"
    );

    // An order sent to a follower is allocated and served.
    for m in [
        Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 10 * TOKEN }),
        Message::AcquirePass(AcquirePass {}),
    ] {
        let e = alice.seal(&api, m);
        assert_eq!(api.submit(follower, &e).1, "accepted");
    }
    let first = alice.seal(&api, order("through a follower"));
    let id = hex(&deai_protocol::Ledger::order_id_of(&first).0);
    assert_eq!(api.submit(follower, &first).1, "accepted");
    wait_for("the follower's order to be served", || {
        let view = api.get(follower, &format!("/v1/orders/{id}?consistency=stale"));
        view["output_hash"].is_string().then_some(())
    });

    // A flooder: one stake unit (10 tokens) buys 10 free requests per window (SPEC 5.2); the
    // first order above that freezes the client, and it stays frozen.
    let mut codes = Vec::new();
    for i in 0..12 {
        let e = alice.seal(&api, order(&format!("flood {i}")));
        codes.push(api.submit(leader, &e).1);
    }
    let accepted = codes.iter().filter(|c| *c == "accepted").count();
    assert_eq!(accepted, 9, "ten requests per window, one already used: {codes:?}");
    assert!(codes[9..].iter().all(|c| c == "frozen"), "{codes:?}");
    // A frozen client is answered by its queue at once, with the time the freeze ends, and
    // costs no log entry.
    let e = alice.seal(&api, order("still frozen"));
    let (status, body) = api.post(leader, "/v1/entries", &json!({ "envelopes": [hex(&e.to_wire())] }));
    assert_eq!((status, body["code"].as_str()), (429, Some("frozen")), "{body}");
    assert!(body["until_ms"].as_u64().is_some_and(|t| t > 0), "{body}");
    let id = hex(&deai_protocol::Ledger::order_id_of(&e).0);
    let mut r = api.agent.get(&format!("http://{}/v1/orders/{id}", api.nodes[leader])).call().unwrap();
    assert_eq!(r.status().as_u16(), 404, "the refused order never reached the ledger");
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["code"], "not_found");
}

/// A rating abuser is restricted (SPEC 5.6): once every miner holds a good rating from an
/// honest client, each bad rating from another client goes against the majority; the seventh
/// within the window of ten restricts it, and its next rating is refused with
/// `rating_restricted`.
#[test]
fn a_client_rating_against_the_majority_is_restricted() {
    let (_dev, api, miner_ids) = start_dev();
    let setup = |client: &mut Client, stake_tokens: u128| {
        for m in [
            Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 * TOKEN }),
            Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: stake_tokens * TOKEN }),
            Message::AcquirePass(AcquirePass {}),
        ] {
            let e = client.seal(&api, m);
            assert_eq!(api.submit(0, &e).1, "accepted");
        }
    };
    // One served order, rated; returns the miner and the rating's outcome.
    let cycle = |client: &mut Client, i: usize, rating: deai_protocol::types::Rating| {
        let put = client.seal(&api, order(&format!("cycle {i}")));
        let id = hex(&deai_protocol::Ledger::order_id_of(&put).0);
        assert_eq!(api.submit(0, &put).1, "accepted");
        let miner = wait_for("the order served", || {
            let view = api.get(0, &format!("/v1/orders/{id}?consistency=stale&wait_ms=1000"));
            view["output_hash"].is_string().then(|| view["miner"].as_str().unwrap().to_string())
        });
        let mut order_id = [0u8; 32];
        for (k, byte) in order_id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&id[2 * k..2 * k + 2], 16).unwrap();
        }
        let rate = client.seal(
            &api,
            Message::Rate(deai_protocol::message::Rate { order: deai_protocol::types::OrderId(order_id), rating }),
        );
        (miner, api.submit(0, &rate).1)
    };

    let mut honest = Client { key: SigningKey::from_bytes(&[21; 32]), nonce: 0 };
    setup(&mut honest, 100);
    let mut rated = std::collections::BTreeSet::new();
    for i in 0..60 {
        let (miner, outcome) = cycle(&mut honest, i, deai_protocol::types::Rating::Good);
        assert_eq!(outcome, "accepted");
        rated.insert(miner);
        if rated.len() == miner_ids.len() {
            break;
        }
    }
    assert_eq!(rated.len(), 3, "every miner has a good rating");

    let mut abuser = Client { key: SigningKey::from_bytes(&[22; 32]), nonce: 0 };
    setup(&mut abuser, 10);
    let outcomes: Vec<String> =
        (0..8).map(|i| cycle(&mut abuser, 100 + i, deai_protocol::types::Rating::Bad).1).collect();
    assert!(outcomes[..7].iter().all(|o| o == "accepted"), "{outcomes:?}");
    assert_eq!(outcomes[7], "rating_restricted", "the eighth rating is refused: {outcomes:?}");
}
