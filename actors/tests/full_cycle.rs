//! The actors drive a full task cycle through a 3-node cluster over loopback TCP (issue 5): a
//! client's order is allocated by the leader's scheduler, claimed by the assigned miner and
//! rated; the reward epoch closes at its boundary with payouts that sum exactly to the epoch's
//! reward, and every coordinator's payout signer signs them into a certified payout list. Then
//! the leader is stopped, and the new leader's scheduler serves the next order.

use deai_actors::{
    ActorMetrics, ActorsConfig, CoordinatorActors, Duties, QueueError, SessionEvent, CLIENT_QUEUE_CAPACITY,
};
use deai_clock::Clock;
use deai_cluster::admin::AdminCommand;
use deai_cluster::identity::CoordinatorIdentity;
use deai_cluster::network::peer_auth::PeerAuth;
use deai_cluster::network::tcp::{self, TcpNetwork};
use deai_cluster::outbox::CoordinatorOutbox;
use deai_cluster::{ClusterConfig, CoordinatorNode};
use deai_protocol::ledger::OrderStatus;
use deai_protocol::message::*;
use deai_protocol::testkit::Keys;
use deai_protocol::types::{AssetId, OrderId, Rating};
use deai_protocol::{Genesis, Ledger, SignedEnvelope};
use deai_storage::EntryOutcome;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const EPOCH_MS: u64 = 3_000;
const TOKEN: u128 = deai_protocol::params::TOKEN;

fn now_ms() -> u64 {
    deai_clock::SystemClock.now_ms()
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Participant {
    keys: Keys,
    nonce: u64,
}

impl Participant {
    fn new(name: &str) -> Self {
        Participant { keys: Keys::from_name(name), nonce: 0 }
    }

    fn entry(&mut self, network: &deai_protocol::types::NetworkId, message: Message) -> SignedEnvelope {
        self.nonce += 1;
        SignedEnvelope::seal(&self.keys.signing, network, self.nonce, &message)
    }

    /// A client's set-up: 100 tokens from the faucet, locked as stake, and a pass.
    fn staked_client(&mut self, network: &deai_protocol::types::NetworkId) -> Vec<SignedEnvelope> {
        let stake = 100 * TOKEN;
        vec![
            self.entry(network, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: stake })),
            self.entry(network, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: stake })),
            self.entry(network, Message::AcquirePass(AcquirePass {})),
        ]
    }

    /// A miner's set-up: 100 tokens from the faucet, locked as collateral at registration for
    /// free text generation, capacity 4.
    fn registered_miner(&mut self, network: &deai_protocol::types::NetworkId) -> Vec<SignedEnvelope> {
        vec![
            self.entry(network, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 100 * TOKEN })),
            self.entry(
                network,
                Message::RegisterMiner(RegisterMiner {
                    collateral: 100 * TOKEN,
                    capacity: 4,
                    endpoint: "http://127.0.0.1:1/miner".into(),
                    services: vec![ServiceOffer {
                        service: "text-generation".into(),
                        price_per_request: 0,
                        subscription_price: None,
                    }],
                }),
            ),
        ]
    }

    /// A free text-generation order with `prompt` inline.
    fn order(&mut self, network: &deai_protocol::types::NetworkId, prompt: &[u8]) -> SignedEnvelope {
        self.entry(
            network,
            Message::PutOrder(PutOrder {
                service: "text-generation".into(),
                mode: OrderMode::Free,
                payload: Payload::Inline(prompt.to_vec()),
            }),
        )
    }
}

struct Node {
    node: Arc<CoordinatorNode>,
    actors: Option<CoordinatorActors>,
    metrics: ActorMetrics,
    /// The outbox the node's actors sign with.
    outbox: CoordinatorOutbox,
}

/// The node id of the leader, once there is one.
async fn leader_of(nodes: &[Node]) -> usize {
    wait_for("a leader", || nodes[0].node.raft.metrics().borrow().current_leader).await as usize
}

/// Stops every node's actors (their threads join).
fn stop_actors(nodes: &mut [Node]) {
    for n in nodes.iter_mut() {
        if let Some(actors) = n.actors.take() {
            actors.stop();
        }
    }
}

