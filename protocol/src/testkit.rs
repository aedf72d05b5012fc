//! Deterministic keys and a small network builder, so that each test reads as the scenario it
//! checks. Enabled by the `testkit` feature (tests and benches turn it on); nothing here is
//! used by the ledger itself.

use crate::hash::hash_parts;
use crate::ledger::{Effects, Entry, Ledger};
use crate::message::*;
use crate::params::{CoordinatorInfo, Genesis};
use crate::types::{Amount, AssetId, Digest, OrderId, ParticipantId, Rating};
use crate::vrf::VrfSecret;
use crate::{Rejection, SignedEnvelope};
use ed25519_dalek::{Signer, SigningKey};

/// A participant's ed25519 key, derived from a name so that runs are reproducible.
#[derive(Clone)]
pub struct Keys {
    pub signing: SigningKey,
    pub id: ParticipantId,
}

impl Keys {
    pub fn from_name(name: &str) -> Keys {
        let seed = hash_parts("testkit-key", &[name.as_bytes()]);
        let signing = SigningKey::from_bytes(&seed);
        let id = ParticipantId(signing.verifying_key().to_bytes());
        Keys { signing, id }
    }

    /// A detached signature, for checkpoint and payout signatures.
    pub fn sign_detached(&self, bytes: &[u8]) -> [u8; 64] {
        self.signing.sign(bytes).to_bytes()
    }
}

/// A coordinator's two keys.
pub struct CoordinatorKeys {
    pub keys: Keys,
    pub vrf: VrfSecret,
}

impl CoordinatorKeys {
    pub fn from_name(name: &str) -> Self {
        CoordinatorKeys {
            keys: Keys::from_name(name),
            vrf: VrfSecret::from_seed(hash_parts("testkit-vrf", &[name.as_bytes()])),
        }
    }
    pub fn info(&self) -> CoordinatorInfo {
        CoordinatorInfo { id: self.keys.id, vrf_key: self.vrf.public() }
    }
}

/// One ledger plus the keys to drive it. Ledger time is whatever `now_ms` says.
pub struct TestNet {
    pub ledger: Ledger,
    pub coordinators: Vec<CoordinatorKeys>,
    pub now_ms: u64,
    /// Every entry accepted through this net's helpers, in order: the history to replay on
    /// another replica.
    pub accepted: Vec<Entry>,
}

/// The genesis of a [`TestNet`] with `n` coordinators: dev network `deai-test`, default
/// parameters but two: ledger time may move any distance in one entry, so that a scenario can
/// jump a week with one stamp instead of the catch-up ticks a leader would send, and a miner's
/// lease never lapses, so that a miner stays eligible across such a jump without the renewals
/// its agent would send. The time rule and the lease are tested with their defaults
/// (`tests/ledger_time.rs`, `tests/rules_liveness.rs`). Replicas started from it accept the
/// entries a `TestNet` seals.
pub fn test_genesis(n: usize) -> Genesis {
    let infos = (0..n).map(|i| CoordinatorKeys::from_name(&format!("coordinator-{i}")).info()).collect();
    let mut genesis = Genesis::dev("deai-test", infos);
    genesis.params.max_ledger_step_ms = u64::MAX;
    genesis.params.miner_lease_ms = u64::MAX;
    genesis
}

/// The stake a [`TestNet::client`] locks: 10 stake units, so 100 free orders per window.
pub const CLIENT_STAKE: Amount = 100 * crate::params::TOKEN;
/// The collateral a [`TestNet::miner`] locks.
pub const MINER_COLLATERAL: Amount = 100 * crate::params::TOKEN;

impl TestNet {
    /// A dev network with three coordinators and default parameters.
    pub fn new() -> Self {
        Self::with_genesis(3, |_| {})
    }

    /// A dev network with `n` coordinators; `tweak` may change the genesis first.
    pub fn with_genesis(n: usize, tweak: impl FnOnce(&mut Genesis)) -> Self {
        let coordinators: Vec<CoordinatorKeys> =
            (0..n).map(|i| CoordinatorKeys::from_name(&format!("coordinator-{i}"))).collect();
        let mut genesis = test_genesis(n);
        tweak(&mut genesis);
        let now_ms = genesis.start_ms;
        let ledger = Ledger::new(genesis).expect("test genesis is valid");
        TestNet { ledger, coordinators, now_ms, accepted: Vec::new() }
    }

