//! The roster of live relays: each relay records itself on the bus with an expiry and
//! acknowledges the other relays it sees, so a relay alone on the bus can stop publishing copies
//! nobody else would receive, and a starting relay can tell when every other relay has seen it
//! (and publishes to it) before relying on them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The roster as one relay read it when it refreshed its own entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterView {
    /// The other live relays.
    pub peers: Vec<String>,
    /// The relays that have seen the reader in the roster (acknowledged it).
    pub acked_by: Vec<String>,
}

impl RosterView {
    /// Whether every live peer has seen the reader: each one publishes what the reader's users
    /// must receive.
    pub fn all_acknowledged(&self) -> bool {
        self.peers.iter().all(|peer| self.acked_by.contains(peer))
    }
}

/// The in-process roster ([`super::memory::MemoryBus`]): relay → alive until, and
/// (seer, seen) → acknowledged until.
#[derive(Default)]
pub(crate) struct MemoryRoster {
    relays: HashMap<String, Instant>,
    acks: HashMap<(String, String), Instant>,
}

impl MemoryRoster {
    /// As [`super::Bus::roster`].
    pub(crate) fn refresh(&mut self, me: &str, ttl: Duration) -> RosterView {
        let now = Instant::now();
        let until = now + ttl;
        self.relays.retain(|_, alive| *alive > now);
        self.acks.retain(|_, alive| *alive > now);
        self.relays.insert(me.to_owned(), until);
        let peers: Vec<String> = self.relays.keys().filter(|r| *r != me).cloned().collect();
        for peer in &peers {
            self.acks.insert((me.to_owned(), peer.clone()), until);
        }
        let acked_by = self
            .acks
            .keys()
            .filter(|(_, seen)| seen == me)
            .map(|(seer, _)| seer.clone())
            .collect();
        RosterView { peers, acked_by }
    }

    /// As [`super::Bus::roster_leave`].
    pub(crate) fn leave(&mut self, me: &str) {
        self.relays.remove(me);
    }
}

/// The roster contract both implementations pass (called from their tests).
#[cfg(test)]
pub(crate) async fn roster_contract(bus: &dyn super::Bus) {
    let ttl = Duration::from_secs(30);
    // Alone: no peers, nobody to wait for.
    let a = bus.roster("relay-a", ttl).await.unwrap();
    assert_eq!(a, RosterView::default());
    assert!(a.all_acknowledged());
    // A second relay sees the first, which has not seen it yet.
    let b = bus.roster("relay-b", ttl).await.unwrap();
    assert_eq!(b.peers, vec!["relay-a".to_owned()]);
    assert!(!b.all_acknowledged());
    // The first refreshes: it sees and acknowledges the second, and the second was seen.
    let a = bus.roster("relay-a", ttl).await.unwrap();
    assert_eq!(a.peers, vec!["relay-b".to_owned()]);
    assert_eq!(a.acked_by, vec!["relay-b".to_owned()]);
    let b = bus.roster("relay-b", ttl).await.unwrap();
    assert!(b.all_acknowledged(), "{b:?}");
    // A relay that leaves (or whose entry expires) is no peer any more.
    bus.roster_leave("relay-b").await.unwrap();
    assert!(bus.roster("relay-a", ttl).await.unwrap().peers.is_empty());
    bus.roster("relay-c", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(bus.roster("relay-a", ttl).await.unwrap().peers.is_empty());
}
