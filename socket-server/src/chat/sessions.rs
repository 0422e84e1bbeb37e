//! Long-lived sockets keep their right to be connected. The database decides revocation: every
//! `limits.session_check_secs` the relay asks the API, in one call for all its sockets, whether
//! each socket's session is still active, and closes the revoked ones with `session_revoked`
//! `{reason:"revoked"}` (a logout whose `user_logged_out` event was lost, e.g. with Redis). The
//! same check runs at once whenever the bus subscription comes back after an outage, since the
//! logout events of the outage are lost, and every [`OUTAGE_CHECK`] while it lasts (the relay
//! hears no logout then). A socket is closed when its token expires, at its `exp`, with
//! `{reason:"expired"}`. While the API cannot answer, sockets stay (and are checked again next
//! period).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use shared::port::SessionRef;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::{revoke, Session};
use super::ChatState;
use crate::socketio::Socket;

/// The shortest wait between two sweeps.
const MIN_WAIT: Duration = Duration::from_millis(200);
/// How often the bus subscription's state is looked at (one atomic load).
const BUS_POLL: Duration = Duration::from_secs(1);
/// How often sessions are checked while the bus subscription is down (when
/// `limits.session_check_secs` is longer): a logout is then heard by no relay, so this bounds
/// how long a logged-out socket stays open through a Redis outage.
const OUTAGE_CHECK: Duration = Duration::from_secs(5);

/// The earliest token expiry among the local sockets (unix seconds), kept without scanning the
/// sockets at every connect: a connect lowers it (waking the sweeper only when it did), and each
/// sweep recomputes it from the sockets it looked at.
pub struct Expiries {
    earliest: AtomicI64,
    lowered: Notify,
}

impl Default for Expiries {
    fn default() -> Self {
        Self {
            earliest: AtomicI64::new(i64::MAX),
            lowered: Notify::new(),
        }
    }
}

impl Expiries {
    /// A socket whose token expires at `exp` joined (after it is in the registry).
    pub fn add(&self, exp: i64) {
        if exp < self.earliest.fetch_min(exp, Ordering::SeqCst) {
            self.lowered.notify_one();
        }
    }

    /// When the earliest known token expires, if any socket is known.
    fn next(&self) -> Option<Instant> {
        let earliest = self.earliest.load(Ordering::SeqCst);
        (earliest != i64::MAX).then(|| {
            let left = earliest.saturating_sub(chrono::Utc::now().timestamp());
            Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
        })
    }
}

/// Sweep until the relay stops: at every token expiry, every `limits.session_check_secs` (or
/// [`OUTAGE_CHECK`] while the bus is down), and when the bus comes back.
pub async fn run(state: Weak<ChatState>, stop: CancellationToken) {
    let Some((period, expiries)) = state.upgrade().map(|s| {
        (
            Duration::from_secs(s.limits.session_check_secs),
            s.expiries.clone(),
        )
    }) else {
        return;
    };
    let mut checked_at = Instant::now();
    // The bus epoch last seen live: a different one means events may have been lost between.
    let mut last_live = None;
    let mut bus_down = false;
    loop {
        let next_check = checked_at + check_period(period, bus_down);
        let due = expiries.next().map_or(next_check, |at| at.min(next_check));
        let due = due.max(Instant::now() + MIN_WAIT);
        tokio::select! {
            () = stop.cancelled() => return,
            // A new socket expires sooner than any other: look again.
            () = expiries.lowered.notified() => continue,
            () = tokio::time::sleep_until(due.min(Instant::now() + BUS_POLL)) => {}
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let bus = state.subscriber.epoch();
        let bus_back = bus.is_some() && bus != last_live;
        // Down since the last look: the shorter period counts from the last check.
        bus_down = bus.is_none();
        let next_check = checked_at + check_period(period, bus_down);
        if bus_back {
            last_live = bus;
        } else if Instant::now() < due.min(next_check) {
            continue;
        }
        // Reset before the snapshot: a socket joining after it lowers the value again.
        expiries.earliest.store(i64::MAX, Ordering::SeqCst);
        let sockets = sessions_of(&state.registry.all());
        let now = chrono::Utc::now().timestamp();
        for (socket, session) in &sockets {
            if session.exp <= now {
                tracing::info!(user_id = %session.user, conn_id = %socket.id(), "token expired; closing the socket");
                revoke(socket, "expired");
            } else {
                expiries.earliest.fetch_min(session.exp, Ordering::SeqCst);
            }
        }
        if bus_back || Instant::now() >= next_check {
            checked_at = Instant::now();
            revalidate(&state, &sockets).await;
        }
    }
}

/// How long between two checks of every socket's session: `limits.session_check_secs`, or
/// [`OUTAGE_CHECK`] while the bus is down if that is sooner.
fn check_period(period: Duration, bus_down: bool) -> Duration {
    if bus_down {
        period.min(OUTAGE_CHECK)
    } else {
        period
    }
}

fn sessions_of(sockets: &[Socket]) -> Vec<(Socket, Arc<Session>)> {
    sockets
        .iter()
        .filter_map(|socket| {
            let session = socket.extensions().get::<Arc<Session>>()?;
            Some((socket.clone(), session))
        })
        .collect()
}

/// Ask the API about every distinct session here; close the sockets of those no longer active.
async fn revalidate(state: &ChatState, sockets: &[(Socket, Arc<Session>)]) {
    let distinct: Vec<SessionRef> = sockets
        .iter()
        .map(|(_, s)| SessionRef {
            user: s.user,
            jti: s.jti.clone(),
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if distinct.is_empty() {
        return;
    }
    let active = match state.port.sessions_active(&distinct).await {
        Ok(active) => active,
        Err(error) => {
            tracing::warn!(code = %error.code, "revalidating sessions failed; checked again next period");
            return;
        }
    };
    let revoked: HashSet<&SessionRef> = distinct
        .iter()
        .zip(active)
        .filter(|(_, active)| !active)
        .map(|(session, _)| session)
        .collect();
    for (socket, session) in sockets {
        let key = SessionRef {
            user: session.user,
            jti: session.jti.clone(),
        };
        if revoked.contains(&key) {
            state.sessions.forget(session.user, &session.jti);
            tracing::info!(user_id = %session.user, conn_id = %socket.id(), "session revoked; closing the socket");
            revoke(socket, "revoked");
        }
    }
}
