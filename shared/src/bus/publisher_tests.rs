//! The background publisher against the in-process bus and against doubles of a bus that
//! fails or hangs (real Redis outages are in `outage_tests`).

use super::*;
use crate::bus::memory::MemoryBus;
use crate::bus::{subscriber, BusError, BusMessage, PresenceState};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Mutex;

/// A bus whose publishing and ping fail while `up` is false, hang while `hang` is true, and
/// record the size of each batch they were given.
#[derive(Default)]
struct DoubleBus {
    down: AtomicBool,
    hang: AtomicBool,
    batches: Mutex<Vec<usize>>,
}

impl DoubleBus {
    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }

    async fn answer(&self) -> Result<(), BusError> {
        if self.hang.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::Relaxed) {
            return Err(BusError(anyhow::anyhow!("connection refused")));
        }
        Ok(())
    }
}

#[async_trait]
impl Bus for DoubleBus {
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError> {
        self.publish_many(&[(users.to_vec(), payload.to_owned())])
            .await
    }

    async fn publish_many(&self, batch: &[(Vec<UserId>, String)]) -> Result<(), BusError> {
        self.batches.lock().unwrap().push(batch.len());
        self.answer().await
    }

    async fn presence(&self, _: &[UserId]) -> Result<Vec<PresenceState>, BusError> {
        unimplemented!()
    }

    async fn presence_open(&self, _: UserId, _: &str, _: Duration) -> Result<bool, BusError> {
        unimplemented!()
    }

    async fn presence_close(&self, _: UserId, _: &str, _: Duration) -> Result<usize, BusError> {
        unimplemented!()
    }

    async fn presence_settle(
        &self,
        _: UserId,
        _: Duration,
    ) -> Result<Option<DateTime<Utc>>, BusError> {
        unimplemented!()
    }

    async fn presence_sweep(
        &self,
        _: Duration,
        _: usize,
        _: Duration,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, BusError> {
        unimplemented!()
    }

    async fn presence_refresh(&self, _: &[(UserId, String)], _: Duration) -> Result<(), BusError> {
        unimplemented!()
    }

    async fn revoke_token(&self, _: &str, _: Duration) -> Result<(), BusError> {
        unimplemented!()
    }

    async fn is_token_revoked(&self, _: &str) -> Result<bool, BusError> {
        unimplemented!()
    }

    async fn roster(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<crate::bus::roster::RosterView, BusError> {
        unimplemented!()
    }

    async fn roster_leave(&self, _: &str) -> Result<(), BusError> {
        unimplemented!()
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.answer().await
    }

    fn subscribe(
        &self,
    ) -> (
        subscriber::Subscriber,
        tokio::sync::mpsc::Receiver<BusMessage>,
    ) {
        unreachable!("the publisher never subscribes")
    }
}

/// Fast probes and timeouts so that tests wait milliseconds, not seconds.
fn quick(capacity: usize) -> PublisherConfig {
    PublisherConfig {
        timeout: Duration::from_millis(100),
        probe_interval: Duration::from_millis(10),
        flush_timeout: Duration::from_millis(300),
        ..PublisherConfig::new(capacity)
    }
}

fn typing(user: i64) -> BusEvent {
    BusEvent::Typing {
        conversation_id: crate::ids::ConversationId(1),
        user_id: UserId(user),
        is_typing: true,
    }
}

/// Poll `done` every 5 ms for at most 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn published_events_reach_subscribers_in_an_envelope_naming_the_origin() {
    // Arrange
    let bus = Arc::new(MemoryBus::new());
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(7)).await;
    let (publisher, _task) = BusPublisher::start(bus, "api-test", 16);

    // Act
    publisher.publish(&[UserId(7)], typing(7));

    // Assert
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let envelope: Envelope = serde_json::from_str(&got.payload).unwrap();
    assert_eq!(got.user, UserId(7));
    assert_eq!(envelope.origin, "api-test");
    assert_eq!(envelope.event, typing(7));
    let counters = publisher.counters();
    eventually("one event is counted published", || {
        counters.published() == 1
    })
    .await;
    assert_eq!(counters.dropped(), 0);
    assert!(counters.bus_up());
}

