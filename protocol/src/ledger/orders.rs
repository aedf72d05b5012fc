//! The order lifecycle: admission and thresholds (SPEC 5.2), AVRF allocation (5.3) drained by
//! interleaved WRR (5.4), the miner's claim and expiry with one re-queue (5.10).

use super::{
    credit, debit, AllocationRecord, ClaimRecord, Ctx, Effects, Event, Ledger, Liveness, MinerStatus, OfflineReason,
    Order, OrderStatus, PassState, RateWindow, MAX_ALLOCATION_BATCH, MAX_PENDING_PER_CLIENT, MAX_PLAN_DRAWS,
    MAX_URL_BYTES,
};
use crate::error::Rejection;
use crate::hash::{hash_fixed, hash_parts};
use crate::message::{Allocate, Claim, OrderMode, Payload, PutOrder};
use crate::rules;
use crate::types::{Amount, AssetId, Digest, OrderId, ParticipantId, TimeMs, PPM};
use crate::vrf::{self, VrfSecret};
use std::collections::BTreeMap;

/// What every replica computes for a batch: `(miner, draw)` per order, and each considered
/// miner's in-flight count after the batch.
struct BatchReplay {
    chosen: Vec<(ParticipantId, u64)>,
    loads: Vec<(ParticipantId, u32)>,
}

/// A miner that passes the SPEC 5.3 checks that do not change within a batch.
struct Candidate {
    id: ParticipantId,
    /// Reputation in milli-points: the AVRF weight.
    weight: u64,
    capacity: u32,
    asking: Amount,
    /// Index into [`BatchView::loads`].
    slot: usize,
}

/// The eligibility state of one allocation batch: candidates per service, built once, and
/// in-flight counts that grow with each draw (SPEC 5.3: "miners' in-flight counts are updated
/// between draws").
struct BatchView<'a> {
    ledger: &'a Ledger,
    by_service: BTreeMap<&'a str, Vec<Candidate>>,
    slots: BTreeMap<ParticipantId, usize>,
    loads: Vec<u32>,
    weights: Vec<u64>,
}

