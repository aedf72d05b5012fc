//! Output availability (SPEC 5.8): a client reports non-delivery, each coordinator probes the
//! miner on its own and submits a signed result; a quorum of failures invalidates the cycle.

use super::{Ctx, Effects, Event, Ledger, NonDeliveryReport, OrderStatus};
use crate::error::Rejection;
use crate::message::{ProbeResult, ReportNonDelivery};
use crate::types::{AssetId, OrderId, TimeMs};
use std::collections::BTreeSet;

impl Ledger {
    pub(super) fn report_non_delivery(
        &mut self,
        ctx: &Ctx<'_>,
        m: ReportNonDelivery,
        fx: &mut Effects,
    ) -> Result<(), Rejection> {
        let order = self.orders.get(&m.order).ok_or(Rejection::UnknownOrder(m.order))?;
        if order.client != ctx.signer {
            return Err(Rejection::NotOrderOwner(m.order));
        }
        if !matches!(order.status, OrderStatus::Completed | OrderStatus::Rated) {
            return Err(Rejection::WrongOrderStatus {
                order: m.order,
                status: order.status.name(),
                expected: "completed",
            });
        }
        if order.reported {
            return Err(Rejection::ReportAlreadyOpen(m.order));
        }
        self.orders.get_mut(&m.order).expect("checked").reported = true;
        let closes_ms = ctx.now.saturating_add(self.params.probe_window_ms);
        self.reports.insert(m.order, NonDeliveryReport { opened_ms: ctx.now, closes_ms, failures: BTreeSet::new() });
        self.report_deadlines.insert((closes_ms, m.order));
        fx.events.push(Event::ReportOpened { order: m.order });
        Ok(())
    }

    pub(super) fn probe_result(&mut self, ctx: &Ctx<'_>, m: ProbeResult, fx: &mut Effects) -> Result<(), Rejection> {
        let report = self.reports.get(&m.order).ok_or(Rejection::NoOpenReport(m.order))?;
        let closes_ms = report.closes_ms;
        if ctx.now >= closes_ms {
            return Err(Rejection::ProbeWindowClosed { order: m.order, closed_at_ms: closes_ms });
        }
        let claimed = self.orders[&m.order].claim.as_ref().expect("completed orders have a claim").output_hash;
        if m.delivered && m.output_hash == claimed {
            self.close_report(&m.order, closes_ms);
            fx.events.push(Event::ReportCleared { order: m.order });
            return Ok(());
        }
        if report.failures.contains(&ctx.signer) {
            return Err(Rejection::AlreadySigned(ctx.signer));
        }
        let quorum = self.quorum();
        let report = self.reports.get_mut(&m.order).expect("checked");
        report.failures.insert(ctx.signer);
        let failures = report.failures.len();
        fx.events.push(Event::ProbeFailed { order: m.order, coordinator: ctx.signer, failures: failures as u32 });
        if failures >= quorum {
            self.close_report(&m.order, closes_ms);
            self.invalidate(&m.order, fx);
        }
        Ok(())
    }

    fn close_report(&mut self, order: &OrderId, closes_ms: TimeMs) {
        self.reports.remove(order);
        self.report_deadlines.remove(&(closes_ms, *order));
    }

    /// Invalidates a served cycle: no contribution (if its epoch is still open), counted in the
    /// miner's history, the charged price refunded from the miner (balance, then collateral)
    /// and the fee pool.
    fn invalidate(&mut self, id: &OrderId, fx: &mut Effects) {
        let order = self.orders.get_mut(id).expect("reported order exists");
        order.status = OrderStatus::Invalidated;
        let (miner_id, client, paid, fee, epoch, weight) =
            (order.miner.expect("served"), order.client, order.paid, order.fee, order.epoch, order.weight);
        if epoch == self.epoch.number && weight > 0 {
            if let Some(c) = self.epoch.contributions.get_mut(&miner_id) {
                *c = c.saturating_sub(weight as u128);
                if *c == 0 {
                    self.epoch.contributions.remove(&miner_id);
                }
            }
        }
        let miner = self.miners.get_mut(&miner_id).expect("serving miner exists");
        miner.failed += 1;
        let mut recovered = 0;
        if paid > 0 {
            let acc = self.accounts.entry(miner_id).or_default();
            let from_balance = acc.balance(AssetId::NATIVE).min(paid);
            super::debit(&mut acc.balances, AssetId::NATIVE, from_balance);
            let miner = self.miners.get_mut(&miner_id).expect("exists");
            let from_collateral = miner.collateral.min(paid - from_balance);
            miner.collateral -= from_collateral;
            let from_fees = self.totals.fee_pool.min(fee);
            self.totals.fee_pool -= from_fees;
            recovered = from_balance + from_collateral + from_fees;
        }
        if recovered > 0 {
            let acc = self.accounts.get_mut(&client).expect("client exists");
            let slot = acc.balances.entry(AssetId::NATIVE).or_insert(0);
            *slot = slot.saturating_add(recovered);
            fx.events.push(Event::Refunded { client, amount: recovered });
        }
        fx.events.push(Event::CycleInvalidated { order: *id, miner: miner_id });
    }

    /// Tick work: reports whose probe window closed without a quorum lapse.
    pub(super) fn lapse_reports(&mut self, now: TimeMs, budget: usize, fx: &mut Effects) -> usize {
        let mut used = 0;
        while used < budget {
            let Some(order) = super::pop_due(&mut self.report_deadlines, now) else { break };
            self.reports.remove(&order);
            used += 1;
            fx.events.push(Event::ReportLapsed { order });
        }
        used
    }
}