#[tokio::test]
async fn events_queued_together_go_out_in_one_round_trip() {
    let bus = Arc::new(DoubleBus::default());
    let (publisher, _task) = BusPublisher::start_with(bus.clone(), "o", quick(64));

    // Queued before the task runs (single-threaded test runtime: no await in between).
    for user in 1..=5 {
        publisher.publish(&[UserId(user)], typing(user));
    }

    let counters = publisher.counters();
    eventually("five events are published", || counters.published() == 5).await;
    assert_eq!(bus.batches(), vec![5]);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    // Arrange: a bus that never answers, so nothing leaves the queue of 4
    let bus = Arc::new(DoubleBus::default());
    bus.hang.store(true, Ordering::Relaxed);
    let (publisher, _task) = BusPublisher::start_with(bus, "o", quick(4));

    // Act: ten events before the task gets to run
    for user in 1..=10 {
        publisher.publish(&[UserId(user)], typing(user));
    }

    // Assert
    assert_eq!(publisher.counters().dropped(), 6);
}

#[tokio::test]
async fn while_the_bus_is_down_events_are_dropped_without_trying_each_and_it_resumes_after() {
    // Arrange: the first round trip fails, so the bus counts as down
    let bus = Arc::new(DoubleBus::default());
    bus.down.store(true, Ordering::Relaxed);
    let (publisher, _task) = BusPublisher::start_with(bus.clone(), "o", quick(1024));
    let counters = publisher.counters();
    publisher.publish(&[UserId(1)], typing(1));
    eventually("the bus counts as down", || !counters.bus_up()).await;

    // Act: a hundred events during the outage
    for _ in 0..100 {
        publisher.publish(&[UserId(1)], typing(1));
    }
    eventually("every event is counted dropped", || {
        counters.dropped() == 101
    })
    .await;

    // Assert: one round trip was tried, then only probes
    assert_eq!(bus.batches(), vec![1]);
    assert_eq!(counters.published(), 0);

    // The bus comes back: a probe notices although events keep arriving more often than
    // probes are due, and publishing resumes.
    bus.down.store(false, Ordering::Relaxed);
    eventually("the bus counts as up again", || {
        publisher.publish(&[UserId(1)], typing(1));
        counters.bus_up()
    })
    .await;
    let published = counters.published();
    publisher.publish(&[UserId(1)], typing(1));
    eventually("the next event is published", || {
        counters.published() > published
    })
    .await;
}

#[tokio::test]
async fn a_bus_that_does_not_answer_counts_as_down_after_the_timeout() {
    let bus = Arc::new(DoubleBus::default());
    bus.hang.store(true, Ordering::Relaxed);
    let (publisher, _task) = BusPublisher::start_with(bus.clone(), "o", quick(16));
    let counters = publisher.counters();

    publisher.publish(&[UserId(1)], typing(1));

    eventually("the bus counts as down", || !counters.bus_up()).await;
    assert_eq!(counters.dropped(), 1);
    bus.hang.store(false, Ordering::Relaxed);
    eventually("the bus counts as up again", || counters.bus_up()).await;
}

#[tokio::test]
async fn the_task_ends_when_the_last_handle_is_dropped_after_sending_what_was_queued() {
    // Arrange
    let bus = Arc::new(MemoryBus::new());
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(1)).await;
    let (publisher, task) = BusPublisher::start(bus, "o", 16);
    let counters = publisher.counters();
    let clone = publisher.clone();

    // Act: three events, then every handle goes
    for _ in 0..3 {
        clone.publish(&[UserId(1)], typing(1));
    }
    drop(publisher);
    drop(clone);

    // Assert: the task ends by itself and the three were sent
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends with its last handle")
        .unwrap();
    assert_eq!(counters.published(), 3);
    for _ in 0..3 {
        assert!(rx.recv().await.is_some());
    }
}

#[tokio::test]
async fn the_task_ends_within_the_flush_bound_when_the_bus_hangs() {
    let bus = Arc::new(DoubleBus::default());
    bus.hang.store(true, Ordering::Relaxed);
    let (publisher, task) = BusPublisher::start_with(bus, "o", quick(16));
    let counters = publisher.counters();
    for _ in 0..3 {
        publisher.publish(&[UserId(1)], typing(1));
    }

    drop(publisher);

    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends although the bus hangs")
        .unwrap();
    assert_eq!(counters.dropped(), 3);
    assert_eq!(counters.published(), 0);
}

#[tokio::test]
async fn events_for_nobody_are_not_queued() {
    let bus = Arc::new(DoubleBus::default());
    let (publisher, _task) = BusPublisher::start_with(bus.clone(), "o", quick(1));

    publisher.publish(&[], typing(1));
    publisher.publish(&[UserId(1)], typing(1));

    let counters = publisher.counters();
    eventually("the one addressed event is published", || {
        counters.published() == 1
    })
    .await;
    assert_eq!(counters.dropped(), 0);
}
