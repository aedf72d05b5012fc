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
        let mut genesis = Genesis::dev("deai-test", coordinators.iter().map(|c| c.info()).collect());
        tweak(&mut genesis);
        let now_ms = genesis.start_ms;
        let ledger = Ledger::new(genesis).expect("test genesis is valid");
        TestNet { ledger, coordinators, now_ms }
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
        self.ledger.apply(&entry)
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
        self.ledger.apply(&entry)?;
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
pub fn output_hash(output: &[u8]) -> Digest {
    hash_parts("output", &[output])
}
