//! Cluster-wide replay protection for operators' admin requests (`docs/decisions.md`, "Admin
//! authority"). The node that carries out a signed admin request first records its hash here;
//! a second record of the same hash is refused on every replica, so the request runs once in the
//! whole cluster, whichever node receives it. Records leave once their request has expired.

use super::{Ctx, Effects, Event, Ledger, MAX_ADMIN_REQUESTS_RETAINED};
use crate::error::Rejection;
use crate::message::AuthorizeAdmin;

impl Ledger {
    pub(super) fn authorize_admin(
        &mut self,
        ctx: &Ctx<'_>,
        m: AuthorizeAdmin,
        fx: &mut Effects,
    ) -> Result<(), Rejection> {
        if m.expires_ms < ctx.now {
            return Err(Rejection::AdminStale { expires_ms: m.expires_ms, now_ms: ctx.now });
        }
        if self.admin_requests.contains_key(&m.request) {
            return Err(Rejection::AdminReplay);
        }
        let live = self.admin_requests.values().filter(|expires| **expires >= ctx.now).count();
        if live >= MAX_ADMIN_REQUESTS_RETAINED {
            return Err(Rejection::AdminBusy { retained: live });
        }
        self.admin_requests.retain(|_, expires| *expires >= ctx.now);
        self.admin_requests.insert(m.request, m.expires_ms);
        fx.events.push(Event::AdminAuthorized { request: m.request });
        Ok(())
    }
}
