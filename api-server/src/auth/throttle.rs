//! Failed-login throttling: a sliding window per username and, independently, per client IP
//! (the address behind trusted proxies, see `shared::net`). Past its limit of failures inside
//! `window` — `max_failures` per username, `max_ip_failures` per address, which is higher since
//! one address may be a whole office behind NAT — login answers 429 until the oldest of them
//! leaves the window. A success resets the username's count (not the IP's: one good password must not
//! clear a sweep over many accounts).
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
    User(String),
    Ip(IpAddr),
}

/// Counts failed logins; shared by every worker through `AppState`.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    max_ip_failures: u32,
    window: Duration,
    /// Per key, the times of its recent failures, oldest first (at most `max_failures`).
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// `max_failures` per username and per IP alike; `0` disables throttling.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
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

    /// The limit for one key; `0` means the key is not throttled.
    fn cap(&self, key: &Key) -> usize {
        match key {
            Key::User(_) => self.max_failures as usize,
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
        self.check_keys(ip.map(Key::Ip).into_iter(), Instant::now())
    }

    /// Count one attempt from the address `ip`.
    pub fn record_address(&self, ip: Option<IpAddr>) {
        self.record_keys(ip.map(Key::Ip).into_iter(), Instant::now());
    }

    /// Forget the failures of `username` after a successful login.
    pub fn record_success(&self, username: &str) {
        self.lock().remove(&user_key(username));
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

fn user_key(username: &str) -> Key {
    Key::User(
        username
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect(),
    )
}

fn keys(username: &str, ip: Option<IpAddr>) -> impl Iterator<Item = Key> {
    std::iter::once(user_key(username)).chain(ip.map(Key::Ip))
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
        t.record_success("ALICE");
        assert!(t.check_at("alice", OTHER_IP, now).is_ok());
        assert!(t.check_at("alice", IP, now).is_err());
    }

    #[test]
    fn each_key_keeps_at_most_max_failures_timestamps() {
        let t = LoginThrottle::new(3, WINDOW);
        let now = Instant::now();
        fail(&t, "alice", None, now, 50);
        let map = t.lock();
        assert_eq!(map[&user_key("alice")].len(), 3);
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
            .contains_key(&user_key(&format!("user{}", MAX_KEYS + 9))));
    }

    #[test]
    fn expired_keys_are_pruned_before_recent_ones() {
        let t = LoginThrottle::new(5, WINDOW);
        let start = Instant::now();
        for i in 0..MAX_KEYS {
            t.record_failure_at(&format!("old{i}"), None, start);
        }
        let later = start + WINDOW + Duration::from_secs(1);
        t.record_failure_at("fresh", None, later);
        assert_eq!(t.len(), 1);
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
