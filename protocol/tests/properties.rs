//! Property tests of the ledger state machine and the SPEC 8 rules.
//!
//! Most properties run random *scenarios*: a fixed population (4 clients, 3 miners, 3
//! coordinators, deterministic keys) and a random list of abstract operations. Each operation is
//! turned into a concrete signed [`Entry`] against the ledger state at that point, so most entries
//! are valid, and some are invalid on purpose (forged allocations, wrong payouts, bad signatures,
//! replays, wrong roles and networks, rule violations). The entries are then replayed on fresh
//! ledgers and the properties are checked entry by entry.

#![allow(clippy::result_large_err)]

use deai_protocol::codec;
use deai_protocol::envelope::{self, SignedEnvelope};
use deai_protocol::ledger::{batch_hash, payouts_root, Effects, Entry, Event, Ledger, MinerStatus, Order, OrderStatus};
use deai_protocol::message::*;
use deai_protocol::params::{Genesis, ParamChange, ProposalAction, TOKEN};
use deai_protocol::rules;
use deai_protocol::testkit::{output_hash, Keys, TestNet};
use deai_protocol::types::{Amount, AssetId, NetworkId, OrderId, ParticipantId, Rating};
use deai_protocol::vrf;
use deai_protocol::Rejection;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Population, genesis and the scenario generator
// ---------------------------------------------------------------------------------------------

const SERVICES: [&str; 3] = ["text-generation", "text-embedding", "image-generation"];
/// Not in the service list.
const UNKNOWN_SERVICE: &str = "video-generation";

/// Amounts an operation may use (base units).
const AMOUNTS: [Amount; 7] = [0, 1, 5 * TOKEN, 10 * TOKEN, 40 * TOKEN, 100 * TOKEN, 300 * TOKEN];
/// Charged-mode prices.
const PRICES: [Amount; 5] = [0, 1, TOKEN / 2, 2 * TOKEN, 20 * TOKEN];
/// Clients' bootstrap stakes.
const STAKES: [Amount; 3] = [10 * TOKEN, 30 * TOKEN, 100 * TOKEN];
/// Miners' asking prices per request.
const ASKING: [Amount; 3] = [0, TOKEN / 2, 5 * TOKEN];
/// Time steps.
const ADVANCES: [u64; 6] = [500, 5_000, 20_000, 45_000, 61_000, 150_000];

/// Small parameters, so that checkpoints, epochs, expiries, votes and pruning all happen within
/// a few dozen entries.
fn tweak(g: &mut Genesis) {
    g.params.checkpoint_every = 8;
    g.params.epoch_ms = 300_000;
    g.params.requests_per_stake_unit = 2;
    g.params.freeze_ms = 120_000;
    g.params.voting_period_ms = 90_000;
    g.params.t_restricted_ms = 60_000;
    g.params.abuse_window = 4;
    g.params.order_retention_ms = 240_000;
    // A lease that the longer advances outrun, and suspension after two timeouts in a row.
    g.params.miner_lease_ms = 100_000;
    g.params.miner_max_consecutive_failures = 2;
}

fn fresh_net() -> TestNet {
    TestNet::with_genesis(3, tweak)
}

fn fresh_ledger() -> Ledger {
    fresh_net().ledger
}

struct Cast {
    clients: Vec<Keys>,
    miners: Vec<Keys>,
}

impl Cast {
    fn all(&self) -> impl Iterator<Item = &Keys> {
        self.clients.iter().chain(self.miners.iter())
    }
    fn by_id(&self, id: &ParticipantId) -> Option<&Keys> {
        self.all().find(|k| k.id == *id)
    }
    /// Mostly a client, sometimes a miner acting as a client.
    fn client(&self, i: u8) -> &Keys {
        if i % 7 == 6 {
            &self.miners[i as usize % self.miners.len()]
        } else {
            &self.clients[i as usize % self.clients.len()]
        }
    }
    /// Mostly a miner, sometimes a client acting as a miner.
    fn miner(&self, i: u8) -> &Keys {
        if i % 5 == 4 {
            &self.clients[i as usize % self.clients.len()]
        } else {
            &self.miners[i as usize % self.miners.len()]
        }
    }
    /// Anyone.
    fn anyone(&self, i: u8) -> &Keys {
        let n = self.clients.len() + self.miners.len();
        self.all().nth(i as usize % n).expect("in range")
    }
}

fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| Cast {
        clients: (0..4).map(|i| Keys::from_name(&format!("client-{i}"))).collect(),
        miners: (0..3).map(|i| Keys::from_name(&format!("miner-{i}"))).collect(),
    })
}

fn asset(a: u8) -> AssetId {
    match a % 8 {
        0..=4 => AssetId::NATIVE,
        5 | 6 => AssetId(1), // priced in the dev genesis
        _ => AssetId(7),     // unknown
    }
}

fn service(s: u8) -> String {
    if s % 9 == 8 {
        UNKNOWN_SERVICE.to_string()
    } else {
        SERVICES[s as usize % SERVICES.len()].to_string()
    }
}

fn services_of(mask: u8) -> Vec<ServiceOffer> {
    let mask = if mask % 8 == 0 { 1 } else { mask % 8 };
    (0..3)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| ServiceOffer {
            service: SERVICES[i].to_string(),
            price_per_request: ASKING[(mask as usize + i) % ASKING.len()],
            subscription_price: if i == 0 { Some(TOKEN) } else { None },
        })
        .collect()
}

fn rating(r: u8) -> Rating {
    match r % 3 {
        0 => Rating::Bad,
        1 => Rating::Fair,
        _ => Rating::Good,
    }
}

/// Who gets set up before the random operations run.
#[derive(Clone, Debug)]
struct Setup {
    /// Per client: its stake (index into `STAKES`), or not set up.
    clients: Vec<Option<u8>>,
    /// Per miner: `(capacity, service mask)`, or not registered.
    miners: Vec<Option<(u8, u8)>>,
}

/// One abstract operation; `Sim::run` turns it into (at most) one entry.
#[derive(Clone, Debug)]
enum Op {
    Faucet {
        who: u8,
        asset: u8,
        amount: u8,
    },
    Lock {
        who: u8,
        asset: u8,
        amount: u8,
    },
    AcquirePass {
        who: u8,
    },
    ReleasePass {
        who: u8,
    },
    Withdraw {
        who: u8,
        asset: u8,
        amount: u8,
    },
    Register {
        who: u8,
        capacity: u8,
        services: u8,
        collateral: u8,
    },
    Unregister {
        who: u8,
    },
    SetOnline {
        who: u8,
        online: bool,
    },
    PutFree {
        client: u8,
        service: u8,
    },
    PutCharged {
        client: u8,
        service: u8,
        price: u8,
        miner: Option<u8>,
    },
    PutSubscription {
        client: u8,
        service: u8,
        miner: u8,
    },
    Subscribe {
        client: u8,
        miner: u8,
        service: u8,
        periods: u8,
    },
    /// An honest allocation planned by coordinator `coord`.
    Allocate {
        coord: u8,
        max: u8,
    },
    /// A forged or malformed allocation (wrong miner, bad proof, duplicate, ...).
    ForgedAllocate {
        coord: u8,
        max: u8,
        how: u8,
        pick: u8,
    },
    /// `who: None`: the assigned miner claims.
    Claim {
        who: Option<u8>,
        order: u16,
        output: u8,
    },
    Rate {
        by_owner: bool,
        who: u8,
        order: u16,
        rating: u8,
    },
    Report {
        by_owner: bool,
        who: u8,
        order: u16,
    },
    Probe {
        coord: u8,
        order: u16,
        delivered: bool,
        right_hash: bool,
    },
    /// A tick, stamped `back_ms` before the current time (a lagging leader clock).
    Tick {
        coord: u8,
        back_ms: u32,
    },
    /// Time passes; then each online miner whose bit is set in `renew` renews its lease, as a
    /// running agent does (the others' agents are gone, or paused).
    Advance {
        step: u8,
        renew: u8,
    },
    /// `how`: 0 honest after waiting for the end, 1 honest right now, 2 wrong payouts, 3 wrong
    /// epoch number.
    CloseEpoch {
        coord: u8,
        how: u8,
    },
    SignCheckpoint {
        coord: u8,
        which: u8,
        how: u8,
    },
    SignPayouts {
        coord: u8,
        which: u8,
        honest: bool,
    },
    Propose {
        who: u8,
        action: u8,
        arg: u8,
    },
    Vote {
        who: u8,
        proposal: u8,
        approve: bool,
    },
    /// An entry broken on purpose: bad signature, wrong network, wrong role, oversized, ...
    Tamper {
        who: u8,
        how: u8,
    },
    Replay {
        idx: u16,
    },
    /// A dev-faucet deposit of everything that still fits under `u128::MAX` in total deposits,
    /// less `short` base units (only in the extreme-amounts generator).
    FaucetRest {
        who: u8,
        short: u8,
    },
}

/// What the generator knows an entry must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Any,
    Accept,
    /// Rejected; with `Some(code)`, with exactly that code.
    Reject(Option<&'static str>),
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec(prop::option::weighted(0.85, 0..3u8), 4),
        prop::collection::vec(prop::option::weighted(0.85, (1..=3u8, 1..8u8)), 3),
    )
        .prop_map(|(clients, miners)| Setup { clients, miners })
}