    /// The coordinator that plays leader: the first one.
    pub fn leader(&self) -> &CoordinatorKeys {
        &self.coordinators[0]
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// Seals `message` as `who` with its next nonce, stamped with `now_ms`.
    pub fn entry(&self, who: &Keys, message: Message) -> Entry {
        let nonce = self.ledger.next_nonce(&who.id);
        Entry {
            stamped_ms: self.now_ms,
            envelope: SignedEnvelope::seal(&who.signing, &self.ledger.network_id, nonce, &message),
        }
    }

    pub fn submit(&mut self, who: &Keys, message: Message) -> Result<Effects, Rejection> {
        let entry = self.entry(who, message);
        self.apply_recorded(entry)
    }

    /// Applies `entry` and records it in `accepted` if the ledger accepts it.
    pub fn apply_recorded(&mut self, entry: Entry) -> Result<Effects, Rejection> {
        let effects = self.ledger.apply(&entry)?;
        self.accepted.push(entry);
        Ok(effects)
    }

    /// Submits as coordinator `i`.
    pub fn submit_as_coordinator(&mut self, i: usize, message: Message) -> Result<Effects, Rejection> {
        let keys = self.coordinators[i].keys.clone();
        self.submit(&keys, message)
    }

    pub fn faucet(&mut self, who: &Keys, asset: AssetId, amount: Amount) {
        self.submit(who, Message::DevFaucet(DevFaucet { asset, amount })).expect("faucet");
    }

    /// A client with `CLIENT_STAKE` native stake locked and a valid pass.
    pub fn client(&mut self, name: &str) -> Keys {
        self.client_with_stake(name, CLIENT_STAKE)
    }

    pub fn client_with_stake(&mut self, name: &str, stake: Amount) -> Keys {
        let k = Keys::from_name(name);
        self.faucet(&k, AssetId::NATIVE, stake);
        self.submit(&k, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: stake })).expect("lock");
        self.submit(&k, Message::AcquirePass(AcquirePass {})).expect("pass");
        k
    }

    /// A registered, online miner offering `services` with `capacity`.
    pub fn miner(&mut self, name: &str, services: &[&str], capacity: u32) -> Keys {
        let k = Keys::from_name(name);
        self.faucet(&k, AssetId::NATIVE, MINER_COLLATERAL);
        let services = services
            .iter()
            .map(|s| ServiceOffer {
                service: s.to_string(),
                price_per_request: 0,
                subscription_price: Some(crate::params::TOKEN),
            })
            .collect();
        self.submit(
            &k,
            Message::RegisterMiner(RegisterMiner {
                collateral: MINER_COLLATERAL,
                capacity,
                endpoint: format!("http://127.0.0.1/{name}"),
                services,
            }),
        )
        .expect("register");
        k
    }

    /// Places an order and returns its id.
    pub fn put(&mut self, client: &Keys, service: &str, mode: OrderMode) -> Result<OrderId, Rejection> {
        let entry = self.entry(
            client,
            Message::PutOrder(PutOrder { service: service.into(), mode, payload: Payload::Inline(b"prompt".to_vec()) }),
        );
        let id = Ledger::order_id_of(&entry.envelope);
        self.apply_recorded(entry)?;
        Ok(id)
    }

    pub fn put_free(&mut self, client: &Keys, service: &str) -> OrderId {
        self.put(client, service, OrderMode::Free).expect("free order")
    }

    /// The leader allocates up to `max` pending orders honestly. `None` if nothing is ready.
    pub fn allocate(&mut self, max: usize) -> Option<Result<Effects, Rejection>> {
        let plan = self.ledger.plan_allocation(&self.coordinators[0].vrf, max)?;
        Some(self.submit_as_coordinator(0, Message::Allocate(plan)))
    }

    /// The assigned miner of `order`.
    pub fn assigned(&self, order: &OrderId) -> Option<ParticipantId> {
        self.ledger.order(order).and_then(|o| o.miner)
    }

    pub fn claim(&mut self, miner: &Keys, order: OrderId, output: &[u8]) -> Result<Effects, Rejection> {
        let output_hash = output_hash(output);
        self.submit(miner, Message::Claim(Claim { order, output_hash }))
    }

    pub fn rate(&mut self, client: &Keys, order: OrderId, rating: Rating) -> Result<Effects, Rejection> {
        self.submit(client, Message::Rate(Rate { order, rating }))
    }

    pub fn tick(&mut self) -> Effects {
        self.submit_as_coordinator(0, Message::Tick(Tick {})).expect("tick is always accepted")
    }

    /// Closes the open epoch with the honest payouts (advancing time to its end if needed).
    pub fn close_epoch(&mut self) -> Result<Effects, Rejection> {
        self.now_ms = self.now_ms.max(self.ledger.epoch_ends_ms());
        let (_, payouts) = self.ledger.expected_payouts();
        let epoch = self.ledger.epoch.number;
        self.submit_as_coordinator(0, Message::CloseEpoch(CloseEpoch { epoch, payouts }))
    }

    /// Signs the checkpoint at `height` as coordinator `i`, with `root` (honest or not).
    pub fn sign_checkpoint(&mut self, i: usize, height: u64, root: Digest) -> Result<Effects, Rejection> {
        let bytes = crate::ledger::checkpoint_signing_bytes(&self.ledger.network_id, height, &root);
        let signature = self.coordinators[i].keys.sign_detached(&bytes);
        self.submit_as_coordinator(i, Message::SignCheckpoint(SignCheckpoint { height, root, signature }))
    }

    /// One full task cycle: put, allocate, claim by the assigned miner, rate. Returns the order
    /// and its miner. `miners` must hold the keys of every miner that could be chosen.
    pub fn full_cycle(
        &mut self,
        client: &Keys,
        miners: &[Keys],
        service: &str,
        rating: Rating,
    ) -> (OrderId, ParticipantId) {
        let order = self.put_free(client, service);
        self.allocate(1).expect("a miner is ready").expect("honest allocation");
        let miner_id = self.assigned(&order).expect("allocated");
        let miner = miners.iter().find(|m| m.id == miner_id).expect("known miner").clone();
        self.claim(&miner, order, b"output").expect("claim");
        self.rate(client, order, rating).expect("rate");
        (order, miner_id)
    }
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