/// Three coordinators over loopback TCP, each with its actors, for a network whose genesis
/// `tweak` adjusts (start time is now). Returns the nodes, the network id and the data dir.
async fn start_network(
    seed: u8,
    name: &str,
    tweak: impl FnOnce(&mut Genesis),
) -> (Vec<Node>, deai_protocol::types::NetworkId, tempfile::TempDir) {
    // Sessions must push on ledger changes: their own fallback look is out of the tests' reach.
    let actors = ActorsConfig { miner_session_poll_ms: 60_000, ..ActorsConfig::default() };
    start_network_with(seed, name, tweak, actors).await
}

/// [`start_network`] with the actors' timers of `actors`.
async fn start_network_with(
    seed: u8,
    name: &str,
    tweak: impl FnOnce(&mut Genesis),
    actors: ActorsConfig,
) -> (Vec<Node>, deai_protocol::types::NetworkId, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let identities: Vec<Arc<CoordinatorIdentity>> =
        (0..3u8).map(|i| Arc::new(CoordinatorIdentity::from_seed([i + seed; 32]))).collect();
    let mut genesis = Genesis::dev(name, identities.iter().map(|c| c.info()).collect());
    genesis.start_ms = now_ms();
    tweak(&mut genesis);
    let network = genesis.network_id.clone();
    let config = ClusterConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..ClusterConfig::default()
    };
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 0..3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode::new(listener.local_addr().unwrap().to_string()));
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (id, listener) in (0..3u64).zip(listeners) {
        let member_keys = (0..3u64).zip(identities.iter().map(|c| c.id())).collect();
        let auth = PeerAuth::new(id, &identities[id as usize].signing, member_keys).unwrap();
        let net = TcpNetwork::new(network.0.clone(), auth);
        let node_dir = dir.path().join(format!("n{id}"));
        let mut node =
            CoordinatorNode::start(id, &node_dir, genesis.clone(), net.clone(), &config, deai_clock::system())
                .await
                .unwrap();
        node.forward_writes_over_tcp(net.clone());
        let node = Arc::new(node);
        tokio::spawn(tcp::serve_node(listener, node.clone(), net));
        let outbox = CoordinatorOutbox::new(node.clone(), identities[id as usize].signing.clone());
        let duties = Duties::new(
            outbox.clone(),
            identities[id as usize].clone(),
            tokio::runtime::Handle::current(),
            actors.clone(),
        )
        .unwrap();
        let metrics = duties.metrics.clone();
        nodes.push(Node { node, actors: Some(CoordinatorActors::start(duties).unwrap()), metrics, outbox });
    }
    nodes[0].node.raft.initialize(members).await.unwrap();
    (nodes, network, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_drive_a_full_cycle_and_close_the_epoch_with_exact_payouts() {
    let (mut nodes, network, _dir) = start_network(10, "deai-actors", |g| g.params.epoch_ms = EPOCH_MS).await;
    let leader = leader_of(&nodes).await;
    let write = |i: usize, entries: Vec<SignedEnvelope>| {
        let node = nodes[i].node.clone();
        async move {
            let written = node.write(&entries).await.expect("write");
            assert!(written.outcome.outcomes.iter().all(|o| *o == EntryOutcome::Accepted), "{:?}", written.outcome);
            written
        }
    };

    // A client with stake and a pass; a miner with collateral, registered for text generation.
    let mut client = Participant::new("client");
    let mut miner = Participant::new("miner");
    let mut setup = client.staked_client(&network);
    setup.extend(miner.registered_miner(&network));
    write(leader, setup).await;

    // The client orders through a follower; the leader's scheduler allocates without being asked.
    let follower = (leader + 1) % 3;
    let put = client.order(&network, b"write a haiku");
    let order: OrderId = Ledger::order_id_of(&put);
    write(follower, vec![put]).await;
    let assigned = wait_for("the scheduler to allocate the order", || {
        nodes[follower].node.ledger().read().order(&order).and_then(|o| o.miner)
    })
    .await;
    assert_eq!(assigned, miner.keys.id, "the only eligible miner is chosen");

    // The miner serves and claims; the client rates.
    let output = b"an old silent pond";
    write(
        follower,
        vec![miner.entry(
            &network,
            Message::Claim(Claim { order, output_hash: deai_protocol::testkit::output_hash(output) }),
        )],
    )
    .await;
    write(follower, vec![client.entry(&network, Message::Rate(Rate { order, rating: Rating::Good }))]).await;
    assert!(matches!(nodes[leader].node.ledger().read().order(&order).map(|o| o.status), Some(OrderStatus::Rated)));

    // The reward epoch closes at its boundary; payouts sum exactly to the reward, land in the
    // miner's balance, and a quorum of coordinators certifies them.
    let balance_before =
        nodes[leader].node.ledger().read().account(&miner.keys.id).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
    let record = wait_for("epoch 0 closed and its payouts certified on every node", || {
        let records: Vec<_> = nodes
            .iter()
            .filter_map(|n| n.node.ledger().read().closed_epochs.get(&0).filter(|r| r.certified).cloned())
            .collect();
        (records.len() == 3).then(|| records[0].clone())
    })
    .await;
    let paid: u128 = record.payouts.iter().map(|p| p.1).sum();
    assert!(record.reward > 0);
    assert_eq!(paid, record.reward, "payouts sum exactly to the epoch reward");
    assert_eq!(record.payouts, vec![(miner.keys.id, record.reward)], "the only contributor takes it all");
    assert_eq!(record.signatures.len(), 3, "every coordinator signed the payouts");
    let balance_after = nodes[leader].node.ledger().read().account(&miner.keys.id).unwrap().balance(AssetId::NATIVE);
    assert_eq!(balance_after - balance_before, record.reward, "the payout is in the miner's balance");

    // The leader goes away; the new leader's scheduler allocates the next order.
    let mut old = nodes.remove(leader);
    old.actors.take().unwrap().stop();
    old.node.raft.shutdown().await.unwrap();
    let survivor = 0;
    wait_for("a new leader", || {
        nodes[survivor].node.raft.metrics().borrow().current_leader.filter(|l| *l as usize != leader)
    })
    .await;
    let put = client.order(&network, b"another");
    let second: OrderId = Ledger::order_id_of(&put);
    let written = nodes[survivor].node.write(&[put]).await.expect("write after failover");
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted]);
    wait_for("the new leader's scheduler to allocate", || {
        nodes[survivor].node.ledger().read().order(&second).and_then(|o| o.miner)
    })
    .await;
    stop_actors(&mut nodes);
}