fn op_strategy(extreme: bool) -> BoxedStrategy<Op> {
    let b = any::<bool>;
    let u = any::<u8>;
    let o = any::<u16>;
    let mut ops = vec![
        (3, (u(), u(), u()).prop_map(|(who, asset, amount)| Op::Faucet { who, asset, amount }).boxed()),
        (2, (u(), u(), u()).prop_map(|(who, asset, amount)| Op::Lock { who, asset, amount }).boxed()),
        (2, u().prop_map(|who| Op::AcquirePass { who }).boxed()),
        (1, u().prop_map(|who| Op::ReleasePass { who }).boxed()),
        (2, (u(), u(), u()).prop_map(|(who, asset, amount)| Op::Withdraw { who, asset, amount }).boxed()),
        (
            1,
            (u(), 0..4u8, u(), u())
                .prop_map(|(who, capacity, services, collateral)| Op::Register { who, capacity, services, collateral })
                .boxed(),
        ),
        (1, u().prop_map(|who| Op::Unregister { who }).boxed()),
        (2, (u(), prop::bool::weighted(0.6)).prop_map(|(who, online)| Op::SetOnline { who, online }).boxed()),
        (14, (u(), u()).prop_map(|(client, service)| Op::PutFree { client, service }).boxed()),
        (
            5,
            (u(), u(), u(), prop::option::of(u()))
                .prop_map(|(client, service, price, miner)| Op::PutCharged { client, service, price, miner })
                .boxed(),
        ),
        (
            1,
            (u(), u(), u()).prop_map(|(client, service, miner)| Op::PutSubscription { client, service, miner }).boxed(),
        ),
        (
            2,
            (u(), u(), u(), 0..3u8)
                .prop_map(|(client, miner, service, periods)| Op::Subscribe { client, miner, service, periods })
                .boxed(),
        ),
        (12, (u(), 1..6u8).prop_map(|(coord, max)| Op::Allocate { coord, max }).boxed()),
        (
            3,
            (u(), 1..4u8, u(), u())
                .prop_map(|(coord, max, how, pick)| Op::ForgedAllocate { coord, max, how, pick })
                .boxed(),
        ),
        (
            12,
            (prop::option::weighted(0.15, u()), o(), u())
                .prop_map(|(who, order, output)| Op::Claim { who, order, output })
                .boxed(),
        ),
        (
            7,
            (prop::bool::weighted(0.9), u(), o(), u())
                .prop_map(|(by_owner, who, order, rating)| Op::Rate { by_owner, who, order, rating })
                .boxed(),
        ),
        (
            2,
            (prop::bool::weighted(0.9), u(), o())
                .prop_map(|(by_owner, who, order)| Op::Report { by_owner, who, order })
                .boxed(),
        ),
        (
            4,
            (u(), o(), prop::bool::weighted(0.3), b())
                .prop_map(|(coord, order, delivered, right_hash)| Op::Probe { coord, order, delivered, right_hash })
                .boxed(),
        ),
        (
            4,
            (u(), prop_oneof![3 => Just(0u32), 1 => 0..100_000u32])
                .prop_map(|(coord, back_ms)| Op::Tick { coord, back_ms })
                .boxed(),
        ),
        (
            5,
            (u(), prop_oneof![7 => Just(0b111u8), 1 => u()])
                .prop_map(|(step, renew)| Op::Advance { step, renew })
                .boxed(),
        ),
        (
            3,
            (u(), prop_oneof![3 => Just(0u8), 1 => 1..4u8])
                .prop_map(|(coord, how)| Op::CloseEpoch { coord, how })
                .boxed(),
        ),
        (2, (u(), u(), u()).prop_map(|(coord, which, how)| Op::SignCheckpoint { coord, which, how }).boxed()),
        (
            1,
            (u(), u(), prop::bool::weighted(0.8))
                .prop_map(|(coord, which, honest)| Op::SignPayouts { coord, which, honest })
                .boxed(),
        ),
        (1, (u(), u(), u()).prop_map(|(who, action, arg)| Op::Propose { who, action, arg }).boxed()),
        (
            2,
            (u(), u(), prop::bool::weighted(0.8))
                .prop_map(|(who, proposal, approve)| Op::Vote { who, proposal, approve })
                .boxed(),
        ),
        (3, (u(), u()).prop_map(|(who, how)| Op::Tamper { who, how }).boxed()),
        (2, o().prop_map(|idx| Op::Replay { idx }).boxed()),
    ];
    if extreme {
        ops.push((2, (u(), u()).prop_map(|(who, short)| Op::FaucetRest { who, short }).boxed()));
    }
    Union::new_weighted(ops).boxed()
}

/// A scenario: the setup and the operations.
fn scenario_strategy(max_ops: usize) -> impl Strategy<Value = (Setup, Vec<Op>)> {
    (setup_strategy(), prop::collection::vec(op_strategy(false), 0..=max_ops))
}

/// A scenario that may also deposit amounts close to `u128::MAX`.
fn extreme_scenario_strategy(max_ops: usize) -> impl Strategy<Value = (Setup, Vec<Op>)> {
    (setup_strategy(), prop::collection::vec(op_strategy(true), 0..=max_ops))
}

/// The generator's run: the entries, what it knew about each, and the results it saw.
struct Built {
    entries: Vec<Entry>,
    expect: Vec<Expect>,
    results: Vec<Result<Effects, Rejection>>,
    ledger: Ledger,
}