/// The output hash a miner claims for `output`.
pub use crate::ledger::output_hash;

/// Runs `f`, which must be refused with `code`, and checks that nothing changed: root, height,
/// ledger time and the whole state (a rejected entry changes nothing).
pub fn expect_rejected(
    net: &mut TestNet,
    code: &str,
    f: impl FnOnce(&mut TestNet) -> Result<Effects, Rejection>,
) -> Rejection {
    let err = rejected_unchanged(net, f);
    assert_eq!(err.code(), code, "unexpected rejection: {err}");
    err
}

/// Applies `entry`, expects a rejection and checks that nothing changed.
pub fn reject(net: &mut TestNet, entry: &Entry) -> Rejection {
    rejected_unchanged(net, |n| n.ledger.apply(entry))
}

/// Stamps `envelope` with the current time and expects a rejection with no state change.
pub fn reject_envelope(net: &mut TestNet, envelope: SignedEnvelope) -> Rejection {
    let entry = Entry { stamped_ms: net.now_ms, envelope };
    reject(net, &entry)
}

/// Seals `message` as `who` with its next nonce and expects a rejection with no state change.
pub fn reject_msg(net: &mut TestNet, who: &Keys, message: Message) -> Rejection {
    let entry = net.entry(who, message);
    reject(net, &entry)
}

fn rejected_unchanged(net: &mut TestNet, f: impl FnOnce(&mut TestNet) -> Result<Effects, Rejection>) -> Rejection {
    let (root, height, now, digest) =
        (net.ledger.root, net.ledger.height, net.ledger.now_ms, net.ledger.state_digest());
    let err = f(net).expect_err("the entry must be rejected");
    assert_eq!(net.ledger.root, root, "rejected entry ({err}) moved the root");
    assert_eq!(net.ledger.height, height, "rejected entry ({err}) moved the height");
    assert_eq!(net.ledger.now_ms, now, "rejected entry ({err}) moved ledger time");
    assert_eq!(net.ledger.state_digest(), digest, "rejected entry ({err}) changed the state");
    err
}