/// A miner that goes away mid-order (issue 5): its order passes its deadline, the leader's
/// scheduler ticks, the ledger re-queues the order and takes the silent miner offline, and the
/// scheduler allocates it to the other miner, which serves it. The deadline (1 s) comes long
/// before the silent miner's lease lapses, so one missed deadline must take it offline here
/// (a failure limit of 1); with the defaults its lease would have lapsed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_miner_went_away_is_requeued_and_served_elsewhere() {
    let (mut nodes, network, _dir) = start_network(30, "deai-requeue", |g| {
        g.params.order_timeout_ms = 1_000;
        g.params.miner_max_consecutive_failures = 1;
    })
    .await;
    leader_of(&nodes).await;
    let node = nodes[0].node.clone();
    let write = |entries: Vec<SignedEnvelope>| {
        let node = node.clone();
        async move {
            let written = node.write(&entries).await.expect("write");
            assert!(written.outcome.outcomes.iter().all(|o| *o == EntryOutcome::Accepted), "{:?}", written.outcome);
        }
    };
    let mut client = Participant::new("client");
    let mut miners = [Participant::new("miner-a"), Participant::new("miner-b")];
    let mut setup = client.staked_client(&network);
    for m in miners.iter_mut() {
        setup.extend(m.registered_miner(&network));
    }
    write(setup).await;

    let put = client.order(&network, b"who serves me");
    let order: OrderId = Ledger::order_id_of(&put);
    write(vec![put]).await;
    let first = wait_for("the first allocation", || node.ledger().read().order(&order).and_then(|o| o.miner)).await;
    // The assigned miner goes away without a word; the other one is there.
    let other = miners.iter().position(|m| m.keys.id != first).unwrap();
    let second = wait_for("the order re-queued and allocated to the other miner", || {
        let ledger = node.ledger().read();
        ledger.order(&order).filter(|o| o.requeued).and_then(|o| o.miner)
    })
    .await;
    assert_eq!(second, miners[other].keys.id, "served elsewhere");
    assert!(!node.ledger().read().miner(&first).unwrap().online, "the silent miner is offline");
    let claim = miners[other].entry(
        &network,
        Message::Claim(Claim { order, output_hash: deai_protocol::testkit::output_hash(b"served elsewhere") }),
    );
    write(vec![claim]).await;
    assert_eq!(node.ledger().read().order(&order).unwrap().status, OrderStatus::Completed);
    stop_actors(&mut nodes);
}