struct Sim {
    net: TestNet,
    cast: &'static Cast,
    /// Every order id ever placed, in placement order.
    orders: Vec<OrderId>,
    entries: Vec<Entry>,
    expect: Vec<Expect>,
    results: Vec<Result<Effects, Rejection>>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            net: fresh_net(),
            cast: cast(),
            orders: Vec::new(),
            entries: Vec::new(),
            expect: Vec::new(),
            results: Vec::new(),
        }
    }

    fn push(&mut self, entry: Entry, expect: Expect) {
        let result = self.net.ledger.apply(&entry);
        if let Ok(fx) = &result {
            for ev in &fx.events {
                if let Event::OrderPlaced { order, .. } = ev {
                    self.orders.push(*order);
                }
            }
        }
        self.net.now_ms = self.net.now_ms.max(self.net.ledger.now_ms);
        self.entries.push(entry);
        self.expect.push(expect);
        self.results.push(result);
    }

    fn as_who(&self, who: &Keys, m: Message) -> Entry {
        self.net.entry(who, m)
    }

    fn coord_keys(&self, c: u8) -> &Keys {
        &self.net.coordinators[c as usize % self.net.coordinators.len()].keys
    }

    fn as_coord(&self, c: u8, m: Message) -> Entry {
        self.net.entry(self.coord_keys(c), m)
    }

    /// A known order id (possibly pruned since), or an id nobody placed.
    fn order(&self, i: u16) -> OrderId {
        if self.orders.is_empty() || i % 23 == 22 {
            OrderId([0xAB; 32])
        } else {
            self.orders[i as usize % self.orders.len()]
        }
    }

    /// Mostly an order in one of `statuses` (if there is one), else any known order.
    fn pick_in(&self, i: u16, statuses: &[OrderStatus]) -> OrderId {
        if i % 8 == 7 {
            return self.order(i);
        }
        let matching: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|id| self.net.ledger.order(id).is_some_and(|o| statuses.contains(&o.status)))
            .copied()
            .collect();
        if matching.is_empty() {
            self.order(i)
        } else {
            matching[i as usize % matching.len()]
        }
    }

    fn put(&self, client: &Keys, service: String, mode: OrderMode) -> Entry {
        self.as_who(client, Message::PutOrder(PutOrder { service, mode, payload: Payload::Inline(b"prompt".to_vec()) }))
    }

    fn setup(&mut self, s: &Setup) {
        let cast = self.cast;
        for (i, stake) in s.clients.iter().enumerate() {
            let Some(stake) = stake else { continue };
            let k = &cast.clients[i];
            let stake = STAKES[*stake as usize % STAKES.len()];
            let e =
                self.as_who(k, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: stake + 50 * TOKEN }));
            self.push(e, Expect::Accept);
            let e = self.as_who(k, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: stake }));
            self.push(e, Expect::Accept);
            let e = self.as_who(k, Message::AcquirePass(AcquirePass {}));
            self.push(e, Expect::Accept);
        }
        for (i, m) in s.miners.iter().enumerate() {
            let Some((capacity, mask)) = m else { continue };
            let k = &cast.miners[i];
            let e = self.as_who(k, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 120 * TOKEN }));
            self.push(e, Expect::Accept);
            let e = self.as_who(
                k,
                Message::RegisterMiner(RegisterMiner {
                    collateral: 100 * TOKEN,
                    capacity: *capacity as u32,
                    endpoint: format!("http://127.0.0.1/miner-{i}"),
                    services: services_of(*mask),
                }),
            );
            self.push(e, Expect::Accept);
        }
    }

    fn run(&mut self, op: &Op) {
        let cast = self.cast;
        match *op {
            Op::Faucet { who, asset: a, amount } => {
                let e = self.as_who(
                    cast.anyone(who),
                    Message::DevFaucet(DevFaucet { asset: asset(a), amount: AMOUNTS[amount as usize % AMOUNTS.len()] }),
                );
                self.push(e, Expect::Any);
            }
            Op::Lock { who, asset: a, amount } => {
                let e = self.as_who(
                    cast.anyone(who),
                    Message::LockStake(LockStake { asset: asset(a), amount: AMOUNTS[amount as usize % AMOUNTS.len()] }),
                );
                self.push(e, Expect::Any);
            }
            Op::AcquirePass { who } => {
                let e = self.as_who(cast.client(who), Message::AcquirePass(AcquirePass {}));
                self.push(e, Expect::Any);
            }
            Op::ReleasePass { who } => {
                let e = self.as_who(cast.client(who), Message::ReleasePass(ReleasePass {}));
                self.push(e, Expect::Any);
            }
            Op::Withdraw { who, asset: a, amount } => {
                let e = self.as_who(
                    cast.anyone(who),
                    Message::Withdraw(Withdraw { asset: asset(a), amount: AMOUNTS[amount as usize % AMOUNTS.len()] }),
                );
                self.push(e, Expect::Any);
            }
            Op::Register { who, capacity, services, collateral } => {
                let collateral = [50 * TOKEN, 100 * TOKEN, 150 * TOKEN][collateral as usize % 3];
                let e = self.as_who(
                    cast.miner(who),
                    Message::RegisterMiner(RegisterMiner {
                        collateral,
                        capacity: capacity as u32,
                        endpoint: "http://127.0.0.1/again".into(),
                        services: services_of(services),
                    }),
                );
                self.push(e, Expect::Any);
            }
            Op::Unregister { who } => {
                let e = self.as_who(cast.miner(who), Message::UnregisterMiner(UnregisterMiner {}));
                self.push(e, Expect::Any);
            }
            Op::SetOnline { who, online } => {
                let e = self.as_who(cast.miner(who), Message::SetAvailability(SetAvailability { online }));
                self.push(e, Expect::Any);
            }
            Op::PutFree { client, service: s } => {
                // Mostly one service, so that admission thresholds are reached.
                let e = self.put(cast.client(client), service(if s < 160 { 0 } else { s }), OrderMode::Free);
                self.push(e, Expect::Any);
            }
            Op::PutCharged { client, service: s, price, miner } => {
                let mode = OrderMode::Charged {
                    price: PRICES[price as usize % PRICES.len()],
                    miner: miner.map(|m| cast.miner(m).id),
                };
                let e = self.put(cast.client(client), service(s), mode);
                self.push(e, Expect::Any);
            }
            Op::PutSubscription { client, service: s, miner } => {
                let e =
                    self.put(cast.client(client), service(s), OrderMode::Subscription { miner: cast.miner(miner).id });
                self.push(e, Expect::Any);
            }
            Op::Subscribe { client, miner, service: s, periods } => {
                let e = self.as_who(
                    cast.client(client),
                    Message::Subscribe(Subscribe {
                        miner: cast.miner(miner).id,
                        service: service(s),
                        periods: periods as u32,
                    }),
                );
                self.push(e, Expect::Any);
            }
            Op::Allocate { coord, max } => {
                let c = coord as usize % self.net.coordinators.len();
                if let Some(plan) = self.net.ledger.plan_allocation(&self.net.coordinators[c].vrf, max as usize) {
                    let e = self.as_coord(coord, Message::Allocate(plan));
                    self.push(e, Expect::Accept);
                }
            }
            Op::ForgedAllocate { coord, max, how, pick } => self.forged_allocate(coord, max, how, pick),
            Op::Claim { who, order, output } => {
                let id = self.pick_in(order, &[OrderStatus::Allocated]);
                let assigned = self.net.ledger.order(&id).and_then(|o| o.miner).and_then(|m| cast.by_id(&m));
                let miner = match (who, assigned) {
                    (None, Some(k)) => k,
                    (None, None) => &cast.miners[0],
                    (Some(w), _) => cast.miner(w),
                };
                let e = self.as_who(miner, Message::Claim(Claim { order: id, output_hash: output_hash(&[output]) }));
                self.push(e, Expect::Any);
            }
            Op::Rate { by_owner, who, order, rating: r } => {
                let id = self.pick_in(order, &[OrderStatus::Completed]);
                let owner = self.net.ledger.order(&id).and_then(|o| cast.by_id(&o.client));
                let client = match (by_owner, owner) {
                    (true, Some(k)) => k,
                    _ => cast.client(who),
                };
                let e = self.as_who(client, Message::Rate(Rate { order: id, rating: rating(r) }));
                self.push(e, Expect::Any);
            }
            Op::Report { by_owner, who, order } => {
                let id = self.pick_in(order, &[OrderStatus::Completed, OrderStatus::Rated]);
                let owner = self.net.ledger.order(&id).and_then(|o| cast.by_id(&o.client));
                let client = match (by_owner, owner) {
                    (true, Some(k)) => k,
                    _ => cast.client(who),
                };
                let e = self.as_who(client, Message::ReportNonDelivery(ReportNonDelivery { order: id }));
                self.push(e, Expect::Any);
            }
            Op::Probe { coord, order, delivered, right_hash } => {
                let open: Vec<OrderId> = self.net.ledger.reports.keys().copied().collect();
                let id = if open.is_empty() || order % 7 == 6 {
                    self.order(order)
                } else {
                    open[order as usize % open.len()]
                };
                let claimed = self.net.ledger.order(&id).and_then(|o| o.claim.as_ref()).map(|c| c.output_hash);
                let hash = match (right_hash, claimed) {
                    (true, Some(h)) => h,
                    _ => output_hash(b"something else"),
                };
                let e =
                    self.as_coord(coord, Message::ProbeResult(ProbeResult { order: id, delivered, output_hash: hash }));
                self.push(e, Expect::Any);
            }
            Op::Tick { coord, back_ms } => {
                let mut e = self.as_coord(coord, Message::Tick(Tick {}));
                e.stamped_ms = e.stamped_ms.saturating_sub(back_ms as u64);
                self.push(e, Expect::Accept);
            }
            Op::Advance { step, renew } => {
                self.net.advance(ADVANCES[step as usize % ADVANCES.len()]);
                for (i, k) in cast.miners.iter().enumerate() {
                    let online =
                        self.net.ledger.miner(&k.id).is_some_and(|m| m.status == MinerStatus::Active && m.online);
                    if online && renew & (1 << i) != 0 {
                        let e = self.as_who(k, Message::SetAvailability(SetAvailability { online: true }));
                        self.push(e, Expect::Accept);
                    }
                }
            }
            Op::CloseEpoch { coord, how } => {
                let how = how % 4;
                if how != 1 {
                    self.net.now_ms = self.net.now_ms.max(self.net.ledger.epoch_ends_ms());
                }
                let (_, mut payouts) = self.net.ledger.expected_payouts();
                let mut epoch = self.net.ledger.epoch.number;
                let expect = match how {
                    0 => Expect::Accept,
                    1 => Expect::Any,
                    2 => {
                        match payouts.first_mut() {
                            Some(p) => p.1 += 1,
                            None => payouts.push((cast.miners[0].id, 1)),
                        }
                        Expect::Reject(Some("payout_mismatch"))
                    }
                    _ => {
                        epoch += 1;
                        Expect::Reject(Some("wrong_epoch"))
                    }
                };
                let e = self.as_coord(coord, Message::CloseEpoch(CloseEpoch { epoch, payouts }));
                self.push(e, expect);
            }
            Op::SignCheckpoint { coord, which, how } => {
                let heights: Vec<u64> = self.net.ledger.checkpoints.keys().copied().collect();
                // Mostly the latest checkpoint, so that signatures can gather into a certificate.
                let height = match heights.last() {
                    None => 8,
                    Some(&last) if which % 3 != 0 => last,
                    Some(_) => heights[which as usize % heights.len()],
                };
                let root = match (how % 4, self.net.ledger.checkpoints.get(&height)) {
                    (0 | 1, Some(cp)) => cp.root,
                    _ => [how; 32],
                };
                let keys = self.coord_keys(coord).clone();
                let bytes = deai_protocol::ledger::checkpoint_signing_bytes(&self.net.ledger.network_id, height, &root);
                let (signature, expect) = if how % 4 == 3 {
                    (keys.sign_detached(b"not the checkpoint"), Expect::Reject(Some("bad_checkpoint_signature")))
                } else {
                    (keys.sign_detached(&bytes), Expect::Any)
                };
                let e = self.as_who(&keys, Message::SignCheckpoint(SignCheckpoint { height, root, signature }));
                self.push(e, expect);
            }
            Op::SignPayouts { coord, which, honest } => {
                let epochs: Vec<u64> = self.net.ledger.closed_epochs.keys().copied().collect();
                let epoch = if epochs.is_empty() { 0 } else { epochs[which as usize % epochs.len()] };
                let root = match (honest, self.net.ledger.closed_epochs.get(&epoch)) {
                    (true, Some(r)) => r.payouts_root,
                    _ => [which; 32],
                };
                let keys = self.coord_keys(coord).clone();
                let bytes = deai_protocol::ledger::payouts_signing_bytes(&self.net.ledger.network_id, epoch, &root);
                let signature = keys.sign_detached(&bytes);
                let e = self.as_who(&keys, Message::SignPayouts(SignPayouts { epoch, payouts_root: root, signature }));
                self.push(e, Expect::Any);
            }
            Op::Propose { who, action, arg } => {
                let action = match action % 6 {
                    0 => ProposalAction::EjectMiner { miner: cast.miner(arg).id },
                    1 => {
                        ProposalAction::SetParam(ParamChange::MinReputationMilli([0, 40_000, 60_000][arg as usize % 3]))
                    }
                    2 => ProposalAction::SetServiceWeight {
                        service: SERVICES[arg as usize % 3].to_string(),
                        weight: [0, 1, 3][arg as usize / 3 % 3],
                    },
                    3 => ProposalAction::RemoveService { service: SERVICES[1 + arg as usize % 2].to_string() },
                    4 => ProposalAction::SetParam(ParamChange::OrderTimeoutMs(
                        [20_000, 60_000, 120_000][arg as usize % 3],
                    )),
                    _ => ProposalAction::SetParam(ParamChange::StakeUnit(0)),
                };
                let e = self.as_who(cast.client(who), Message::Propose(Propose { action }));
                self.push(e, Expect::Any);
            }
            Op::Vote { who, proposal, approve } => {
                let n = self.net.ledger.next_proposal.max(1);
                let e =
                    self.as_who(cast.client(who), Message::Vote(Vote { proposal: proposal as u64 % (n + 1), approve }));
                self.push(e, Expect::Any);
            }
            Op::Tamper { who, how } => self.tamper(who, how),
            Op::FaucetRest { who, short } => {
                let deposited = self.net.ledger.totals.deposits.get(&AssetId::NATIVE).copied().unwrap_or(0);
                let amount = (u128::MAX - deposited).saturating_sub(short as u128);
                if amount > 0 {
                    let e =
                        self.as_who(cast.anyone(who), Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount }));
                    self.push(e, Expect::Any);
                }
            }
            Op::Replay { idx } => {
                if self.entries.is_empty() {
                    return;
                }
                let i = idx as usize % self.entries.len();
                let expect = if self.results[i].is_ok() { Expect::Reject(Some("replay")) } else { Expect::Any };
                let e = self.entries[i].clone();
                self.push(e, expect);
            }
        }
    }

    fn forged_allocate(&mut self, coord: u8, max: u8, how: u8, pick: u8) {
        let cast = self.cast;
        let n = self.net.coordinators.len();
        let c = coord as usize % n;
        let ledger = &self.net.ledger;
        let plan = ledger.plan_allocation(&self.net.coordinators[c].vrf, max as usize);
        let prove = |orders: &[OrderId]| {
            let input = vrf::allocation_input(&batch_hash(orders), &ledger.last_checkpoint_root);
            self.net.coordinators[c].vrf.prove(&input).1
        };
        let (message, expect) = match (how % 6, plan) {
            // Another miner than the one every replica computes.
            (0, Some(mut plan)) => {
                let i = pick as usize % plan.miners.len();
                let current = plan.miners[i];
                let other = cast.miners.iter().map(|k| k.id).find(|id| *id != current).expect("three miners");
                plan.miners[i] = other;
                (Message::Allocate(plan), Expect::Reject(Some("allocation_mismatch")))
            }
            // Someone else's VRF proof.
            (1, Some(mut plan)) => {
                let other = &self.net.coordinators[(c + 1) % n].vrf;
                let input = vrf::allocation_input(&batch_hash(&plan.orders), &ledger.last_checkpoint_root);
                plan.vrf = other.prove(&input).1;
                (Message::Allocate(plan), Expect::Reject(Some("bad_vrf_proof")))
            }
            // The same order twice, with a valid proof over that batch and the right miner for
            // its first draw, so that only the repetition is wrong.
            (2, Some(plan)) => {
                let orders = vec![plan.orders[0], plan.orders[0]];
                let input = vrf::allocation_input(&batch_hash(&orders), &ledger.last_checkpoint_root);
                let (output, vrf) = self.net.coordinators[c].vrf.prove(&input);
                let order = ledger.order(&orders[0]).expect("planned order exists");
                match expected_choice(ledger, order, vrf::draw(&output, 0), &BTreeMap::new()) {
                    Some(m) => (
                        Message::Allocate(Allocate { orders, miners: vec![m, m], vrf }),
                        Expect::Reject(Some("malformed_batch")),
                    ),
                    None => (
                        Message::Allocate(Allocate { orders, miners: plan.miners.repeat(2), vrf }),
                        Expect::Reject(None),
                    ),
                }
            }
            // Orders and miners of different lengths.
            (3, Some(mut plan)) => {
                plan.miners.push(plan.miners[0]);
                (Message::Allocate(plan), Expect::Reject(Some("malformed_batch")))
            }
            // An empty batch.
            (4, _) => {
                let vrf = prove(&[]);
                (
                    Message::Allocate(Allocate { orders: vec![], miners: vec![], vrf }),
                    Expect::Reject(Some("malformed_batch")),
                )
            }
            // A client signs an allocation.
            (5, plan) => {
                let plan = plan.unwrap_or_else(|| {
                    let orders = vec![self.order(pick as u16)];
                    Allocate { vrf: prove(&orders), orders, miners: vec![cast.miners[0].id] }
                });
                let e = self.as_who(cast.client(pick), Message::Allocate(plan));
                self.push(e, Expect::Reject(Some("wrong_role")));
                return;
            }
            // No plan: allocate some known order anyway, with a valid proof, to a miner other
            // than the one every replica computes for it.
            (_, _) => {
                let orders = vec![self.order(pick as u16)];
                let input = vrf::allocation_input(&batch_hash(&orders), &ledger.last_checkpoint_root);
                let (output, vrf) = self.net.coordinators[c].vrf.prove(&input);
                let pending = ledger.order(&orders[0]).filter(|o| o.status == OrderStatus::Pending);
                let expected =
                    pending.and_then(|o| expected_choice(ledger, o, vrf::draw(&output, 0), &BTreeMap::new()));
                let miner = cast.miners.iter().map(|k| k.id).find(|id| Some(*id) != expected).expect("three miners");
                let expect =
                    if pending.is_some() { Expect::Reject(Some("allocation_mismatch")) } else { Expect::Reject(None) };
                (Message::Allocate(Allocate { orders, miners: vec![miner], vrf }), expect)
            }
        };
        let e = self.as_coord(coord, message);
        self.push(e, expect);
    }

    fn tamper(&mut self, who: u8, how: u8) {
        let cast = self.cast;
        let client = cast.client(who);
        let put = |s: &Sim, payload: Vec<u8>| {
            s.as_who(
                client,
                Message::PutOrder(PutOrder {
                    service: SERVICES[0].into(),
                    mode: OrderMode::Free,
                    payload: Payload::Inline(payload),
                }),
            )
        };
        let (entry, expect) = match how % 8 {
            0 => {
                let mut e = put(self, b"p".to_vec());
                e.envelope.signature[who as usize % 64] ^= 1 << (how % 8);
                (e, Expect::Reject(Some("bad_signature")))
            }
            1 => {
                let mut e = put(self, b"p".to_vec());
                e.envelope.nonce += 1 + who as u64 % 3;
                (e, Expect::Reject(Some("bad_signature")))
            }
            2 => {
                let mut e = put(self, b"p".to_vec());
                let other = cast.all().find(|k| k.id != client.id).expect("others");
                e.envelope.signer = other.id;
                (e, Expect::Reject(Some("bad_signature")))
            }
            3 => {
                let msg = Message::PutOrder(PutOrder {
                    service: SERVICES[0].into(),
                    mode: OrderMode::Free,
                    payload: Payload::Inline(b"p".to_vec()),
                });
                let nonce = self.net.ledger.next_nonce(&client.id);
                let envelope = SignedEnvelope::seal(&client.signing, &NetworkId("another-net".into()), nonce, &msg);
                (Entry { stamped_ms: self.net.now_ms, envelope }, Expect::Reject(Some("wrong_network")))
            }
            4 => (self.as_who(client, Message::Tick(Tick {})), Expect::Reject(Some("wrong_role"))),
            5 => (put(self, vec![7; 20_000]), Expect::Reject(Some("payload_too_large"))),
            6 => (put(self, vec![7; 70_000]), Expect::Reject(Some("body_too_large"))),
            _ => {
                // A correctly signed envelope whose body is not a `PutOrder`.
                let body = vec![0xFF, who, how];
                let nonce = self.net.ledger.next_nonce(&client.id);
                let bytes = envelope::signing_bytes(MessageKind::PutOrder, &self.net.ledger.network_id, nonce, &body);
                let envelope = SignedEnvelope {
                    kind: MessageKind::PutOrder,
                    body,
                    signer: client.id,
                    nonce,
                    network_id: self.net.ledger.network_id.clone(),
                    signature: client.sign_detached(&bytes),
                };
                (Entry { stamped_ms: self.net.now_ms, envelope }, Expect::Reject(Some("malformed")))
            }
        };
        self.push(entry, expect);
    }
}

