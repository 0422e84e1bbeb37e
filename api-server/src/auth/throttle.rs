//! Failed-login throttling: sliding windows of failures, counted three ways at once, each with a
//! limit of its own inside `window`; past any of them login answers 429 until the oldest of its
//! failures leaves the window:
//! - per username **from one client address** (`max_failures`): guessing one password from one
//!   place. It refuses only that address, so a stranger failing someone's logins does not lock
//!   them out;
//! - per username from any address (`max_account_failures`, higher): guessing spread over many
//!   addresses. Locking an account out for everyone takes failures from
//!   `max_account_failures / max_failures` addresses (twenty with the defaults);
//! - per client address, any usernames (`max_ip_failures`, higher than the first, since one
//!   address may be a whole office behind NAT): one place sweeping many accounts.
//!
//! The client address is the one behind trusted proxies (`shared::net`); an IPv6 address counts
//! by its /64, the block one subscriber is usually given. A success resets the username's counts
//! (not the address's: one good password must not clear a sweep over many accounts).
//!
//! Memory is bounded twice: each key keeps at most `max_failures` timestamps, and the number of
//! keys is capped at [`MAX_KEYS`]; keys whose failures all left the window are pruned as the map
//! grows, and past the cap the least recently failing keys are dropped.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys (usernames + IPs) remembered at once.
pub const MAX_KEYS: usize = 100_000;

/// Longest username kept as a key (longer ones cannot exist; this bounds each key's size).
const MAX_KEY_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A username from one address (none when the address is not known).
    Pair(String, Option<IpAddr>),
    User(String),
    Ip(IpAddr),
}

