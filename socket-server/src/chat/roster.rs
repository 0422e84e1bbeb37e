//! This relay in the roster of relays ([`shared::bus::roster`]): whether any other relay is
//! live, so that a relay alone on the bus publishes nothing only relays would read (relayed
//! copies, typing, presence, failures): it delivers locally only.
//!
//! A starting relay records itself and waits (at most [`JOIN_WAIT`]) until every live relay
//! has acknowledged it, that is has seen it in the roster and so publishes again, before it
//! serves: no relayed copy for its users is lost in the switch from one relay to two. The
//! roster is refreshed every [`POLL`]; a relay that cannot read it (Redis down) publishes
//! everything, as if it had peers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use shared::bus::Bus;
use tokio_util::sync::CancellationToken;

use super::ChatState;

/// How often each relay refreshes its entry and reads the roster.
pub const POLL: Duration = Duration::from_millis(250);
/// How long an entry lives without a refresh (a relay that died is no peer after this).
pub const TTL: Duration = Duration::from_secs(3);
/// Longest a starting relay waits for every live relay to acknowledge it.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Peers not known: the roster could not be read.
const UNKNOWN: i64 = -1;

/// The other live relays, as last read.
pub struct Roster {
    peers: AtomicI64,
}

impl Roster {
    /// Record `origin` in the roster and wait until every live relay has acknowledged it (at
    /// most [`JOIN_WAIT`]; the bus failing ends the wait at once, peers unknown).
    pub async fn join(bus: &dyn Bus, origin: &str) -> Self {
        let roster = Self {
            peers: AtomicI64::new(UNKNOWN),
        };
        let deadline = tokio::time::Instant::now() + JOIN_WAIT;
        loop {
            let view = match bus.roster(origin, TTL).await {
                Ok(view) => view,
                Err(error) => {
                    tracing::warn!(%error, "reading the roster of relays failed: publishing everything");
                    return roster;
                }
            };
            roster.set(view.peers.len());
            if view.all_acknowledged() {
                tracing::info!(peers = view.peers.len(), "joined the roster of relays");
                return roster;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    peers = view.peers.len(),
                    acknowledged = view.acked_by.len(),
                    "not every relay acknowledged this one in time: serving anyway"
                );
                return roster;
            }
            tokio::time::sleep(POLL / 5).await;
        }
    }

    /// No other relay is live: nothing published for relays would be read.
    pub fn alone(&self) -> bool {
        self.peers.load(Ordering::Relaxed) == 0
    }

    /// The other live relays, `-1` when unknown (the `relay_peers` gauge).
    pub fn peers(&self) -> i64 {
        self.peers.load(Ordering::Relaxed)
    }

    fn set(&self, peers: usize) {
        let peers = i64::try_from(peers).unwrap_or(i64::MAX);
        self.peers.store(peers, Ordering::Relaxed);
    }
}

/// Refresh this relay's entry every [`POLL`] until the relay stops; then leave the roster.
pub async fn refresh_forever(state: Weak<ChatState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        if stopped {
            let _ = state.bus.roster_leave(&state.origin).await;
            return;
        }
        match state.bus.roster(&state.origin, TTL).await {
            Ok(view) => {
                if view.peers.len() as i64 != state.roster.peers() {
                    tracing::info!(peers = view.peers.len(), "relays on the bus changed");
                }
                state.roster.set(view.peers.len());
            }
            Err(error) => {
                if state.roster.peers() != UNKNOWN {
                    tracing::warn!(%error, "reading the roster of relays failed: publishing everything");
                }
                state.roster.peers.store(UNKNOWN, Ordering::Relaxed);
            }
        }
    }
}
