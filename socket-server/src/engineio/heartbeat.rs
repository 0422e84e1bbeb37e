//! The server-initiated heartbeat of Engine.IO v4: a ping `ping_interval` after the session
//! opened or after the client's last pong, and the session is over if no pong arrives within
//! `ping_timeout` of when that ping was due.
//!
//! Deadlines follow that schedule, not the timers: a ping sent late (a busy runtime) does not push
//! its deadline back, a pong that comes after the deadline does not count even if the timer has
//! not fired yet, and a request that arrives after it finds the session over ([`overdue`]). The
//! client allows the same: `ping_interval + ping_timeout` between pings.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// When the client's last pong arrived, and a wake-up for the heartbeat when one does. Held in
/// the session itself: a watch channel did the same with an allocation of ~0.4 KiB per session.
#[derive(Debug)]
pub struct Pongs {
    /// The last pong's time and how many pongs came (so two pongs at one instant still count).
    last: Mutex<(Instant, u64)>,
    arrived: Notify,
}

impl Pongs {
    /// `opened`: when the session opened, which stands for a pong until the first one.
    pub fn new(opened: Instant) -> Self {
        Self {
            last: Mutex::new((opened, 0)),
            arrived: Notify::new(),
        }
    }

    /// A pong arrived at `at`.
    pub fn record(&self, at: Instant) {
        {
            let mut last = self.lock();
            *last = (at, last.1.wrapping_add(1));
        }
        self.arrived.notify_waiters();
    }

    /// When the last pong arrived (the session's opening until the first).
    pub fn last(&self) -> Instant {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, u64)> {
        // One assignment per use: a poisoned lock still holds a valid pair.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a heartbeat loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatEnd {
    /// No pong within the timeout.
    Timeout,
    /// The ping could not be queued (session closed or outbox full).
    SendFailed,
}

/// Runs until a ping goes unanswered or cannot be sent. `send_ping` queues one ping and says
/// whether it could; `pongs` holds when the last pong arrived (the session's opening until the
/// first). The caller stops it (by dropping the future) when the session closes for another
/// reason.
pub async fn run(
    interval: Duration,
    timeout: Duration,
    mut send_ping: impl FnMut() -> bool,
    pongs: &Pongs,
) -> HeartbeatEnd {
    loop {
        let due = pongs.last() + interval;
        tokio::time::sleep_until(due).await;
        // Pongs that came before this ping (unsolicited) do not answer it.
        let before = pongs.lock().1;
        if !send_ping() {
            return HeartbeatEnd::SendFailed;
        }
        let deadline = due + timeout;
        loop {
            let arrived = pongs.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a pong between the look and the wait is not missed.
            arrived.as_mut().enable();
            let (at, count) = *pongs.lock();
            if count != before {
                if at <= deadline {
                    break;
                }
                // Answered too late.
                return HeartbeatEnd::Timeout;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return HeartbeatEnd::Timeout;
            }
        }
    }
}

/// Whether a session whose last pong (or opening) was at `last` is past its deadline at `now`.
/// A pong before the ping only makes this later than the loop's own deadline, never earlier.
pub fn overdue(last: Instant, interval: Duration, timeout: Duration, now: Instant) -> bool {
    now >= last + interval + timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn pongs(opened: Instant) -> Arc<Pongs> {
        Arc::new(Pongs::new(opened))
    }

    const INTERVAL: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_millis(200);

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_after_interval_plus_timeout() {
        let start = Instant::now();
        let rx = pongs(start);
        let end = run(INTERVAL, TIMEOUT, || true, &rx).await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        assert_eq!(start.elapsed(), INTERVAL + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_every_ping_stays_alive() {
        let rx = pongs(Instant::now());
        let tx = rx.clone();
        let pings = Arc::new(AtomicUsize::new(0));
        let counter = pings.clone();
        // answer each ping 50 ms later, five times, then fall silent
        let answer = tokio::spawn(async move {
            for _ in 0..5 {
                while counter.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                counter.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.record(Instant::now());
            }
            tx
        });
        let sent = pings.clone();
        let start = Instant::now();
        let end = run(
            INTERVAL,
            TIMEOUT,
            move || {
                sent.fetch_add(1, Ordering::SeqCst);
                true
            },
            &rx,
        )
        .await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        // five answered rounds (ping + 50 ms each) then the sixth ping goes unanswered
        assert!(start.elapsed() >= (INTERVAL + Duration::from_millis(50)) * 5 + INTERVAL + TIMEOUT);
        drop(answer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_before_the_ping_does_not_count() {
        let start = Instant::now();
        let rx = pongs(start);
        let tx = rx.clone();
        let early = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.record(Instant::now());
            tx
        });
        let end = run(INTERVAL, TIMEOUT, || true, &rx).await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        assert_eq!(start.elapsed(), INTERVAL + TIMEOUT);
        drop(early.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_that_cannot_be_sent_ends_the_loop() {
        let rx = pongs(Instant::now());
        assert_eq!(
            run(INTERVAL, TIMEOUT, || false, &rx).await,
            HeartbeatEnd::SendFailed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_starts_late_keeps_the_deadline_of_the_schedule() {
        // Arrange: the session opened 400 ms before the loop got to run (a busy runtime)
        let now = Instant::now();
        let rx = pongs(now - Duration::from_millis(400));

        // Act: the ping due 100 ms ago goes out at once
        let end = run(INTERVAL, TIMEOUT, || true, &rx).await;

        // Assert: its deadline is still 500 ms after the opening, not 200 ms after the ping
        assert_eq!(end, HeartbeatEnd::Timeout);
        assert_eq!(now.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_recorded_after_the_deadline_does_not_count() {
        let start = Instant::now();
        let rx = pongs(start);
        let tx = rx.clone();
        // the loop sees the pong before its timer fires, but the pong is dated past the deadline
        let late = tokio::spawn(async move {
            tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
            tx.record(start + INTERVAL + TIMEOUT + Duration::from_millis(1));
            tx
        });
        let end = run(INTERVAL, TIMEOUT, || true, &rx).await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        assert_eq!(start.elapsed(), INTERVAL + Duration::from_millis(100));
        drop(late.await.unwrap());
    }

    #[test]
    fn a_session_is_overdue_from_interval_plus_timeout_after_its_last_pong() {
        let last = Instant::now();
        let deadline = last + INTERVAL + TIMEOUT;
        let just_before = deadline - Duration::from_millis(1);
        assert!(!overdue(last, INTERVAL, TIMEOUT, just_before));
        assert!(overdue(last, INTERVAL, TIMEOUT, deadline));
    }
}