/// SPEC 5.3 eligibility of `miner` for `order`, with in-flight counts overridden by `load`: a
/// registered (Active), online, not ejected miner whose lease is live at the ledger's time
/// (`docs/decisions.md`, "Miner liveness"), offering the service, under capacity and at or
/// above the reputation floor; for a charged order, also one whose asking price it meets
/// (SPEC 5.9).
fn is_eligible(l: &Ledger, miner: &ParticipantId, order: &Order, load: &BTreeMap<ParticipantId, u32>) -> bool {
    l.miner(miner).is_some_and(|m| {
        let price_met = match (&order.mode, m.services.get(&order.service)) {
            (_, None) => false,
            (OrderMode::Charged { price, .. }, Some(offer)) => *price >= offer.price_per_request,
            _ => true,
        };
        m.status == MinerStatus::Active
            && m.online
            && l.now_ms - m.last_seen_ms <= l.params.miner_lease_ms
            && !m.ejected
            && m.services.contains_key(&order.service)
            && price_met
            && load.get(miner).copied().unwrap_or(m.in_flight) < m.capacity
            && m.reputation_milli >= l.params.min_reputation_milli
    })
}

/// SPEC 5.3 choice, computed from the public state: the pre-specified miner if eligible, else
/// `select_weighted(u, reputations of the eligible miners in ascending id)`.
fn expected_choice(l: &Ledger, order: &Order, u: u64, load: &BTreeMap<ParticipantId, u32>) -> Option<ParticipantId> {
    match &order.mode {
        OrderMode::Charged { miner: Some(m), .. } | OrderMode::Subscription { miner: m } => {
            is_eligible(l, m, order, load).then_some(*m)
        }
        _ => {
            let (ids, weights): (Vec<ParticipantId>, Vec<u64>) = l
                .miners
                .iter()
                .filter(|(id, _)| is_eligible(l, id, order, load))
                .map(|(id, m)| (*id, m.reputation_milli as u64))
                .unzip();
            rules::select_weighted(u, &weights).map(|i| ids[i])
        }
    }
}

fn build(setup: &Setup, ops: &[Op]) -> Built {
    let mut sim = Sim::new();
    sim.setup(setup);
    for op in ops {
        sim.run(op);
    }
    Built { entries: sim.entries, expect: sim.expect, results: sim.results, ledger: sim.net.ledger }
}