impl<'a> BatchView<'a> {
    fn new(ledger: &'a Ledger) -> Self {
        BatchView {
            ledger,
            by_service: BTreeMap::new(),
            slots: BTreeMap::new(),
            loads: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// The candidate for `id` offering `service`, if it passes the batch-stable checks.
    fn candidate(&mut self, id: &ParticipantId, service: &str) -> Option<Candidate> {
        let m = self.ledger.miners.get(id)?;
        let offer = m.services.get(service)?;
        // Liveness is judged at the ledger time before the `Allocate` entry, which the leader's
        // plan sees too, so plan and replay agree whatever the entry's stamp.
        let params = &self.ledger.params;
        let stable = m.status == MinerStatus::Active
            && !m.ejected
            && m.liveness(self.ledger.now_ms, params.miner_lease_ms) == Liveness::Live
            && m.reputation_milli >= params.min_reputation_milli;
        if !stable {
            return None;
        }
        let loads = &mut self.loads;
        let slot = *self.slots.entry(*id).or_insert_with(|| {
            loads.push(m.in_flight);
            loads.len() - 1
        });
        Some(Candidate {
            id: *id,
            weight: m.reputation_milli as u64,
            capacity: m.capacity,
            asking: offer.price_per_request,
            slot,
        })
    }

    /// The miner every replica picks for `order` with draw `u`, and its load slot; `None` when
    /// nobody is ready. A charged order only goes to miners whose asking price it meets.
    fn choose(&mut self, order: &'a Order, u: u64) -> Option<(ParticipantId, usize)> {
        let price = match order.mode {
            OrderMode::Charged { price, .. } => Some(price),
            _ => None,
        };
        let ready = |c: &Candidate, loads: &[u32]| loads[c.slot] < c.capacity && price.is_none_or(|p| p >= c.asking);
        match &order.mode {
            OrderMode::Charged { miner: Some(m), .. } | OrderMode::Subscription { miner: m } => {
                let c = self.candidate(m, &order.service)?;
                ready(&c, &self.loads).then_some((c.id, c.slot))
            }
            _ => {
                if !self.by_service.contains_key(order.service.as_str()) {
                    // Canonical order: ascending miner id (BTreeMap iteration order).
                    let ids: Vec<ParticipantId> = self.ledger.miners.keys().copied().collect();
                    let list = ids.iter().filter_map(|id| self.candidate(id, &order.service)).collect();
                    self.by_service.insert(order.service.as_str(), list);
                }
                let candidates = &self.by_service[order.service.as_str()];
                // An unready candidate weighs 0, which selects exactly as leaving it out would.
                self.weights.clear();
                self.weights.extend(candidates.iter().map(|c| if ready(c, &self.loads) { c.weight } else { 0 }));
                rules::select_weighted(u, &self.weights).map(|i| (candidates[i].id, candidates[i].slot))
            }
        }
    }
}

/// Hash of the ids of an allocation batch, in order: half of the VRF input (SPEC 5.3).
pub fn batch_hash(orders: &[OrderId]) -> Digest {
    let parts: Vec<&[u8]> = orders.iter().map(|o| o.0.as_slice()).collect();
    hash_fixed("batch", &parts)
}

impl Ledger {
    /// Orders a client may place per service per rate window: `floor(s / stake_unit) * rps`.
    pub fn admission_limit(&self, client: &ParticipantId) -> u64 {
        self.accounts.get(client).map(|a| self.admission_limit_of(a)).unwrap_or(0)
    }

    fn admission_limit_of(&self, account: &super::Account) -> u64 {
        let units = self.effective_stake_of(account) / self.params.stake_unit;
        u64::try_from(units.saturating_mul(self.params.requests_per_stake_unit as u128)).unwrap_or(u64::MAX)
    }

    fn check_payload(&self, payload: &Payload) -> Result<Digest, Rejection> {
        match payload {
            Payload::Inline(bytes) => {
                let limit = self.params.max_inline_payload_bytes as usize;
                if bytes.len() > limit {
                    return Err(Rejection::PayloadTooLarge { size_bytes: bytes.len(), limit_bytes: limit });
                }
            }
            Payload::External { url, .. } => {
                if url.len() > MAX_URL_BYTES {
                    return Err(Rejection::Malformed(format!("payload URL longer than {MAX_URL_BYTES} bytes")));
                }
            }
        }
        Ok(payload_hash(payload))
    }

    /// `Put` (paper 3.3): admits an order as `Pending`.
    pub(super) fn put_order(&mut self, ctx: &Ctx<'_>, m: PutOrder, fx: &mut Effects) -> Result<(), Rejection> {
        if !self.services.contains_key(&m.service) {
            return Err(Rejection::UnknownService(m.service));
        }
        let payload_hash = self.check_payload(&m.payload)?;
        let empty = super::Account::default();
        let acc = self.accounts.get(&ctx.signer).unwrap_or(&empty);
        if acc.pending as usize >= MAX_PENDING_PER_CLIENT {
            return Err(Rejection::TooManyPending { pending: acc.pending as usize, limit: MAX_PENDING_PER_CLIENT });
        }
        let mut escrow: Amount = 0;
        let mut window_after: Option<(RateWindow, TimeMs)> = None;
        match &m.mode {
            OrderMode::Free => {
                if acc.pass != PassState::Valid {
                    return Err(Rejection::NoServicePass);
                }
                if ctx.now < acc.frozen_until_ms {
                    return Err(Rejection::Frozen { until_ms: acc.frozen_until_ms });
                }
                let limit = self.admission_limit_of(acc);
                let mut window = match acc.windows.get(&m.service) {
                    Some(w) if ctx.now < w.start_ms.saturating_add(self.params.rate_window_ms) => w.clone(),
                    _ => RateWindow { start_ms: ctx.now, count: 0 },
                };
                if window.count >= limit {
                    let until_ms = window.start_ms.saturating_add(self.params.rate_window_ms);
                    return Err(Rejection::Frozen { until_ms });
                }
                window.count += 1;
                // The request that uses the last unit of allowance starts the freeze: nothing more
                // until both the freeze and the window are over (SPEC 5.2).
                let frozen_until = if window.count >= limit {
                    ctx.now
                        .saturating_add(self.params.freeze_ms)
                        .max(window.start_ms.saturating_add(self.params.rate_window_ms))
                } else {
                    acc.frozen_until_ms
                };
                window_after = Some((window, frozen_until));
            }
            OrderMode::Charged { price, miner } => {
                // A zero price would make a charged order a free order with no threshold.
                if *price == 0 {
                    return Err(Rejection::ZeroAmount);
                }
                if let Some(miner) = miner {
                    let offer = self
                        .miners
                        .get(miner)
                        .filter(|mi| mi.status == MinerStatus::Active && !mi.ejected)
                        .ok_or(Rejection::UnknownMiner(*miner))?
                        .services
                        .get(&m.service)
                        .ok_or_else(|| Rejection::UnknownService(m.service.clone()))?;
                    if *price < offer.price_per_request {
                        return Err(Rejection::PriceBelowAsking { asking: offer.price_per_request });
                    }
                }
                let available = acc.balance(AssetId::NATIVE);
                if available < *price {
                    return Err(Rejection::InsufficientBalance { needed: *price, available });
                }
                escrow = *price;
            }
            OrderMode::Subscription { miner } => {
                let until = acc.subscriptions.get(&(*miner, m.service.clone())).copied().unwrap_or(0);
                if ctx.now >= until {
                    return Err(Rejection::NoSubscription(*miner));
                }
            }
        }
        let id = OrderId(ctx.envelope_digest);
        let std::collections::btree_map::Entry::Vacant(slot) = self.orders.entry(id) else {
            return Err(Rejection::DuplicateOrder(id));
        };

        // Accepted.
        let acc = self.accounts.entry(ctx.signer).or_default();
        if let Some((window, frozen_until)) = window_after {
            if frozen_until > acc.frozen_until_ms {
                acc.frozen_until_ms = frozen_until;
                fx.events.push(Event::ClientFrozen { client: ctx.signer, until_ms: frozen_until });
            }
            match acc.windows.get_mut(&m.service) {
                Some(slot) => *slot = window,
                None => {
                    acc.windows.insert(m.service.clone(), window);
                }
            }
        }
        if escrow > 0 {
            debit(&mut acc.balances, AssetId::NATIVE, escrow);
            acc.escrow += escrow;
        }
        acc.in_flight += 1;
        acc.pending += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, id);
        let deadline_ms = ctx.now.saturating_add(self.params.order_timeout_ms);
        self.pending_deadlines.insert((deadline_ms, id));
        slot.insert(Order {
            client: ctx.signer,
            service: m.service,
            mode: m.mode,
            payload: Some(m.payload),
            payload_hash,
            status: OrderStatus::Pending,
            seq,
            placed_ms: ctx.now,
            miner: None,
            allocation: None,
            deadline_ms,
            requeued: false,
            escrow,
            claim: None,
            completed_ms: 0,
            epoch: 0,
            weight: 0,
            paid: 0,
            fee: 0,
            rating: None,
            reported: false,
        });
        fx.events.push(Event::OrderPlaced { order: id, client: ctx.signer });
        Ok(())
    }

    /// Replays the choices of a batch: `Err((i, expected))` at the first order whose miner differs
    /// from `claimed[i]` (or with `claimed` `None`, the first order nobody can serve).
    fn replay_batch(
        &self,
        orders: &[OrderId],
        claimed: Option<&[ParticipantId]>,
        vrf_output: &Digest,
    ) -> Result<BatchReplay, Rejection> {
        let mut view = BatchView::new(self);
        // Duplicates first, on a sorted copy: cheaper than a set of 32-byte keys.
        let mut sorted = orders.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(Rejection::MalformedBatch("an order appears twice"));
        }
        let mut chosen = Vec::with_capacity(orders.len());
        for (i, id) in orders.iter().enumerate() {
            let order = self.orders.get(id).ok_or(Rejection::UnknownOrder(*id))?;
            if order.status != OrderStatus::Pending {
                return Err(Rejection::WrongOrderStatus {
                    order: *id,
                    status: order.status.name(),
                    expected: "pending",
                });
            }
            let u = vrf::draw(vrf_output, i as u32);
            let expected = view.choose(order, u);
            let claimed_i = claimed.map(|c| c[i]);
            match expected {
                Some((miner, slot)) if claimed_i.is_none_or(|c| c == miner) => {
                    view.loads[slot] += 1;
                    chosen.push((miner, u));
                }
                _ => {
                    return Err(Rejection::AllocationMismatch {
                        leader: ParticipantId([0; 32]),
                        order: *id,
                        claimed: claimed_i.unwrap_or(ParticipantId([0; 32])),
                        expected: expected.map(|e| e.0),
                    })
                }
            }
        }
        let loads = view.slots.iter().map(|(id, &slot)| (*id, view.loads[slot])).collect();
        Ok(BatchReplay { chosen, loads })
    }