/// A steady stream of full signed task cycles (put, allocate, claim, rate) on a network sized so
/// that no client is frozen and no miner is busy: the workload of the benchmarks.
pub struct CycleWorkload {
    pub net: TestNet,
    pub clients: Vec<Keys>,
    pub miners: std::collections::BTreeMap<ParticipantId, Keys>,
    next_client: usize,
}

impl CycleWorkload {
    /// The service every order asks for.
    pub const SERVICE: &'static str = "text-generation";
    /// Distinct clients placing orders in turn.
    pub const CLIENTS: usize = 64;
    /// Registered miners offering the service.
    pub const MINERS: usize = 16;
    /// Per-miner capacity: large, so that no miner is ever busy.
    pub const MINER_CAPACITY: u32 = 1_000_000;
    /// Stake per client: large, so that no client reaches its admission limit.
    pub const CLIENT_STAKE: Amount = 1_000_000 * crate::params::TOKEN;
    /// Inline prompt carried by each order.
    pub const PROMPT: &'static [u8] = &[b'p'; 128];
    pub const OUTPUT: &'static [u8] = b"output";

    pub fn new() -> Self {
        let mut net = TestNet::new();
        let miners = (0..Self::MINERS)
            .map(|i| {
                let k = net.miner(&format!("bench-miner-{i}"), &[Self::SERVICE], Self::MINER_CAPACITY);
                (k.id, k)
            })
            .collect();
        let clients = (0..Self::CLIENTS)
            .map(|i| net.client_with_stake(&format!("bench-client-{i}"), Self::CLIENT_STAKE))
            .collect();
        CycleWorkload { net, clients, miners, next_client: 0 }
    }

    /// Runs `cycles` full cycles, allocating `batch` orders per `Allocate` entry. Each entry is
    /// sealed against the workload's ledger, applied to it by `step`, then handed to `sink`.
    pub fn run(
        &mut self,
        cycles: usize,
        batch: usize,
        mut step: impl FnMut(&mut Ledger, &Entry),
        mut sink: impl FnMut(Entry),
    ) {
        let leader = self.net.leader().keys.clone();
        let mut done = 0;
        while done < cycles {
            let n = batch.min(cycles - done);
            let mut orders: Vec<(OrderId, usize)> = Vec::with_capacity(n);
            for _ in 0..n {
                let ci = self.next_client % self.clients.len();
                self.next_client += 1;
                let put = PutOrder {
                    service: Self::SERVICE.into(),
                    mode: OrderMode::Free,
                    payload: Payload::Inline(Self::PROMPT.to_vec()),
                };
                let e = self.net.entry(&self.clients[ci], Message::PutOrder(put));
                orders.push((Ledger::order_id_of(&e.envelope), ci));
                step(&mut self.net.ledger, &e);
                sink(e);
            }
            let plan = self.net.ledger.plan_allocation(&self.net.coordinators[0].vrf, n).expect("a miner is ready");
            assert_eq!(plan.orders.len(), n, "every pending order is allocated");
            let e = self.net.entry(&leader, Message::Allocate(plan));
            step(&mut self.net.ledger, &e);
            sink(e);
            for (order, _) in &orders {
                let miner = self.net.assigned(order).expect("allocated");
                let claim = Claim { order: *order, output_hash: output_hash(Self::OUTPUT) };
                let e = self.net.entry(&self.miners[&miner], Message::Claim(claim));
                step(&mut self.net.ledger, &e);
                sink(e);
            }
            for (order, ci) in &orders {
                let e = self.net.entry(&self.clients[*ci], Message::Rate(Rate { order: *order, rating: Rating::Good }));
                step(&mut self.net.ledger, &e);
                sink(e);
            }
            self.net.advance(n as u64);
            done += n;
        }
    }
}

impl Default for CycleWorkload {
    fn default() -> Self {
        Self::new()
    }
}
