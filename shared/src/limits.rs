//! Token buckets per key, for rate limits (a user's sends, typing and new conversations, a
//! client IP's connects), used by the relay and the API. Memory stays bounded: full buckets
//! carry no information and are dropped when the map grows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked before full buckets are swept.
const SWEEP_AT: usize = 10_000;

/// One bucket: tokens left and when it was last refilled.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets of `burst` tokens refilled at `per_sec` per second, one per key.
pub struct RateLimiter<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self::with_rate(f64::from(per_sec), burst)
    }

    /// Refilled at `per_minute` per minute, for what is rarely done (creating conversations).
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self::with_rate(f64::from(per_minute) / 60.0, burst)
    }

    fn with_rate(per_sec: f64, burst: u32) -> Self {
        Self {
            per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`; `false` when the key is over its rate.
    pub fn allow(&self, key: K) -> bool {
        self.check(key).is_ok()
    }

    /// Take one token for `key`, or say how long until one is available (a `Retry-After`).
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    #[cfg(test)]
    fn allow_at(&self, key: K, now: Instant) -> bool {
        self.check_at(key, now).is_ok()
    }

    fn check_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        } else {
            Err(Duration::MAX)
        }
    }

    /// Count one use by `key` that was not asked for: a send admitted elsewhere (the relay, the
    /// other path of the same user) draws from the same budget. The bucket may go into debt, at
    /// most one burst deep, which later requests then wait out.
    pub fn charge(&self, key: K) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_sec;
        bucket.tokens = ((bucket.tokens + refill).min(self.burst) - 1.0).max(-self.burst);
        bucket.at = now;
    }

    /// Give back the token a request took and turned out not to need (it found what it would
    /// have created); never above a full bucket.
    pub fn refund(&self, key: K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    /// Forget `key` (e.g. its user left this relay).
    pub fn forget(&self, key: K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_refills_it() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at(1, t0)));
        assert!(!limiter.allow_at(1, t0));
        assert!(limiter.allow_at(2, t0), "another key has its own bucket");
        assert!(limiter.allow_at(1, t0 + Duration::from_millis(500)));
        assert!(!limiter.allow_at(1, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn charges_draw_from_the_same_bucket_into_bounded_debt() {
        let limiter = RateLimiter::new(1, 2);
        for _ in 0..10 {
            limiter.charge(1);
        }
        let t0 = Instant::now();
        let wait = limiter.check_at(1, t0).expect_err("in debt");
        // Two tokens of debt at most, plus the one asked for: three seconds at 1/s.
        assert!(wait > Duration::from_millis(2900) && wait <= Duration::from_secs(3));
    }

    #[test]
    fn a_refunded_token_can_be_taken_again_but_never_beyond_the_burst() {
        let limiter = RateLimiter::per_minute(1, 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(1, t0) && limiter.allow_at(1, t0));
        limiter.refund(1);
        assert!(limiter.allow_at(1, t0), "the refunded token");
        let wait = limiter.check_at(1, t0).expect_err("empty bucket");
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
        limiter.refund(2);
        limiter.refund(2);
        assert!((0..2).all(|_| limiter.allow_at(2, t0)));
        assert!(
            !limiter.allow_at(2, t0),
            "refunds do not grow a bucket past its burst"
        );
    }

    #[test]
    fn a_refusal_says_when_the_next_token_comes() {
        let limiter = RateLimiter::new(4, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.check_at(1, t0), Ok(()));
        let wait = limiter.check_at(1, t0).expect_err("empty bucket");
        assert!(wait > Duration::from_millis(240) && wait <= Duration::from_millis(250));
        assert_eq!(
            limiter.check_at(1, t0 + wait + Duration::from_millis(1)),
            Ok(())
        );
    }
}