    /// `Allocate`: verifies the VRF proof and recomputes every choice (SPEC 5.3, 6.2).
    pub(super) fn allocate(&mut self, ctx: &Ctx<'_>, m: Allocate, fx: &mut Effects) -> Result<(), Rejection> {
        if m.orders.is_empty() || m.orders.len() > MAX_ALLOCATION_BATCH {
            return Err(Rejection::MalformedBatch("a batch holds 1 to MAX_ALLOCATION_BATCH (512) orders"));
        }
        if m.orders.len() != m.miners.len() {
            return Err(Rejection::MalformedBatch("orders and miners differ in length"));
        }
        let key = self.coordinator(&ctx.signer).expect("role checked").vrf_key;
        let input = vrf::allocation_input(&batch_hash(&m.orders), &self.last_checkpoint_root);
        let output = vrf::verify(&key, &input, &m.vrf).ok_or(Rejection::BadVrfProof(ctx.signer))?;
        let BatchReplay { chosen, loads } =
            self.replay_batch(&m.orders, Some(&m.miners), &output).map_err(|e| match e {
                Rejection::AllocationMismatch { order, claimed, expected, .. } => {
                    Rejection::AllocationMismatch { leader: ctx.signer, order, claimed, expected }
                }
                other => other,
            })?;

        // Accepted.
        let deadline = ctx.now.saturating_add(self.params.order_timeout_ms);
        for (id, (miner, draw)) in m.orders.iter().zip(chosen) {
            let order = self.orders.get_mut(id).expect("replayed");
            order.status = OrderStatus::Allocated;
            order.miner = Some(miner);
            order.allocation = Some(Box::new(AllocationRecord { height: ctx.height, coordinator: ctx.signer, draw }));
            self.pending_deadlines.remove(&(order.deadline_ms, *id));
            order.deadline_ms = deadline;
            self.pending.remove(&order.seq);
            self.deadlines.insert((deadline, *id));
            let client = order.client;
            self.accounts.get_mut(&client).expect("order has a client account").pending -= 1;
            fx.events.push(Event::OrderAllocated { order: *id, miner });
        }
        // The replay counted each miner's in-flight orders draw by draw; write the totals once.
        for (miner, load) in loads {
            self.miners.get_mut(&miner).expect("eligible miner exists").in_flight = load;
        }
        Ok(())
    }