fn code(r: &Result<Effects, Rejection>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const MAX_OPS: usize = 80;

// ---------------------------------------------------------------------------------------------
// Scenario properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    /// SPEC 2 (deterministic state machine) and SPEC 6.3 (running root): two ledgers from the
    /// same genesis fed the same entries give the same result for every entry and end with the
    /// same root and state digest; `apply_batch` over the same entries, in chunks, gives exactly
    /// the results of `apply` one by one (chunks holding a badly signed entry fall back to strict
    /// one-by-one checks, so this holds for them too).
    #[test]
    fn same_entries_same_results_root_and_state(
        (setup, ops) in scenario_strategy(MAX_OPS),
        chunks in prop::collection::vec(1..9usize, 1..6),
    ) {
        let built = build(&setup, &ops);
        let mut a = fresh_ledger();
        let mut b = fresh_ledger();
        let ra: Vec<_> = built.entries.iter().map(|e| a.apply(e)).collect();
        let rb: Vec<_> = built.entries.iter().map(|e| b.apply(e)).collect();
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(&ra, &built.results, "the generator's own ledger saw the same results");
        let codes_a: Vec<_> = ra.iter().map(code).collect();
        let codes_b: Vec<_> = rb.iter().map(code).collect();
        prop_assert_eq!(codes_a, codes_b);
        prop_assert_eq!(a.root, b.root);
        prop_assert_eq!(a.root, built.ledger.root);
        prop_assert_eq!(a.state_digest(), b.state_digest());
        prop_assert_eq!(a.state_digest(), built.ledger.state_digest());
        prop_assert!(a == b);

        let mut c = fresh_ledger();
        let mut rc = Vec::with_capacity(built.entries.len());
        let mut start = 0;
        for size in chunks.iter().cycle() {
            if start >= built.entries.len() {
                break;
            }
            let end = (start + size).min(built.entries.len());
            rc.extend(c.apply_batch(&built.entries[start..end]));
            start = end;
        }
        prop_assert_eq!(&rc, &ra, "apply_batch and apply disagree");
        prop_assert_eq!(c.root, a.root);
        prop_assert_eq!(c.state_digest(), a.state_digest());
    }

    /// SPEC 2 and the snapshot requirement: a snapshot taken after any prefix restores to an
    /// equal ledger (same bytes when snapshotted again), and both then process the remaining
    /// entries identically, ending with the same root and state digest.
    #[test]
    fn snapshot_restore_at_any_cut(
        (setup, ops) in scenario_strategy(MAX_OPS),
        cut in any::<prop::sample::Index>(),
    ) {
        let built = build(&setup, &ops);
        let k = cut.index(built.entries.len() + 1);
        let mut a = fresh_ledger();
        for e in &built.entries[..k] {
            let _ = a.apply(e);
        }
        let snap = a.snapshot();
        let mut r = Ledger::restore(&snap).expect("a snapshot of a valid ledger restores");
        prop_assert!(r == a, "restored ledger differs from the original");
        prop_assert_eq!(r.snapshot(), snap.clone());
        prop_assert_eq!(r.state_digest(), a.state_digest());
        for e in &built.entries[k..] {
            let x = a.apply(e);
            let y = r.apply(e);
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(r.root, a.root);
        prop_assert_eq!(r.height, a.height);
        prop_assert_eq!(r.state_digest(), a.state_digest());
    }

    /// SPEC 3 ("nothing partial is applied") and the `Rejection` contract: a rejected entry
    /// leaves the root, the height, the state digest and the whole state untouched; an accepted
    /// entry advances the height by exactly one.
    #[test]
    fn rejected_entries_change_nothing((setup, ops) in scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        let mut l = fresh_ledger();
        for (i, e) in built.entries.iter().enumerate() {
            let before = l.clone();
            let digest_before = l.state_digest();
            match l.apply(e) {
                Ok(_) => prop_assert_eq!(l.height, before.height + 1, "entry {} accepted", i),
                Err(rej) => {
                    prop_assert_eq!(l.root, before.root, "entry {} rejected with {}", i, rej.code());
                    prop_assert_eq!(l.height, before.height);
                    prop_assert_eq!(l.state_digest(), digest_before, "entry {} rejected with {}", i, rej.code());
                    prop_assert!(l == before, "entry {} rejected with {} changed the state", i, rej.code());
                }
            }
        }
    }

    /// SPEC 4 and 5.9 (token conservation): after every entry, for every asset,
    /// `locked + balances + escrow + fee pool + collateral = deposits + minted - withdrawals`,
    /// and the ledger's structural invariants hold.
    #[test]
    fn tokens_are_conserved_after_every_entry((setup, ops) in scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        let mut l = fresh_ledger();
        prop_assert_eq!(l.audit_supply(), Ok(()));
        for (i, e) in built.entries.iter().enumerate() {
            let r = l.apply(e);
            let audit = l.audit_supply();
            prop_assert!(audit.is_ok(), "after entry {} ({}): {:?}", i, code(&r), audit);
            let inv = l.check_invariants();
            prop_assert!(inv.is_ok(), "after entry {} ({}): {:?}", i, code(&r), inv);
        }
    }

    /// SPEC 4 and 5.9 (token conservation) with dev-faucet deposits that bring the total
    /// deposited close to `u128::MAX`: every entry the ledger accepts keeps the audit and the
    /// invariants computable and true (the ledger refuses what would overflow).
    #[test]
    fn tokens_are_conserved_with_extreme_deposits((setup, ops) in extreme_scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        let mut l = fresh_ledger();
        for (i, e) in built.entries.iter().enumerate() {
            let r = l.apply(e);
            let inv = l.check_invariants();
            prop_assert!(inv.is_ok(), "after entry {} ({}): {:?}", i, code(&r), inv);
        }
    }

    /// SPEC 5.7 (paper eq. 3 and 4): an epoch's payouts are `split_rewards` of its
    /// contributions and sum to exactly its reward (or are empty and the reward carries over);
    /// the reward is `epoch_reward(total supply) + carried`; `minted` and the total supply grow
    /// by exactly what was paid, each miner's balance by exactly its payout, and no other entry
    /// mints anything.
    #[test]
    fn epoch_payouts_sum_to_the_reward((setup, ops) in scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        let mut l = fresh_ledger();
        for (i, e) in built.entries.iter().enumerate() {
            let pre = (e.envelope.kind == MessageKind::CloseEpoch).then(|| l.clone());
            let minted_before = l.totals.minted;
            let supply_before = l.totals.total_supply;
            let r = l.apply(e);
            let closes: Vec<(u64, Amount, Amount, Amount)> = match &r {
                Ok(fx) => fx
                    .events
                    .iter()
                    .filter_map(|ev| match ev {
                        Event::EpochClosed { epoch, reward, paid, carried } => Some((*epoch, *reward, *paid, *carried)),
                        _ => None,
                    })
                    .collect(),
                Err(_) => vec![],
            };
            if closes.is_empty() {
                prop_assert_eq!(l.totals.minted, minted_before, "entry {} minted without closing an epoch", i);
                prop_assert_eq!(l.totals.total_supply, supply_before);
                continue;
            }
            prop_assert_eq!(closes.len(), 1);
            let pre = pre.expect("only CloseEpoch closes epochs");
            let (epoch, reward, paid, carried) = closes[0];
            prop_assert_eq!(epoch, pre.epoch.number);
            let want_reward = rules::epoch_reward(pre.totals.total_supply, pre.params.inflation_ppm_per_year, pre.params.epoch_ms)
                + pre.epoch.carried;
            prop_assert_eq!(reward, want_reward);
            let record = l.closed_epochs.get(&epoch).expect("closed epoch is recorded");
            prop_assert_eq!(record.reward, reward);
            let sum: Amount = record.payouts.iter().map(|p| p.1).sum();
            prop_assert_eq!(sum, paid);
            if record.payouts.is_empty() {
                prop_assert_eq!(paid, 0);
                prop_assert_eq!(carried, reward);
                prop_assert_eq!(l.epoch.carried, reward);
            } else {
                prop_assert_eq!(paid, reward, "payouts must sum to the reward");
                prop_assert_eq!(carried, 0);
                prop_assert_eq!(l.epoch.carried, 0);
            }
            let contributions: Vec<([u8; 32], u128)> =
                pre.epoch.contributions.iter().filter(|(_, &c)| c > 0).map(|(id, &c)| (id.0, c)).collect();
            let want: Vec<(ParticipantId, Amount)> = if contributions.is_empty() {
                vec![]
            } else {
                rules::split_rewards(&contributions, reward).into_iter().map(|(id, a)| (ParticipantId(id), a)).collect()
            };
            prop_assert_eq!(&record.payouts, &want);
            prop_assert_eq!(record.payouts_root, payouts_root(epoch, &record.payouts));
            for (id, amount) in &record.payouts {
                let before = pre.account(id).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
                let after = l.account(id).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
                prop_assert_eq!(after - before, *amount);
            }
            prop_assert_eq!(l.totals.minted - minted_before, paid);
            prop_assert_eq!(l.totals.total_supply - supply_before, paid);
        }
    }

    /// SPEC 5.3 (AVRF eligibility and choice) and 5.10 (one re-queue): every allocation is of a
    /// pending order, to a miner that was, given the in-flight counts of earlier draws of the
    /// same batch, Active, online with a live lease, not ejected, offering the service (at an
    /// asking price a charged order meets), under capacity and above the reputation floor; the
    /// miner is the one `select_weighted(u_i, reputations)` picks (or the pre-specified one),
    /// with `u_i` drawn from the verified VRF output; and no order is ever allocated while
    /// allocated, nor more than twice.
    #[test]
    fn allocations_go_to_eligible_miners_at_most_twice((setup, ops) in scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        let mut l = fresh_ledger();
        let mut allocations: BTreeMap<OrderId, u32> = BTreeMap::new();
        let mut allocated_now: BTreeSet<OrderId> = BTreeSet::new();
        for (i, e) in built.entries.iter().enumerate() {
            let is_allocate = e.envelope.kind == MessageKind::Allocate;
            let pre = is_allocate.then(|| l.clone());
            let r = l.apply(e);
            let Ok(fx) = &r else { continue };
            let mut allocated_events = Vec::new();
            for ev in &fx.events {
                match ev {
                    Event::OrderAllocated { order, miner } => {
                        prop_assert!(is_allocate, "entry {} allocated without an Allocate", i);
                        prop_assert!(allocated_now.insert(*order), "order {} allocated while allocated", order);
                        let n = allocations.entry(*order).or_insert(0);
                        *n += 1;
                        prop_assert!(*n <= 2, "order {} allocated {} times", order, n);
                        allocated_events.push((*order, *miner));
                    }
                    Event::OrderRequeued { order, .. } | Event::OrderCompleted { order, .. } => {
                        prop_assert!(allocated_now.remove(order), "order {} left Allocated without being allocated", order);
                    }
                    Event::OrderExpired { order } => {
                        allocated_now.remove(order);
                    }
                    _ => {}
                }
            }
            let Some(pre) = pre else { continue };
            let Message::Allocate(a) = Message::decode_body(MessageKind::Allocate, &e.envelope.body).expect("accepted") else {
                unreachable!()
            };
            let expected_events: Vec<(OrderId, ParticipantId)> = a.orders.iter().copied().zip(a.miners.iter().copied()).collect();
            prop_assert_eq!(&allocated_events, &expected_events);
            let coordinator = pre.coordinator(&e.envelope.signer).expect("signed by a coordinator");
            let input = vrf::allocation_input(&batch_hash(&a.orders), &pre.last_checkpoint_root);
            let output = vrf::verify(&coordinator.vrf_key, &input, &a.vrf);
            prop_assert!(output.is_some(), "accepted allocation with a proof that does not verify");
            let output = output.unwrap();
            let mut load: BTreeMap<ParticipantId, u32> = BTreeMap::new();
            for (k, (order_id, miner_id)) in expected_events.iter().enumerate() {
                let order = pre.order(order_id).expect("allocated order existed");
                prop_assert_eq!(order.status, OrderStatus::Pending);
                if allocations[order_id] == 2 {
                    prop_assert!(order.requeued, "second allocation of an order that was never re-queued");
                }
                prop_assert!(
                    is_eligible(&pre, miner_id, order, &load),
                    "order {} went to an ineligible miner",
                    order_id
                );
                let draw = vrf::draw(&output, k as u32);
                let record = l.order(order_id).and_then(|o| o.allocation.clone()).expect("allocation recorded");
                prop_assert_eq!(record.draw, draw);
                prop_assert_eq!(record.height, l.height);
                prop_assert_eq!(record.coordinator, e.envelope.signer);
                if let OrderMode::Charged { miner: Some(m), .. } | OrderMode::Subscription { miner: m } = &order.mode {
                    prop_assert_eq!(miner_id, m, "a pre-specified order went to another miner");
                }
                prop_assert_eq!(expected_choice(&pre, order, draw, &load), Some(*miner_id));
                let cur = load.get(miner_id).copied().unwrap_or_else(|| pre.miner(miner_id).unwrap().in_flight);
                load.insert(*miner_id, cur + 1);
            }
        }
    }

    /// SPEC 5.3 ("if no miner is ready, the order stays Pending; the scheduler drains pending
    /// orders across clients by interleaved WRR when capacity frees up") and the contract of
    /// `plan_allocation` ("look further than the batch so that orders nobody can serve do not
    /// starve the rest"): after every entry, if any of the first `4 * max` pending orders in WRR
    /// order has a ready miner (an eligible pre-specified miner, or an eligible miner with
    /// non-zero reputation), the leader's plan is not empty, and its orders are taken from that
    /// look-ahead in WRR order.
    #[test]
    fn planner_does_not_starve_servable_orders((setup, ops) in scenario_strategy(MAX_OPS), max in 1..4usize) {
        let built = build(&setup, &ops);
        let net = fresh_net();
        let mut l = net.ledger;
        let vrf = &net.coordinators[0].vrf;
        for (i, e) in built.entries.iter().enumerate() {
            let _ = l.apply(e);
            if l.pending.is_empty() {
                continue;
            }
            let head = l.pending_in_wrr_order(4 * max);
            let none = BTreeMap::new();
            let servable: Vec<OrderId> = head
                .iter()
                .copied()
                .filter(|id| {
                    let o = l.order(id).expect("pending order exists");
                    match &o.mode {
                        OrderMode::Charged { miner: Some(m), .. } | OrderMode::Subscription { miner: m } => {
                            is_eligible(&l, m, o, &none)
                        }
                        _ => l.miners.iter().any(|(id, m)| m.reputation_milli > 0 && is_eligible(&l, id, o, &none)),
                    }
                })
                .collect();
            let plan = l.plan_allocation(vrf, max);
            if !servable.is_empty() {
                prop_assert!(
                    plan.is_some(),
                    "after entry {}: {} of the first {} pending orders can be served, but plan_allocation({}) is None",
                    i, servable.len(), head.len(), max
                );
            }
            if let Some(plan) = plan {
                prop_assert!(plan.orders.len() <= max);
                let positions: Vec<Option<usize>> = plan.orders.iter().map(|o| head.iter().position(|h| h == o)).collect();
                prop_assert!(positions.iter().all(|p| p.is_some()), "planned an order outside the look-ahead");
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "plan is not in WRR order");
            }
        }
    }

    /// SPEC 6.1-6.2 and 3: what the generator built honestly (an honest leader's `Allocate`
    /// from `plan_allocation`, an honest `CloseEpoch`, setup entries, ticks) is accepted, and
    /// what it forged (wrong miner, someone else's VRF proof, wrong payouts, bad signatures,
    /// wrong network or role, oversized or undecodable bodies, replays of accepted entries) is
    /// rejected with the matching code.
    #[test]
    fn honest_entries_accepted_forged_rejected((setup, ops) in scenario_strategy(MAX_OPS)) {
        let built = build(&setup, &ops);
        for (i, (r, x)) in built.results.iter().zip(&built.expect).enumerate() {
            match x {
                Expect::Any => {}
                Expect::Accept => prop_assert!(r.is_ok(), "entry {} should be accepted: {:?}", i, r),
                Expect::Reject(None) => prop_assert!(r.is_err(), "entry {} should be rejected", i),
                Expect::Reject(Some(c)) => prop_assert_eq!(code(r), *c, "entry {}: {:?}", i, r),
            }
        }
    }
}

