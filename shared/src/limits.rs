//! Token buckets per key, for rate limits (a user's sends, typing and new conversations, a
//! client IP's connects), used by the relay and the API. Memory stays bounded: full buckets
//! carry no information and are dropped when the map grows (a sweep each time it doubles).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked before full buckets are first swept.
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
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    /// The size at which full buckets are next swept: twice what a sweep left, so that a map
    /// of buckets all still refilling is not swept again at every request.
    sweep_at: usize,
}

impl Bucket {
    /// Whether the bucket is full at `now`: it then says nothing a new one would not.
    fn full_at(&self, now: Instant, per_sec: f64, burst: f64) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec >= burst
    }
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
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut buckets = self.lock();
        if buckets.map.len() >= buckets.sweep_at {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.map.retain(|_, b| !b.full_at(now, per_sec, burst));
            buckets.sweep_at = (buckets.map.len() * 2).max(SWEEP_AT);
        }
        let bucket = buckets.map.entry(key).or_insert(Bucket {
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
        let mut buckets = self.lock();
        let bucket = buckets.map.entry(key).or_insert(Bucket {
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
        if let Some(bucket) = self.lock().map.get_mut(&key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    /// `key` is no longer in use here (its user left this relay): its bucket goes if it is full.
    /// One still refilling stays until it is (the next sweep), so that leaving and coming back
    /// does not give a spent budget back.
    pub fn release(&self, key: K) {
        self.release_at(key, Instant::now());
    }

    fn release_at(&self, key: K, now: Instant) {
        let mut buckets = self.lock();
        if buckets
            .map
            .get(&key)
            .is_some_and(|b| b.full_at(now, self.per_sec, self.burst))
        {
            buckets.map.remove(&key);
        }
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
    fn a_released_key_keeps_a_spent_budget_until_it_has_refilled() {
        let limiter = RateLimiter::new(1, 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(1, t0) && limiter.allow_at(1, t0));

        limiter.release_at(1, t0);
        assert!(
            !limiter.allow_at(1, t0),
            "released while spent: still spent"
        );

        let refilled = t0 + Duration::from_secs(3);
        limiter.release_at(1, refilled);
        assert!(limiter.lock().map.is_empty(), "a full bucket is dropped");
        assert!(limiter.allow_at(1, refilled) && limiter.allow_at(1, refilled));
    }

    #[test]
    fn a_map_of_buckets_still_refilling_is_swept_again_only_once_it_has_doubled() {
        let limiter = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        for key in 0..SWEEP_AT {
            assert!(limiter.allow_at(key, t0));
        }
        // The sweep at SWEEP_AT keys drops none of these (all spent) and waits for twice as many.
        assert!(limiter.allow_at(SWEEP_AT, t0));
        assert_eq!(limiter.lock().sweep_at, 2 * SWEEP_AT);

        let later = t0 + Duration::from_secs(2);
        for key in SWEEP_AT + 1..2 * SWEEP_AT {
            assert!(limiter.allow_at(key, later));
        }
        // At twice as many, the buckets spent at t0 have refilled and go.
        assert!(limiter.allow_at(2 * SWEEP_AT, later));
        assert_eq!(limiter.lock().map.len(), SWEEP_AT);
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