/// Leadership moves (issue 5: actors start and stop with leadership changes): the deposed
/// leader's scheduler and reward epoch stop, and only the new leader runs them. actix keeps an
/// actor with running timers alive after its address is dropped, so without an explicit stop a
/// deposed leader's scheduler went on planning on the actor thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_stops_its_scheduler_and_reward_epoch() {
    let (mut nodes, _network, _dir) = start_network(150, "deai-step-down", |_| {}).await;
    let leader = leader_of(&nodes).await;
    let running = |i: usize, actor: &str| nodes[i].metrics.running(actor);
    let only = |i: usize| {
        (0..3).all(|n| running(n, "scheduler") == i64::from(n == i) && running(n, "reward_epoch") == i64::from(n == i))
    };
    wait_for("the leader's duties, and only the leader's", || only(leader).then_some(())).await;
    for n in 0..3 {
        assert_eq!(running(n, "leadership"), 1);
        assert_eq!(running(n, "payout_signer"), 1);
        assert_eq!(running(n, "checkpointer"), 1);
    }

    let to = (leader + 1) % 3;
    nodes[leader].node.admin(AdminCommand::TransferLeader { to: to as u64 }).await.expect("transfer");
    wait_for("the new leader's duties, and only its", || only(to).then_some(())).await;
    assert_eq!(nodes[leader].node.raft.metrics().borrow().current_leader, Some(to as u64));
    stop_actors(&mut nodes);
}

/// A miner's session (issue 5: `MinerSession`): opened on a follower, it pushes the miner's
/// new assignment without being asked, sends heartbeats while nothing happens, ends with
/// `replaced` when the miner opens another session on the same node, and with `shutdown` when
/// the node closes its sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_session_pushes_assignments_and_heartbeats() {
    let (mut nodes, network, _dir) = start_network(170, "deai-sessions", |_| {}).await;
    let leader = leader_of(&nodes).await;
    let follower = (leader + 1) % 3;
    let mut client = Participant::new("session-client");
    let mut miner = Participant::new("session-miner");
    let mut setup = client.staked_client(&network);
    setup.extend(miner.registered_miner(&network));
    let written = nodes[leader].node.write(&setup).await.expect("setup");
    assert!(written.outcome.outcomes.iter().all(|o| *o == EntryOutcome::Accepted), "{:?}", written.outcome);

    let sessions = nodes[follower].actors.as_ref().unwrap().miner_sessions();
    let mut events = sessions.open(miner.keys.id, 60_000, 1).expect("a session opens");
    let next = |events: &mut tokio::sync::mpsc::Receiver<SessionEvent>| {
        let mut events = std::mem::replace(events, tokio::sync::mpsc::channel(1).1);
        async move {
            let event = tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time");
            (event, events)
        }
    };

    // Nothing assigned yet: the session says it is alive.
    let (event, rest) = next(&mut events).await;
    events = rest;
    assert!(matches!(event, Some(SessionEvent::Heartbeat { .. })), "{event:?}");

    // An order is put; the leader allocates it; the follower's session pushes it.
    let put = client.order(&network, b"pushed");
    let order: OrderId = Ledger::order_id_of(&put);
    nodes[follower].node.write(&[put]).await.expect("order");
    let pushed = loop {
        let (event, rest) = next(&mut events).await;
        events = rest;
        match event {
            Some(SessionEvent::Assignments(list)) => break list,
            Some(SessionEvent::Heartbeat { .. }) => continue,
            other => panic!("unexpected session event {other:?}"),
        }
    };
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].order, order);
    assert_eq!(pushed[0].client, client.keys.id);
    assert_eq!(pushed[0].payload, b"pushed".to_vec());
    assert_eq!(nodes[follower].metrics.running("miner_session"), 1);

    // A second session of the same miner replaces the first; it starts with what is assigned.
    let mut second = sessions.open(miner.keys.id, 60_000, 2).expect("a second session opens");
    let replayed = sessions.open(miner.keys.id, 60_000, 2).expect_err("a request signed no later is a replay");
    assert_eq!(replayed.code(), "session_replay", "{replayed}");
    let (event, _) = next(&mut events).await;
    assert_eq!(event, Some(SessionEvent::End { reason: "replaced" }));
    let (event, rest) = next(&mut second).await;
    second = rest;
    assert!(
        matches!(&event, Some(SessionEvent::Assignments(list)) if list.len() == 1 && list[0].order == order),
        "{event:?}"
    );

    // Closing the node's sessions ends this one and refuses new ones.
    sessions.close();
    loop {
        let (event, rest) = next(&mut second).await;
        second = rest;
        match event {
            Some(SessionEvent::End { reason }) => {
                assert_eq!(reason, "shutdown");
                break;
            }
            Some(SessionEvent::Heartbeat { .. }) => continue,
            other => panic!("unexpected session event {other:?}"),
        }
    }
    assert!(sessions.open(miner.keys.id, 60_000, 3).is_err(), "a closed registry opens no session");
    wait_for("the sessions to stop", || (nodes[follower].metrics.running("miner_session") == 0).then_some(())).await;
    stop_actors(&mut nodes);
}

