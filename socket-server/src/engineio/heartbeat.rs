//! The server-initiated heartbeat of Engine.IO v4: a ping every `ping_interval`, and the session
//! is closed if no pong arrives within `ping_timeout` of it.

use std::time::Duration;

use tokio::sync::watch;

/// How a heartbeat loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatEnd {
    /// No pong within the timeout.
    Timeout,
    /// The ping could not be queued (session closed or outbox full).
    SendFailed,
}

/// Runs until a ping goes unanswered or cannot be sent. `send_ping` queues one ping and says
/// whether it could; `pongs` changes each time a pong arrives. The caller stops it (by dropping
/// the future) when the session closes for another reason.
pub async fn run(
    interval: Duration,
    timeout: Duration,
    mut send_ping: impl FnMut() -> bool,
    mut pongs: watch::Receiver<u64>,
) -> HeartbeatEnd {
    loop {
        tokio::time::sleep(interval).await;
        // Pongs that came before this ping (unsolicited) do not answer it.
        pongs.borrow_and_update();
        if !send_ping() {
            return HeartbeatEnd::SendFailed;
        }
        match tokio::time::timeout(timeout, pongs.changed()).await {
            Ok(Ok(())) => {}
            // Timed out, or the session (the sender) is gone.
            Ok(Err(_)) | Err(_) => return HeartbeatEnd::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::time::Instant;

    const INTERVAL: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_millis(200);

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_after_interval_plus_timeout() {
        let (_tx, rx) = watch::channel(0u64);
        let start = Instant::now();
        let end = run(INTERVAL, TIMEOUT, || true, rx).await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        assert_eq!(start.elapsed(), INTERVAL + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_every_ping_stays_alive() {
        let (tx, rx) = watch::channel(0u64);
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
                tx.send_modify(|n| *n += 1);
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
            rx,
        )
        .await;
        assert_eq!(end, HeartbeatEnd::Timeout);
        // five answered rounds (ping + 50 ms each) then the sixth ping goes unanswered
        assert!(start.elapsed() >= (INTERVAL + Duration::from_millis(50)) * 5 + INTERVAL + TIMEOUT);
        drop(answer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_before_the_ping_does_not_count() {
        let (tx, rx) = watch::channel(0u64);
        tx.send_modify(|n| *n += 1);
        let end = run(INTERVAL, TIMEOUT, || true, rx).await;
        assert_eq!(end, HeartbeatEnd::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_that_cannot_be_sent_ends_the_loop() {
        let (_tx, rx) = watch::channel(0u64);
        assert_eq!(
            run(INTERVAL, TIMEOUT, || false, rx).await,
            HeartbeatEnd::SendFailed
        );
    }
}