/// Counts failed logins; shared by every worker through `AppState`.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    max_account_failures: u32,
    max_ip_failures: u32,
    window: Duration,
    /// Per key, the times of its recent failures, oldest first (at most `max_failures`).
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// `max_failures` per username from one address, per username and per address alike; `0`
    /// disables throttling.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            max_account_failures: max_failures,
            max_ip_failures: max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts per client IP only, `per_ip` in `window` (registrations: every attempt counts,
    /// through [`Self::check_address`] and [`Self::record_address`]).
    pub fn registrations(per_ip: u32, window: Duration) -> Self {
        Self::new(0, window).with_ip_limit(per_ip)
    }

    /// A different limit per client IP (`0`: addresses are not throttled, usernames still are).
    pub fn with_ip_limit(mut self, max_ip_failures: u32) -> Self {
        self.max_ip_failures = max_ip_failures;
        self
    }

    /// A different limit per username from any address (`0`: not counted).
    pub fn with_account_limit(mut self, max_account_failures: u32) -> Self {
        self.max_account_failures = max_account_failures;
        self
    }

    /// The limit for one key; `0` means the key is not throttled.
    fn cap(&self, key: &Key) -> usize {
        match key {
            Key::Pair(..) => self.max_failures as usize,
            Key::User(_) => self.max_account_failures as usize,
            Key::Ip(_) => self.max_ip_failures as usize,
        }
    }

    /// `Err(retry_after)` when `username` or `ip` is over the limit.
    pub fn check(&self, username: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(username, ip, Instant::now())
    }

    /// Count one failed login for `username` and `ip`.
    pub fn record_failure(&self, username: &str, ip: Option<IpAddr>) {
        self.record_failure_at(username, ip, Instant::now());
    }

    /// `Err(retry_after)` when the address `ip` is over its limit, whatever the username.
    pub fn check_address(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_keys(ip.map(|ip| Key::Ip(block(ip))).into_iter(), Instant::now())
    }

    /// Count one attempt from the address `ip`.
    pub fn record_address(&self, ip: Option<IpAddr>) {
        self.record_keys(ip.map(|ip| Key::Ip(block(ip))).into_iter(), Instant::now());
    }

    /// Forget the failures of `username` (from `ip` and from anywhere) after a successful login.
    pub fn record_success(&self, username: &str, ip: Option<IpAddr>) {
        let name = username_key(username);
        let mut map = self.lock();
        map.remove(&Key::Pair(name.clone(), ip.map(block)));
        map.remove(&Key::User(name));
    }

    /// How many keys are remembered (for tests and debugging).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_at(&self, username: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        self.check_keys(keys(username, ip), now)
    }

    fn check_keys(&self, keys: impl Iterator<Item = Key>, now: Instant) -> Result<(), Duration> {
        let map = self.lock();
        let wait = keys
            .filter_map(|k| Some((self.cap(&k), map.get(&k)?)))
            .filter_map(|(cap, times)| self.retry_after(cap, times, now))
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    fn record_failure_at(&self, username: &str, ip: Option<IpAddr>, now: Instant) {
        self.record_keys(keys(username, ip), now);
    }

    fn record_keys(&self, keys: impl Iterator<Item = Key>, now: Instant) {
        let mut map = self.lock();
        for key in keys {
            let cap = self.cap(&key);
            if cap == 0 {
                continue;
            }
            let times = map.entry(key).or_default();
            while times.len() >= cap {
                times.pop_front();
            }
            times.push_back(now);
        }
        if map.len() > MAX_KEYS {
            self.shrink(&mut map, now);
        }
    }

    /// When `times` is at the limit `cap` inside the window: how long until its oldest failure
    /// leaves.
    fn retry_after(&self, cap: usize, times: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
        if cap == 0 || times.len() < cap {
            return None;
        }
        let oldest = *times.front()?;
        let until = oldest + self.window;
        (until > now).then(|| until - now)
    }

    /// Drop keys without a failure in the window; if still too many, the least recent ones, down
    /// to 90 % of the cap so that this runs rarely.
    fn shrink(&self, map: &mut HashMap<Key, VecDeque<Instant>>, now: Instant) {
        let window = self.window;
        map.retain(|_, times| {
            times
                .back()
                .is_some_and(|&t| now.duration_since(t) < window)
        });
        let target = MAX_KEYS / 10 * 9;
        if map.len() > target {
            let mut latest: Vec<Instant> = map.values().filter_map(|t| t.back().copied()).collect();
            let cut = map.len() - target;
            if cut > latest.len() {
                return;
            }
            let (_, &mut threshold, _) = latest.select_nth_unstable(cut - 1);
            map.retain(|_, times| times.back().is_some_and(|&t| t > threshold));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is one
        // push or pop), so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A username as the counts know it: trimmed, lower-cased, bounded.
fn username_key(username: &str) -> String {
    username
        .trim()
        .to_lowercase()
        .chars()
        .take(MAX_KEY_CHARS)
        .collect()
}

/// The address as it is counted: an IPv4 address whole (an IPv4-mapped IPv6 one as IPv4), an
/// IPv6 one by its /64.
fn block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

fn keys(username: &str, ip: Option<IpAddr>) -> impl Iterator<Item = Key> {
    let name = username_key(username);
    let ip = ip.map(block);
    [Key::Pair(name.clone(), ip), Key::User(name)]
        .into_iter()
        .chain(ip.map(Key::Ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const WINDOW: Duration = Duration::from_secs(300);
    const IP: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    const OTHER_IP: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));

    fn fail(t: &LoginThrottle, user: &str, ip: Option<IpAddr>, at: Instant, n: u32) {
        for _ in 0..n {
            t.record_failure_at(user, ip, at);
        }
    }

    #[test]
    fn logins_are_allowed_until_the_limit_then_refused_with_a_retry_delay() {
        let t = LoginThrottle::new(3, WINDOW);
        let now = Instant::now();
        fail(&t, "alice", IP, now, 2);
        assert_eq!(t.check_at("alice", IP, now), Ok(()));
        fail(&t, "alice", IP, now, 1);
        let wait = t
            .check_at("alice", IP, now + Duration::from_secs(100))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(200));
    }

    #[test]
    fn the_username_limit_holds_from_any_ip_and_ignores_case() {
        let t = LoginThrottle::new(2, WINDOW);
        let now = Instant::now();
        fail(&t, "Alice", IP, now, 2);
        assert!(t.check_at("alice", OTHER_IP, now).is_err());
        assert!(t.check_at("bob", OTHER_IP, now).is_ok());
    }

    #[test]
    fn failures_from_one_address_lock_the_username_out_only_there() {
        let t = LoginThrottle::new(3, WINDOW).with_account_limit(6);
        let now = Instant::now();
        fail(&t, "alice", IP, now, 3);
        assert!(
            t.check_at("alice", IP, now).is_err(),
            "the guesser is refused"
        );
        assert_eq!(t.check_at("alice", OTHER_IP, now), Ok(()), "alice is not");
        // A second address at its limit brings the account to its own.
        fail(&t, "alice", OTHER_IP, now, 3);
        let third = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(t.check_at("alice", third, now).is_err());
    }

    #[test]
    fn an_ipv6_address_counts_by_its_64_and_a_mapped_ipv4_one_as_ipv4() {
        let t = LoginThrottle::new(2, WINDOW).with_account_limit(100);
        let now = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("an address");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("an address");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        fail(&t, "alice", Some(one), now, 2);
        assert!(t.check_at("alice", Some(same_64), now).is_err());
        assert!(t.check_at("alice", Some(other_64), now).is_ok());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("an address");
        fail(&t, "bob", Some(mapped), now, 2);
        assert!(t.check_at("bob", IP, now).is_err());
    }

    #[test]
    fn the_ip_limit_holds_across_usernames() {
        let t = LoginThrottle::new(3, WINDOW);
        let now = Instant::now();
        for user in ["a1", "a2", "a3"] {
            fail(&t, user, IP, now, 1);
        }
        assert!(t.check_at("a4", IP, now).is_err());
        assert!(t.check_at("a4", OTHER_IP, now).is_ok());
    }

    #[test]
    fn failures_leave_the_window_one_by_one() {
        let t = LoginThrottle::new(2, WINDOW);
        let start = Instant::now();
        fail(&t, "alice", None, start, 1);
        fail(&t, "alice", None, start + Duration::from_secs(60), 1);
        assert!(t
            .check_at("alice", None, start + Duration::from_secs(299))
            .is_err());
        assert!(t.check_at("alice", None, start + WINDOW).is_ok());
    }

    #[test]
    fn a_success_resets_the_username_but_not_the_ip() {
        let t = LoginThrottle::new(2, WINDOW);
        let now = Instant::now();
        fail(&t, "alice", IP, now, 2);
        t.record_success("ALICE", IP);
        assert!(t.check_at("alice", OTHER_IP, now).is_ok());
        assert!(t.check_at("alice", IP, now).is_err());
    }

    #[test]
    fn each_key_keeps_at_most_max_failures_timestamps() {
        let t = LoginThrottle::new(3, WINDOW);
        let now = Instant::now();
        fail(&t, "alice", None, now, 50);
        let map = t.lock();
        assert_eq!(map[&Key::User(username_key("alice"))].len(), 3);
    }

    #[test]
    fn the_number_of_keys_stays_bounded() {
        let t = LoginThrottle::new(5, WINDOW);
        let start = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            let at = start + Duration::from_millis(i as u64);
            t.record_failure_at(&format!("user{i}"), None, at);
        }
        assert!(t.len() <= MAX_KEYS);
        // The most recent keys survive.
        assert!(t
            .lock()
            .contains_key(&Key::User(username_key(&format!("user{}", MAX_KEYS + 9)))));
    }

    #[test]
    fn expired_keys_are_pruned_before_recent_ones() {
        let t = LoginThrottle::new(5, WINDOW);
        let start = Instant::now();
        // Two keys a failure without an address: the username from nowhere known, and anywhere.
        for i in 0..MAX_KEYS / 2 {
            t.record_failure_at(&format!("old{i}"), None, start);
        }
        assert_eq!(t.len(), MAX_KEYS);
        let later = start + WINDOW + Duration::from_secs(1);
        t.record_failure_at("fresh", None, later);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_ip_limit_is_its_own() {
        let t = LoginThrottle::new(2, WINDOW).with_ip_limit(5);
        let now = Instant::now();
        // Failures for many users from one address (a load balancer, an office behind NAT).
        for user in ["a", "b", "c", "d"] {
            fail(&t, user, IP, now, 1);
        }
        assert!(t.check_at("e", IP, now).is_ok(), "4 of 5 for the address");
        fail(&t, "e", IP, now, 1);
        assert!(
            t.check_at("f", IP, now).is_err(),
            "the address is at its limit"
        );
        assert!(
            t.check_at("f", OTHER_IP, now).is_ok(),
            "other addresses are not"
        );
        // A username hits its own, lower, limit from any address.
        fail(&t, "victim", OTHER_IP, now, 2);
        assert!(t
            .check_at("victim", Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))), now)
            .is_err());
    }

    #[test]
    fn a_zero_limit_disables_throttling() {
        let t = LoginThrottle::new(0, WINDOW);
        let now = Instant::now();
        fail(&t, "alice", IP, now, 10);
        assert!(t.check_at("alice", IP, now).is_ok());
        assert!(t.is_empty());
    }
}