/// A session ends at its `max_ms` sharp, with an `end` line, whatever its timers: here the
/// heartbeat checks and the fallback look are minutes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_session_ends_at_its_max_ms() {
    let slow_timers =
        ActorsConfig { miner_session_poll_ms: 600_000, miner_heartbeat_ms: 600_000, ..ActorsConfig::default() };
    let (mut nodes, _network, _dir) = start_network_with(230, "deai-session-end", |_| {}, slow_timers).await;
    let sessions = nodes[0].actors.as_ref().unwrap().miner_sessions();
    let miner = Participant::new("short-session-miner");
    let mut events = sessions.open(miner.keys.id, 50, 1).expect("a session opens");
    let event = tokio::time::timeout(WAIT, events.recv()).await.expect("the session ends in time");
    assert_eq!(event, Some(SessionEvent::End { reason: "max_ms" }));
    stop_actors(&mut nodes);
}

/// Every coordinator's `Checkpointer` signs the checkpoints its own replica reaches (SPEC 6.3):
/// with a checkpoint every 8 entries, the first checkpoints are certified by a quorum on every
/// node, with signatures only from genesis coordinators over the root each node computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointers_sign_checkpoints_into_quorum_certificates() {
    let (mut nodes, network, _dir) = start_network(210, "deai-checkpoints", |g| g.params.checkpoint_every = 8).await;
    let leader = leader_of(&nodes).await;
    let mut client = Participant::new("checkpoint-client");
    // Twenty entries pass heights 8 and 16 (the signatures add entries of their own).
    for _ in 0..20 {
        let faucet = client.entry(&network, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: TOKEN }));
        let written = nodes[leader].node.write(&[faucet]).await.expect("faucet");
        assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted]);
    }
    for height in [8u64, 16] {
        wait_for("the checkpoint certified on every node", || {
            nodes
                .iter()
                .all(|n| n.node.ledger().read().checkpoints.get(&height).is_some_and(|c| c.certified))
                .then_some(())
        })
        .await;
    }
    let roots: Vec<_> = nodes.iter().map(|n| n.node.ledger().read().checkpoints[&8].root).collect();
    assert!(roots.iter().all(|r| *r == roots[0]), "every replica computed the same root");
    let ledger = nodes[leader].node.ledger().read();
    let signers = &ledger.checkpoints[&8].signatures;
    assert!(signers.len() >= 2, "a quorum of 2 of 3 signed: {}", signers.len());
    assert!(signers.keys().all(|s| ledger.is_coordinator(s)));
    drop(ledger);
    for n in &nodes {
        assert_eq!(n.metrics.running("checkpointer"), 1);
    }
    stop_actors(&mut nodes);
}