/// The generator is not vacuous: over a fixed set of scenarios, entries are both accepted and
/// rejected for many different reasons, and the interesting lifecycle events all happen.
#[test]
fn scenario_generator_covers_the_protocol() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario_strategy(MAX_OPS);
    let mut codes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut paid_epochs = 0;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut liveness: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..64 {
        let (setup, ops) = strategy.new_tree(&mut runner).expect("strategy").current();
        let built = build(&setup, &ops);
        for id in built.ledger.miners.keys() {
            *liveness.entry(built.ledger.miner_liveness(id).expect("a miner").name()).or_default() += 1;
        }
        for (r, e) in built.results.iter().zip(&built.entries) {
            *codes.entry(code(r)).or_default() += 1;
            if r.is_err() {
                *by_kind.entry(format!("{}:{}", e.envelope.kind.name(), code(r))).or_default() += 1;
            }
            if let Ok(fx) = r {
                for ev in &fx.events {
                    let name = format!("{ev:?}");
                    let name = name.split([' ', '{', '(']).next().unwrap_or("").to_string();
                    *events.entry(name).or_default() += 1;
                    if let Event::EpochClosed { paid, .. } = ev {
                        if *paid > 0 {
                            paid_epochs += 1;
                        }
                    }
                }
            }
        }
    }
    println!("results: {codes:?}\nevents: {events:?}\nliveness: {liveness:?}\nrejections: {by_kind:#?}");
    let rejections = codes.iter().filter(|(c, _)| **c != "ok").count();
    assert!(codes.get("ok").copied().unwrap_or(0) > 500, "{codes:?}");
    assert!(rejections >= 15, "too few distinct rejection codes: {codes:?}");
    for want in
        ["replay", "bad_signature", "allocation_mismatch", "bad_vrf_proof", "payout_mismatch", "not_assigned_miner"]
    {
        assert!(codes.contains_key(want), "no {want} rejection: {codes:?}");
    }
    for want in [
        "OrderAllocated",
        "OrderCompleted",
        "OrderRated",
        "OrderRequeued",
        "OrderExpired",
        "EpochClosed",
        "CheckpointDue",
        "ReportOpened",
        "MinerUnregistered",
    ] {
        assert!(events.contains_key(want), "no {want} event: {events:?}");
    }
    assert!(paid_epochs > 0, "no epoch paid anything: {events:?}");
    for want in ["live", "lease_lapsed", "declared", "consecutive_failures"] {
        assert!(liveness.contains_key(want), "no scenario ends with a miner {want}: {liveness:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding arbitrary bytes
// ---------------------------------------------------------------------------------------------

/// A few valid envelopes of different kinds, to mutate.
fn sample_envelopes() -> &'static Vec<Vec<u8>> {
    static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let net = fresh_net();
        let k = &cast().clients[0];
        let m = &cast().miners[0];
        let input = vrf::allocation_input(&[1; 32], &[2; 32]);
        let proof = net.coordinators[0].vrf.prove(&input).1;
        let messages = [
            Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 10 * TOKEN }),
            Message::PutOrder(PutOrder {
                service: SERVICES[0].into(),
                mode: OrderMode::Charged { price: TOKEN, miner: Some(m.id) },
                payload: Payload::External { hash: [3; 32], url: "https://example.invalid/x".into() },
            }),
            Message::RegisterMiner(RegisterMiner {
                collateral: 100 * TOKEN,
                capacity: 4,
                endpoint: "http://127.0.0.1/m".into(),
                services: services_of(7),
            }),
            Message::Allocate(Allocate { orders: vec![OrderId([4; 32]); 2], miners: vec![m.id; 2], vrf: proof }),
            Message::CloseEpoch(CloseEpoch { epoch: 3, payouts: vec![(m.id, 12345), (k.id, 1)] }),
            Message::Propose(Propose {
                action: ProposalAction::SetCoordinators { coordinators: vec![net.coordinators[1].info()] },
            }),
            Message::Rate(Rate { order: OrderId([5; 32]), rating: Rating::Good }),
            Message::Tick(Tick {}),
        ];
        messages
            .iter()
            .enumerate()
            .map(|(i, msg)| SignedEnvelope::seal(&k.signing, &net.ledger.network_id, i as u64 + 1, msg).to_wire())
            .collect()
    })
}

/// One byte-level mutation: flip a bit, overwrite, insert or delete a byte.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match m {
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::Set(i, b) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, *b);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
            _ => {}
        }
    }
}

/// Whatever decodes re-encodes to an equal value, and checking or applying it never panics.
fn decode_round_trip(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(envelope) = SignedEnvelope::from_wire(bytes) else { return Ok(()) };
    let wire = envelope.to_wire();
    let again = SignedEnvelope::from_wire(&wire);
    prop_assert_eq!(again.as_ref(), Ok(&envelope));
    prop_assert_eq!(again.unwrap().to_wire(), wire);
    let mut ledger = base_ledger().clone();
    let network = ledger.network_id.clone();
    let _ = envelope.check_and_decode(&network);
    let _ = envelope.verify_signature();
    let before = ledger.root;
    let entry = Entry { stamped_ms: 1_000, envelope };
    if ledger.apply_preverified(&entry).is_err() {
        prop_assert_eq!(ledger.root, before);
    }
    Ok(())
}