    /// Pending orders in the order the scheduler should drain them: interleaved WRR over the
    /// clients by effective stake, clients taken in the order they first entered (SPEC 5.4).
    pub fn pending_in_wrr_order(&self, limit: usize) -> Vec<OrderId> {
        let mut clients: Vec<ParticipantId> = Vec::new();
        let mut queues: BTreeMap<ParticipantId, Vec<OrderId>> = BTreeMap::new();
        for id in self.pending.values() {
            let client = self.orders[id].client;
            let q = queues.entry(client).or_insert_with(|| {
                clients.push(client);
                Vec::new()
            });
            q.push(*id);
        }
        // Paid orders may come from clients with no stake: they rank with the smallest staked
        // client (weight 1) rather than being left out.
        let stakes: Vec<u128> = clients.iter().map(|c| self.effective_stake(c)).collect();
        let s_min = stakes.iter().copied().filter(|&s| s > 0).min().unwrap_or(1);
        let snapshot: Vec<(u64, u128, u32)> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let stake = if stakes[i] == 0 { s_min } else { stakes[i] };
                (i as u64, stake, queues[c].len().min(u32::MAX as usize) as u32)
            })
            .collect();
        let mut next: Vec<usize> = vec![0; clients.len()];
        let mut out = Vec::with_capacity(limit.min(self.pending.len()));
        for i in rules::wrr_order(&snapshot) {
            if out.len() >= limit {
                break;
            }
            let c = &clients[i as usize];
            out.push(queues[c][next[i as usize]]);
            next[i as usize] += 1;
        }
        out
    }

    /// The leader's side of SPEC 5.3: picks up to `max_orders` pending orders in WRR order that
    /// some ready miner can serve, evaluates the VRF and returns the `Allocate` body every replica
    /// will accept. `None` when nothing can be allocated.
    pub fn plan_allocation(&self, vrf_secret: &VrfSecret, max_orders: usize) -> Option<Allocate> {
        let max_orders = max_orders.min(MAX_ALLOCATION_BATCH);
        // Look further than the batch so that orders nobody can serve do not starve the rest.
        let lookahead = self.pending_in_wrr_order(max_orders.saturating_mul(4));
        // Keep, in WRR order, the orders some ready miner could take once the orders kept
        // before them hold their slots. Without a VRF and in one pass, this leaves out what
        // nobody can serve now, so a ledger full of such orders costs no proofs.
        let mut fit = BatchView::new(self);
        let mut batch: Vec<OrderId> = Vec::with_capacity(max_orders);
        for id in &lookahead {
            if batch.len() == max_orders {
                break;
            }
            if let Some((_, slot)) = fit.choose(&self.orders[id], 0) {
                fit.loads[slot] += 1;
                batch.push(*id);
            }
        }
        // The real draws may spread the load otherwise than the fit did, so a miner serving
        // several services can fill up first: drop the order that found nobody and draw again,
        // a bounded number of times, then fall back to the first order alone (which fits).
        for _ in 0..MAX_PLAN_DRAWS {
            if batch.is_empty() {
                return None;
            }
            let input = vrf::allocation_input(&batch_hash(&batch), &self.last_checkpoint_root);
            let (output, proof) = vrf_secret.prove(&input);
            match self.replay_batch(&batch, None, &output) {
                Ok(BatchReplay { chosen, .. }) => {
                    return Some(Allocate {
                        orders: batch,
                        miners: chosen.into_iter().map(|c| c.0).collect(),
                        vrf: proof,
                    })
                }
                Err(Rejection::AllocationMismatch { order, .. }) => batch.retain(|o| *o != order),
                Err(_) => return None,
            }
        }
        batch.truncate(1);
        let input = vrf::allocation_input(&batch_hash(&batch), &self.last_checkpoint_root);
        let (output, proof) = vrf_secret.prove(&input);
        let BatchReplay { chosen, .. } = self.replay_batch(&batch, None, &output).ok()?;
        Some(Allocate { orders: batch, miners: chosen.into_iter().map(|c| c.0).collect(), vrf: proof })
    }

    /// `sClaim` (SPEC 5.10): completes the order, counts the contribution, settles the price.
    pub(super) fn claim(&mut self, ctx: &Ctx<'_>, m: Claim, fx: &mut Effects) -> Result<(), Rejection> {
        // One traversal: validation reads through the mutable borrow, mutation starts below.
        let order = self.orders.get_mut(&m.order).ok_or(Rejection::UnknownOrder(m.order))?;
        if order.status != OrderStatus::Allocated {
            return Err(Rejection::WrongOrderStatus {
                order: m.order,
                status: order.status.name(),
                expected: "allocated",
            });
        }
        let assigned = order.miner.expect("allocated orders have a miner");
        if assigned != ctx.signer {
            return Err(Rejection::NotAssignedMiner { order: m.order, assigned, signer: ctx.signer });
        }
        if ctx.now >= order.deadline_ms {
            return Err(Rejection::OrderOverdue { order: m.order, deadline_ms: order.deadline_ms });
        }
        let weight = self.services.get(&order.service).copied().unwrap_or(0);
        let price = order.escrow;
        let fee = rules::mul_div_floor(price, self.params.coordinator_fee_ppm as u128, PPM);
        if price > 0 {
            let miner_balance = self.accounts.get(&assigned).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
            miner_balance.checked_add(price - fee).ok_or(Rejection::Overflow)?;
        }

        // Accepted.
        order.status = OrderStatus::Completed;
        order.claim = Some(Box::new(ClaimRecord {
            output_hash: m.output_hash,
            nonce: ctx.envelope.nonce,
            signature: ctx.envelope.signature,
        }));
        order.completed_ms = ctx.now;
        order.payload = None;
        order.epoch = self.epoch.number;
        order.weight = weight;
        order.escrow = 0;
        order.paid = price - fee;
        order.fee = fee;
        let (client, deadline) = (order.client, order.deadline_ms);
        self.deadlines.remove(&(deadline, m.order));
        self.finished.insert((ctx.now, m.order));
        if weight > 0 {
            // A u32 weight per order cannot overflow u128 within any number of orders.
            *self.epoch.contributions.entry(assigned).or_insert(0) += weight as u128;
        }
        let miner = self.miners.get_mut(&assigned).expect("assigned miner exists");
        miner.in_flight -= 1;
        miner.served += 1;
        miner.consecutive_failures = 0;
        let unregistering = miner.status == MinerStatus::Unregistering;
        if price > 0 {
            self.accounts.get_mut(&client).expect("client exists").escrow -= price;
            credit(&mut self.accounts.entry(assigned).or_default().balances, AssetId::NATIVE, price - fee)?;
            self.totals.fee_pool += fee;
            fx.events.push(Event::Paid { miner: assigned, amount: price - fee, fee });
        }
        fx.events.push(Event::OrderCompleted { order: m.order, miner: assigned, weight });
        self.order_finished(&client, fx);
        if unregistering {
            self.finish_unregister_if_idle(&assigned, fx);
        }
        Ok(())
    }

    /// A client's order left the in-flight set.
    pub(super) fn order_finished(&mut self, client: &ParticipantId, fx: &mut Effects) {
        let acc = self.accounts.get_mut(client).expect("order has a client account");
        acc.in_flight -= 1;
        if acc.pass == PassState::Releasing && acc.in_flight == 0 {
            self.finish_release_if_idle(client, fx);
        }
    }

    /// Returns an order's escrow to its client.
    pub(super) fn refund_escrow(&mut self, id: &OrderId, fx: &mut Effects) {
        let order = self.orders.get_mut(id).expect("order exists");
        let amount = std::mem::take(&mut order.escrow);
        if amount == 0 {
            return;
        }
        let client = order.client;
        let acc = self.accounts.get_mut(&client).expect("client exists");
        acc.escrow -= amount;
        let slot = acc.balances.entry(AssetId::NATIVE).or_insert(0);
        *slot = slot.saturating_add(amount); // came out of this balance
        fx.events.push(Event::Refunded { client, amount });
    }

    /// Tick work: allocated orders past their deadline are re-queued once, then expire; the
    /// miner's history counts the timeout, and `miner_max_consecutive_failures` of them in a
    /// row take it offline. Returns how many deadlines it processed.
    pub(super) fn expire_overdue(&mut self, now: TimeMs, budget: usize, fx: &mut Effects) -> usize {
        let max_failures = self.params.miner_max_consecutive_failures;
        let mut used = 0;
        while used < budget {
            let Some(id) = super::pop_due(&mut self.deadlines, now) else { break };
            used += 1;
            let order = self.orders.get_mut(&id).expect("deadline of a known order");
            let miner_id = order.miner.take().expect("allocated orders have a miner");
            let client = order.client;
            let miner = self.miners.get_mut(&miner_id).expect("assigned miner exists");
            miner.in_flight -= 1;
            miner.timed_out += 1;
            // With the lease shorter than the order timeout (the defaults), a dead agent's lease
            // lapsed before this deadline; the count catches an agent that renews its lease and
            // does not serve (`docs/decisions.md`, "Miner liveness").
            miner.consecutive_failures = miner.consecutive_failures.saturating_add(1);
            if miner.online && miner.consecutive_failures >= max_failures {
                miner.online = false;
                miner.offline_reason = Some(OfflineReason::ConsecutiveFailures);
                fx.events.push(Event::MinerAvailability { miner: miner_id, online: false });
            }
            let order = self.orders.get_mut(&id).expect("known");
            if !order.requeued {
                order.requeued = true;
                order.status = OrderStatus::Pending;
                order.allocation = None;
                order.deadline_ms = now.saturating_add(self.params.order_timeout_ms);
                self.pending_deadlines.insert((order.deadline_ms, id));
                self.pending.insert(order.seq, id);
                self.accounts.get_mut(&client).expect("client exists").pending += 1;
                fx.events.push(Event::OrderRequeued { order: id, miner: miner_id });
            } else {
                order.status = OrderStatus::Expired;
                self.finished.insert((now, id));
                self.refund_escrow(&id, fx);
                fx.events.push(Event::OrderExpired { order: id });
                self.order_finished(&client, fx);
            }
            self.finish_unregister_if_idle(&miner_id, fx);
        }
        used
    }

    /// Tick work: pending orders no miner took within `order_timeout_ms` of being queued expire
    /// (escrow refunded). Returns how many deadlines it processed.
    pub(super) fn expire_unallocated(&mut self, now: TimeMs, budget: usize, fx: &mut Effects) -> usize {
        let mut used = 0;
        while used < budget {
            let Some(id) = super::pop_due(&mut self.pending_deadlines, now) else { break };
            used += 1;
            let order = self.orders.get_mut(&id).expect("deadline of a known order");
            debug_assert_eq!(order.status, OrderStatus::Pending);
            order.status = OrderStatus::Expired;
            let (client, seq) = (order.client, order.seq);
            self.pending.remove(&seq);
            self.finished.insert((now, id));
            self.accounts.get_mut(&client).expect("client exists").pending -= 1;
            self.refund_escrow(&id, fx);
            fx.events.push(Event::OrderExpired { order: id });
            self.order_finished(&client, fx);
        }
        used
    }

    /// Tick work: drops finished orders older than `order_retention_ms`. An order with an open
    /// non-delivery report waits until the report's probe window has closed.
    pub(super) fn prune_finished(&mut self, now: TimeMs, budget: usize, fx: &mut Effects) -> usize {
        let retention = self.params.order_retention_ms;
        let mut used = 0;
        let mut pruned = 0u32;
        while used < budget {
            let Some(&(finished, id)) = self.finished.first() else { break };
            if finished.saturating_add(retention) > now {
                break;
            }
            self.finished.pop_first();
            used += 1;
            if let Some(report) = self.reports.get(&id) {
                let closes = report.closes_ms;
                self.finished.insert((closes.saturating_sub(retention).max(finished + 1), id));
                continue;
            }
            self.orders.remove(&id);
            pruned += 1;
        }
        if pruned > 0 {
            fx.events.push(Event::OrdersPruned { count: pruned });
        }
        used
    }
}

/// The hash an order keeps of its payload: `H("payload", bytes)` inline, the given hash otherwise.
pub fn payload_hash(payload: &Payload) -> Digest {
    match payload {
        Payload::Inline(bytes) => hash_parts("payload", &[bytes]),
        Payload::External { hash, .. } => *hash,
    }
}