/// Allocation rides at the head of the leader's batches (SPEC 5.3 batching, issue 5 latency):
/// orders written concurrently through all three nodes are each allocated by the very first
/// entry of the batch after their own, planned from exactly the ledger that batch found, so no
/// plan is ever rejected and no coordinator is ever recorded as misbehaving. The leader's
/// outbox keeps submitting its own entries meanwhile: they take the nonces after the head's,
/// none is refused, and no head waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_allocated_at_the_head_of_the_next_batch() {
    let (mut nodes, network, _dir) = start_network(250, "deai-batch-heads", |_| {}).await;
    let leader = leader_of(&nodes).await;
    wait_for("the leader's scheduler", || (nodes[leader].metrics.running("scheduler") == 1).then_some(())).await;
    const CLIENTS: usize = 12;
    let mut clients: Vec<Participant> = (0..CLIENTS).map(|i| Participant::new(&format!("head-client-{i}"))).collect();
    let mut setup: Vec<SignedEnvelope> = clients.iter_mut().flat_map(|c| c.staked_client(&network)).collect();
    // Four miners of capacity 4: room for every order at once.
    for i in 0..4 {
        setup.extend(Participant::new(&format!("head-miner-{i}")).registered_miner(&network));
    }
    let written = nodes[leader].node.write(&setup).await.expect("setup");
    assert!(written.outcome.outcomes.iter().all(|o| *o == EntryOutcome::Accepted), "{:?}", written.outcome);

    // The leader's outbox submits its own entries all along.
    let outbox_busy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let own_entries = {
        let (outbox, busy) = (nodes[leader].outbox.clone(), outbox_busy.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                outcomes.push(outbox.submit(Message::Tick(Tick {})).await.map(|s| s.outcome));
            }
            outcomes
        })
    };

    // Three waves of orders, each written concurrently, spread over the three nodes.
    let mut placed = Vec::new();
    for wave in 0..3 {
        let mut writes = Vec::new();
        for (i, client) in clients.iter_mut().enumerate().filter(|(i, _)| i % 3 == wave) {
            let put = client.order(&network, b"lead me");
            let order = Ledger::order_id_of(&put);
            let node = nodes[i % 3].node.clone();
            writes.push(tokio::spawn(async move { (order, node.write(&[put]).await) }));
        }
        for w in writes {
            let (order, written) = w.await.unwrap();
            let written = written.expect("order written");
            assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted]);
            placed.push((order, written.outcome.height));
        }
        // Each wave's orders are allocated before the next wave goes in.
        for (order, _) in &placed {
            wait_for("the wave allocated", || nodes[leader].node.ledger().read().order(order).and_then(|o| o.miner))
                .await;
        }
    }

    outbox_busy.store(false, std::sync::atomic::Ordering::Relaxed);
    let own = own_entries.await.unwrap();
    assert!(!own.is_empty());
    for outcome in &own {
        assert!(matches!(outcome, Ok(EntryOutcome::Accepted)), "an own entry was refused: {outcome:?}");
    }

    let ledger = nodes[leader].node.ledger().read();
    for (order, batch_height) in &placed {
        let allocation = ledger.order(order).and_then(|o| o.allocation.clone()).expect("allocated");
        assert_eq!(
            allocation.height,
            batch_height + 1,
            "order {order:?} was allocated at height {}, not by the first entry after its batch (last height {batch_height})",
            allocation.height
        );
    }
    drop(ledger);
    let heads = &nodes[leader].node.metrics().batch_heads;
    assert!(heads.with_label_values(&["accepted"]).get() >= 1);
    assert_eq!(heads.with_label_values(&["rejected"]).get(), 0, "a head planned from its own ledger is never rejected");
    for n in &nodes {
        assert_eq!(n.node.metrics().storage.misbehaviour_evidence.get(), 0, "no coordinator recorded as misbehaving");
    }
    stop_actors(&mut nodes);
}

/// A client that sends faster than its batches can be written (issue 5: bounded mailboxes,
/// overload answered with a clear error, not a hang): its queue takes what fits, refuses the
/// rest at once with `client_queue_full`, and every batch it took is written and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_queue_refuses_what_does_not_fit_and_writes_the_rest() {
    let (mut nodes, network, _dir) = start_network(190, "deai-queue-full", |_| {}).await;
    let leader = leader_of(&nodes).await;
    let mut client = Participant::new("eager-client");
    let queues = nodes[leader].actors.as_ref().unwrap().client_queues();
    const SENT: usize = 4 * CLIENT_QUEUE_CAPACITY;
    let batches: Vec<Vec<SignedEnvelope>> = (0..SENT)
        .map(|_| vec![client.entry(&network, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: TOKEN }))])
        .collect();
    // Every submission reaches the queue in one pass, far faster than one batch is written.
    let answers = futures_util::future::join_all(batches.into_iter().map(|b| queues.submit(client.keys.id, b))).await;
    let full = answers.iter().filter(|a| matches!(a, Err(QueueError::Full))).count();
    let written = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(
        full + written,
        SENT,
        "every answer is a write or a refusal: {:?}",
        answers.iter().find(|a| a.is_err() && !matches!(a, Err(QueueError::Full)))
    );
    // The first CLIENT_QUEUE_CAPACITY always find a place; how many more do depends on how
    // many batches were written while the pass ran, which is not this test's business.
    assert!(full > 0, "nothing refused of {SENT} sent at once");
    assert!(written >= CLIENT_QUEUE_CAPACITY, "{written} written of {SENT}");
    assert_eq!(nodes[leader].metrics.refusals("client_queue", "client_queue_full"), full as u64);
    stop_actors(&mut nodes);
}