/// A ledger with some history, to snapshot and to apply decoded envelopes to.
fn base_ledger() -> &'static Ledger {
    static BASE: OnceLock<Ledger> = OnceLock::new();
    BASE.get_or_init(|| {
        let setup =
            Setup { clients: vec![Some(0), Some(2), Some(1), None], miners: vec![Some((2, 7)), Some((1, 1)), None] };
        let mut ops = Vec::new();
        for i in 0..6u8 {
            ops.push(Op::PutFree { client: i, service: 0 });
            ops.push(Op::PutCharged { client: i + 1, service: 0, price: 3, miner: None });
        }
        ops.push(Op::Allocate { coord: 0, max: 4 });
        for i in 0..4u16 {
            ops.push(Op::Claim { who: None, order: i * 2, output: 1 });
            ops.push(Op::Claim { who: None, order: i * 2 + 1, output: 1 });
        }
        ops.push(Op::Rate { by_owner: true, who: 0, order: 0, rating: 2 });
        ops.push(Op::Report { by_owner: true, who: 0, order: 1 });
        ops.push(Op::Propose { who: 0, action: 1, arg: 1 });
        ops.push(Op::CloseEpoch { coord: 0, how: 0 });
        ops.push(Op::Allocate { coord: 1, max: 3 });
        let built = build(&setup, &ops);
        assert!(built.results.iter().filter(|r| r.is_ok()).count() > 20);
        built.ledger
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// SPEC 2-3 (codec with a version byte and limits): arbitrary bytes never make the envelope
    /// decoder panic; whatever decodes re-encodes to an equal value.
    #[test]
    fn envelope_decoder_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_round_trip(&bytes)?;
    }

    /// As above, for bytes that start with the right version byte, so the decoder goes deeper.
    #[test]
    fn envelope_decoder_never_panics_on_versioned_bytes(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![codec::CODEC_VERSION];
        bytes.extend(tail);
        decode_round_trip(&bytes)?;
    }

    /// As above, for valid envelopes with flipped, overwritten, inserted or deleted bytes.
    #[test]
    fn envelope_decoder_never_panics_on_mutated_envelopes(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..5),
    ) {
        let samples = sample_envelopes();
        let mut bytes = samples[which.index(samples.len())].clone();
        prop_assert!(SignedEnvelope::from_wire(&bytes).is_ok());
        mutate(&mut bytes, &mutations);
        decode_round_trip(&bytes)?;
    }

    /// The snapshot decoder (`Ledger::restore`) returns a ledger or an error, never panics, on
    /// random bytes and on mutated snapshots; what it accepts satisfies the invariants and
    /// snapshots back to the same bytes.
    #[test]
    fn restore_never_panics_on_bad_snapshots(
        random in prop::collection::vec(any::<u8>(), 0..200),
        mutations in prop::collection::vec(mutation_strategy(), 1..6),
    ) {
        let _ = Ledger::restore(&random);
        let mut versioned = vec![codec::CODEC_VERSION];
        versioned.extend(&random);
        let _ = Ledger::restore(&versioned);
        let mut snap = base_ledger().snapshot();
        mutate(&mut snap, &mutations);
        if let Ok(l) = Ledger::restore(&snap) {
            prop_assert_eq!(l.check_invariants(), Ok(()));
            let again = Ledger::restore(&l.snapshot());
            prop_assert!(again.as_ref() == Ok(&l), "a restored snapshot does not round-trip");
        }
    }
}

/// Which amount of a snapshot to corrupt.
#[derive(Clone, Copy, Debug)]
enum Field {
    Balance,
    Locked,
    Escrow,
    Collateral,
    Minted,
    FeePool,
    Deposits,
    Withdrawals,
}

proptest! {
    #![proptest_config(config(128))]

    /// `Ledger::restore` on a snapshot whose amounts were changed (as a corrupt or hostile
    /// snapshot source could) returns a ledger or an error and never panics.
    #[test]
    fn restore_never_panics_on_corrupted_amounts(
        edits in prop::collection::vec(
            (
                prop_oneof![
                    Just(Field::Balance), Just(Field::Locked), Just(Field::Escrow), Just(Field::Collateral),
                    Just(Field::Minted), Just(Field::FeePool), Just(Field::Deposits), Just(Field::Withdrawals),
                ],
                any::<prop::sample::Index>(),
                prop_oneof![Just(u128::MAX), Just(u128::MAX / 2 + 1), any::<u128>(), 0..1_000u128],
            ),
            1..4,
        ),
    ) {
        let mut l = base_ledger().clone();
        for (field, at, value) in &edits {
            let accounts: Vec<ParticipantId> = l.accounts.keys().copied().collect();
            let miners: Vec<ParticipantId> = l.miners.keys().copied().collect();
            let acc = accounts[at.index(accounts.len())];
            match field {
                Field::Balance => {
                    l.accounts.get_mut(&acc).unwrap().balances.insert(AssetId::NATIVE, *value);
                }
                Field::Locked => {
                    l.accounts.get_mut(&acc).unwrap().locked.insert(AssetId::NATIVE, *value);
                }
                Field::Escrow => l.accounts.get_mut(&acc).unwrap().escrow = *value,
                Field::Collateral => l.miners.get_mut(&miners[at.index(miners.len())]).unwrap().collateral = *value,
                Field::Minted => l.totals.minted = *value,
                Field::FeePool => l.totals.fee_pool = *value,
                Field::Deposits => {
                    l.totals.deposits.insert(AssetId::NATIVE, *value);
                }
                Field::Withdrawals => {
                    l.totals.withdrawals.insert(AssetId::NATIVE, *value);
                }
            }
        }
        let snap = l.snapshot();
        if let Ok(restored) = Ledger::restore(&snap) {
            prop_assert!(restored == l);
        }
    }
}

/// SPEC 2 (codec limits): snapshot bytes that claim an enormous first field are refused with
/// an error, without allocating what they claim.
#[test]
fn restore_refuses_huge_length_prefixes() {
    for len in [1u64 << 20, 1 << 34, 1 << 40, u64::MAX] {
        // Varint marker 253: a u64 length follows.
        let mut bytes = vec![codec::CODEC_VERSION, 253];
        bytes.extend(len.to_le_bytes());
        bytes.extend([0u8; 16]);
        assert!(Ledger::restore(&bytes).is_err(), "length {len}");
    }
}

/// Regression, found by `restore_never_panics_on_corrupted_amounts` (minimal case: one native
/// balance set to `u128::MAX`). `Ledger::audit_supply` sums holdings with unchecked `+=`, so a
/// snapshot whose holdings sum past `u128::MAX` panics in `Ledger::restore` (debug builds) or
/// wraps (release builds). Wrapping makes the audit blind: here one account gains `2^100` and
/// another `2^128 - 2^100`, the sum wraps back to the true total and a release build restores a
/// ledger full of counterfeit tokens. `restore` must refuse such a snapshot with an error.
#[test]
fn regression_restore_refuses_holdings_that_wrap_around() {
    let mut l = base_ledger().clone();
    let ids: Vec<ParticipantId> = l.accounts.keys().copied().take(2).collect();
    let x = 1u128 << 100;
    for (id, add) in ids.iter().zip([x, x.wrapping_neg()]) {
        let acc = l.accounts.get_mut(id).expect("account");
        let b = acc.balances.entry(AssetId::NATIVE).or_insert(0);
        *b = b.checked_add(add).expect("each balance alone fits");
    }
    let snap = l.snapshot();
    let outcome = std::panic::catch_unwind(|| Ledger::restore(&snap).map(|_| ()));
    match outcome {
        Ok(Err(_)) => {}
        Ok(Ok(())) => panic!("restore accepted a snapshot whose holdings exceed u128::MAX"),
        Err(_) => panic!("restore panicked on a snapshot whose holdings exceed u128::MAX"),
    }
}

/// Regression, found by `tokens_are_conserved_with_extreme_deposits` (minimal case: one paid
/// epoch, then a dev-faucet deposit of `u128::MAX - deposits`). SPEC 4/5.9 conservation:
/// `DevFaucet` only checks that total *deposits* fit in a `u128`, not deposits + minted, so
/// after any epoch has minted a reward it accepts a deposit that puts the tokens held in the
/// ledger above `u128::MAX`; `audit_supply` (and so `check_invariants` and `Ledger::restore` of
/// that honest state) then panics on overflow in debug builds and reports a false imbalance in
/// release builds. Either the deposit is refused, or the audit must stay computable and true.
#[test]
fn regression_faucet_after_a_paid_epoch_keeps_the_audit_computable() {
    let mut net = fresh_net();
    let miners = vec![net.miner("miner-r", &["text-generation"], 1)];
    let alice = net.client("client-r");
    net.full_cycle(&alice, &miners, "text-generation", Rating::Good);
    net.close_epoch().expect("the epoch closes");
    assert!(net.ledger.totals.minted > 0);
    let deposited = net.ledger.totals.deposits.get(&AssetId::NATIVE).copied().unwrap_or(0);
    let result =
        net.submit(&alice, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: u128::MAX - deposited }));
    let ledger = &net.ledger;
    let audit = std::panic::catch_unwind(|| ledger.check_invariants());
    assert!(
        matches!(audit, Ok(Ok(()))),
        "deposit result {:?}; audit afterwards: {:?}",
        result.map(|_| ()),
        audit.map_err(|_| "panicked"),
    );
}

/// Regression, found by `planner_does_not_starve_servable_orders` (minimal case: one miner
/// offering only `text-embedding`, two pending `text-generation` orders nobody can serve, then a
/// `text-embedding` order; `plan_allocation(1)` returns `None`). In
/// `Ledger::plan_allocation` (ledger/orders.rs) the look-ahead of `4 * max_orders` pending orders
/// is cut to `max_orders` at the top of the retry loop *before* the first draw, so after the
/// unservable head order is dropped the batch is empty and the planner gives up, although a
/// ready miner could serve a later order: head-of-line blocking, against SPEC 5.3 (the
/// scheduler drains pending orders when capacity is free) and the function's own comment.
#[test]
fn regression_planner_looks_past_unservable_orders() {
    let mut net = fresh_net();
    let _miner = net.miner("miner-x", &["text-embedding"], 1);
    let alice = net.client("client-x");
    let bob = net.client("client-y");
    net.put_free(&alice, "text-generation"); // no miner offers it
    let servable = net.put_free(&bob, "text-embedding");
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1);
    assert_eq!(
        plan.map(|p| p.orders),
        Some(vec![servable]),
        "the servable order behind an unservable one is not planned"
    );
}

// ---------------------------------------------------------------------------------------------
// SPEC 8: the public rules API
// ---------------------------------------------------------------------------------------------

fn weights_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(prop_oneof![3 => Just(0u64), 4 => 0..1_000u64, 2 => any::<u64>()], 0..8)
}

/// SPEC 5.4 by the book: cycles of rounds `j = 1..=w_max`; in round `j` each client with
/// `w >= j` and requests left is served once, in queue order.
fn wrr_reference(queue: &[(u64, u128, u32)]) -> Vec<u64> {
    let stakes: Vec<u128> = queue.iter().map(|q| q.1).collect();
    let s_min = stakes.iter().copied().filter(|&s| s > 0).min();
    let weights: Vec<u128> = stakes.iter().map(|&s| s_min.map_or(0, |m| s / m)).collect();
    let w_max = weights.iter().copied().max().unwrap_or(0);
    let mut left: Vec<u32> = queue.iter().zip(&weights).map(|(q, &w)| if w == 0 { 0 } else { q.2 }).collect();
    let mut out = Vec::new();
    while left.iter().any(|&n| n > 0) {
        for j in 1..=w_max {
            for (i, q) in queue.iter().enumerate() {
                if weights[i] >= j && left[i] > 0 {
                    left[i] -= 1;
                    out.push(q.0);
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// SPEC 8 `select_weighted`: `None` iff the total weight is 0; otherwise an index with a
    /// non-zero weight, equal to the first index whose cumulative weight exceeds
    /// `(u * total) >> 64`, and monotone non-decreasing in `u`.
    #[test]
    fn select_weighted_picks_a_weighted_index_monotonically(weights in weights_strategy(), u1 in any::<u64>(), u2 in any::<u64>()) {
        let total: u128 = weights.iter().map(|&w| w as u128).sum();
        let (lo, hi) = (u1.min(u2), u1.max(u2));
        let a = rules::select_weighted(lo, &weights);
        let b = rules::select_weighted(hi, &weights);
        if total == 0 {
            prop_assert_eq!(a, None);
            prop_assert_eq!(b, None);
            return Ok(());
        }
        let (a, b) = (a.expect("total > 0"), b.expect("total > 0"));
        prop_assert!(weights[a] > 0 && weights[b] > 0);
        prop_assert!(a <= b, "not monotone: u {} -> {}, u {} -> {}", lo, a, hi, b);
        prop_assert_eq!(rules::select_weighted(0, &weights), weights.iter().position(|&w| w > 0));
        if total <= 1 << 64 {
            prop_assert_eq!(rules::select_weighted(u64::MAX, &weights), weights.iter().rposition(|&w| w > 0));
        }
        if total < 1 << 63 {
            let target = (lo as u128 * total) >> 64;
            let mut cumulative = 0u128;
            let want = weights.iter().position(|&w| {
                cumulative += w as u128;
                cumulative > target
            });
            prop_assert_eq!(Some(a), want);
        }
    }

    /// SPEC 5.7 and 8 `split_rewards`: same ids in the same order; all zero when every
    /// contribution is zero; otherwise the shares sum to exactly the reward, each share is
    /// `floor(C_k * R / C_total)` or one more, zero contributions get nothing, and the extra
    /// units go to the largest remainders (ties to the smaller id).
    #[test]
    fn split_rewards_is_exact_and_largest_remainder(
        contributions in prop::collection::vec((any::<[u8; 32]>(), prop_oneof![2 => Just(0u128), 3 => 0..100u128, 2 => 0..(1u128 << 60)]), 0..7),
        reward in prop_oneof![0..1_000u128, 0..(1u128 << 60)],
    ) {
        let out = rules::split_rewards(&contributions, reward);
        prop_assert_eq!(out.len(), contributions.len());
        for (o, c) in out.iter().zip(&contributions) {
            prop_assert_eq!(o.0, c.0);
        }
        let total: u128 = contributions.iter().map(|c| c.1).sum();
        if total == 0 {
            prop_assert!(out.iter().all(|o| o.1 == 0));
            return Ok(());
        }
        prop_assert_eq!(out.iter().map(|o| o.1).sum::<u128>(), reward);
        let mut extra = Vec::new();
        for (o, c) in out.iter().zip(&contributions) {
            let floor = c.1 * reward / total;
            prop_assert!(o.1 == floor || o.1 == floor + 1, "share {} vs floor {}", o.1, floor);
            if c.1 == 0 {
                prop_assert_eq!(o.1, 0);
            }
            extra.push((o.1 > floor, c.1 * reward % total, c.0));
        }
        for x in &extra {
            for y in &extra {
                if x.0 && !y.0 {
                    prop_assert!(x.1 > y.1 || (x.1 == y.1 && x.2 <= y.2), "extra unit to a smaller remainder");
                }
            }
        }
    }

    /// SPEC 5.4 and 8 `wrr_weights` / `wrr_order`: weights are `floor(s / s_min)` (0 for a zero
    /// stake); the order serves every weighted client exactly its queued count and no weight-0
    /// client, its first round serves each weighted client with requests once in queue order,
    /// and it equals the interleaved WRR of SPEC 5.4 computed round by round.
    #[test]
    fn wrr_order_serves_each_queue_by_interleaved_rounds(
        queue in prop::collection::vec((prop_oneof![1 => Just(0u128), 4 => 1..60u128], 0..6u32), 0..6),
    ) {
        let queue: Vec<(u64, u128, u32)> = queue.iter().enumerate().map(|(i, &(s, n))| (100 + i as u64, s, n)).collect();
        let stakes: Vec<u128> = queue.iter().map(|q| q.1).collect();
        let weights = rules::wrr_weights(&stakes);
        prop_assert_eq!(weights.len(), stakes.len());
        let s_min = stakes.iter().copied().filter(|&s| s > 0).min();
        for (&w, &s) in weights.iter().zip(&stakes) {
            prop_assert_eq!(w as u128, s_min.map_or(0, |m| s / m));
        }
        let out = rules::wrr_order(&queue);
        let weighted_total: u32 = queue.iter().zip(&weights).filter(|(_, &w)| w > 0).map(|(q, _)| q.2).sum();
        prop_assert_eq!(out.len(), weighted_total as usize);
        for (q, &w) in queue.iter().zip(&weights) {
            let served = out.iter().filter(|&&c| c == q.0).count();
            prop_assert_eq!(served, if w == 0 { 0 } else { q.2 as usize });
        }
        let first_round: Vec<u64> = queue.iter().zip(&weights).filter(|(q, &w)| w > 0 && q.2 > 0).map(|(q, _)| q.0).collect();
        prop_assert_eq!(&out[..first_round.len()], &first_round[..]);
        prop_assert_eq!(out, wrr_reference(&queue));
    }

    /// SPEC 5.5 and 8 `reputation_milli`: within `[0, 100_000]`, 50_000 at sum 0, monotone
    /// non-decreasing in the rating sum, symmetric (`R(s) + R(-s) = 100_000` within 2) and
    /// within 1 milli-point of the logistic.
    #[test]
    fn reputation_is_bounded_monotone_and_logistic(
        theta in prop_oneof![0..2_000_000u32, any::<u32>()],
        a in prop_oneof![-2_000i64..2_000, any::<i64>()],
        b in prop_oneof![-2_000i64..2_000, any::<i64>()],
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let rl = rules::reputation_milli(theta, lo);
        let rh = rules::reputation_milli(theta, hi);
        prop_assert!(rl <= 100_000 && rh <= 100_000);
        prop_assert!(rl <= rh, "not monotone: {} -> {}, {} -> {}", lo, rl, hi, rh);
        prop_assert_eq!(rules::reputation_milli(theta, 0), 50_000);
        if lo != i64::MIN {
            let sym = rules::reputation_milli(theta, lo) as i64 + rules::reputation_milli(theta, -lo) as i64;
            prop_assert!((sym - 100_000).abs() <= 2, "R({}) + R({}) = {}", lo, -lo, sym);
        }
        let x = theta as f64 / 1e6 * lo as f64;
        let want = 100_000.0 / (1.0 + (-x).exp());
        prop_assert!((rl as f64 - want).abs() <= 1.0 + 1e-9, "theta {} sum {}: {} vs {}", theta, lo, rl, want);
    }

    /// SPEC 5.1 and 8 `effective_stake`: never below the native stake; exactly
    /// `native + floor(value * q / 1e6)` when that fits; saturating otherwise.
    #[test]
    fn effective_stake_adds_the_discounted_value(
        native in prop_oneof![0..(1u128 << 90), any::<u128>()],
        value in prop_oneof![0..(1u128 << 90), any::<u128>()],
        q in prop_oneof![0..=1_000_000u32, any::<u32>()],
    ) {
        let s = rules::effective_stake(native, value, q);
        prop_assert!(s >= native);
        if value < 1 << 90 {
            let add = value * q as u128 / 1_000_000;
            prop_assert_eq!(s, native.saturating_add(add));
        }
        if q <= 1_000_000 {
            prop_assert!(s <= native.saturating_add(value));
        }
    }

    /// SPEC 5.6 and 8 `restriction_ms`: `t * 2^k`, saturating: `t` at `k = 0`, doubling (with
    /// saturation) at each step, so monotone non-decreasing in `k`.
    #[test]
    fn restriction_doubles_monotonically(
        t in prop_oneof![0..10_000_000u64, any::<u64>()],
        k1 in prop_oneof![0..70u32, any::<u32>()],
        k2 in prop_oneof![0..70u32, any::<u32>()],
    ) {
        let (lo, hi) = (k1.min(k2), k1.max(k2));
        prop_assert!(rules::restriction_ms(t, lo) <= rules::restriction_ms(t, hi));
        prop_assert_eq!(rules::restriction_ms(t, 0), t);
        if lo < u32::MAX {
            prop_assert_eq!(rules::restriction_ms(t, lo + 1), rules::restriction_ms(t, lo).saturating_mul(2));
        }
    }

    /// SPEC 5.7 and 8 `epoch_reward`: the exact floor of
    /// `supply * inflation * epoch_ms / (1e6 * year)`, monotone in the supply.
    #[test]
    fn epoch_reward_is_the_exact_floor(
        s1 in 0..(1u128 << 64),
        s2 in 0..(1u128 << 64),
        inflation in 0..=1_000_000u32,
        epoch_ms in 0..(1u64 << 40),
    ) {
        let (lo, hi) = (s1.min(s2), s1.max(s2));
        let year_ms = 365u128 * 24 * 3_600_000;
        let want = lo * inflation as u128 * epoch_ms as u128 / (1_000_000 * year_ms);
        prop_assert_eq!(rules::epoch_reward(lo, inflation, epoch_ms), want);
        prop_assert!(rules::epoch_reward(lo, inflation, epoch_ms) <= rules::epoch_reward(hi, inflation, epoch_ms));
    }
}
