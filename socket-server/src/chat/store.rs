//! Storing what the relay already delivered: sends are grouped into batches and stored through
//! the port (one request, one transaction per batch), then acknowledged one by one and, when
//! every message of the batch was relayed, announced by this relay (`message_saved` on its own
//! devices at once, `message_stored` on the bus while other relays are live) instead of by the
//! API's publish (`shared::port::Announce`).
//!
//! The relay has a fixed number of *lanes* (`limits.store_lanes`, one by default), each one task
//! that stores one batch at a time: everything queued while the previous batch was being stored,
//! so batches grow with the load. A sender's messages always go to the same lane (chosen by user
//! id), so one socket's messages are stored in the order they were sent; several lanes run side
//! by side, so a slow batch holds up only its own lane, at the price of transactions contending
//! for the same conversation rows (a direct conversation's two members may be on two lanes).
//! Nothing on the live path waits here: [`StoreLanes::push`] never blocks.
//! The queues are bounded by admission, not by their channel: a send is accepted only while its
//! socket has fewer than `limits.sends_queued_per_socket` and the relay fewer than
//! `limits.sends_in_flight` sends unanswered ([`Admission`]).
//!
//! Under a sustained load a lane starts a batch at most once per `limits.store_interval_ms`
//! (Nagle's rule for batches): a message arriving sooner after the previous batch began waits
//! for the first send that arrives once that interval is over (with nothing after it, for the
//! end of a second interval) and is stored with it and whatever else arrived meanwhile, so a
//! batch starts in the wake-up its last send caused, not in one of its own ([`Gathering`]).
//! Sparse sends (one per interval or fewer) are stored at once; busy lanes store several
//! messages per request and transaction instead of one, which is what most of a message's
//! storage CPU costs (the request, the round trips, the commit). Acks wait at most two
//! intervals longer; the relayed copies never wait.
//!
//! A batch's answer is a burst: an ack and up to three `message_saved` per message, a write
//! each. It is answered `ANSWERS_PER_TURN` (eight) messages at a time, giving the runtime a
//! turn in between, so sends read meanwhile are relayed between two slices of the burst
//! instead of after all of it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use shared::errors::{AckError, ErrorCode};
use shared::events::BusEvent;
use shared::ids::UserId;
use shared::port::{Announce, StoreItem, StoreOutcome};
use shared::wire::{Message, MessageFailed, MessageSaved, MessageStatus, SendAck};
use tokio::sync::{mpsc, Notify};

use super::membership::Members;
use super::{ack_error, to_value, ChatState};
use crate::socketio::{Ack, Socket};

/// Messages of a stored batch answered (ack, `message_saved`) before the lane gives the
/// runtime a turn: its I/O is polled, so what arrived meanwhile is read and relayed before the
/// rest of the batch's answers. Eight is ~30 writes, a fraction of a millisecond.
const ANSWERS_PER_TURN: usize = 8;

/// One message waiting to be stored.
pub struct StoreJob {
    pub item: StoreItem,
    pub ack: Option<Ack>,
    /// The members whose devices were shown the relayed copy (they get `message_failed` if it
    /// cannot be stored); `None` when it was not relayed.
    pub relayed_to: Option<Members>,
    /// The sending socket (it gets the ack, not `message_failed`).
    pub socket_id: String,
    /// Released when the job is answered, whichever way.
    pub ticket: Ticket,
}

/// The sending side of the lanes.
pub struct StoreLanes {
    lanes: Vec<Lane>,
}

/// One lane's queue, and its batch while it gathers.
struct Lane {
    jobs: mpsc::UnboundedSender<StoreJob>,
    gathering: Arc<Gathering>,
}

impl StoreLanes {
    /// Start `count` lanes storing through `state`'s port. The lanes hold the state weakly and
    /// end when it is dropped (its senders with it).
    pub fn start(
        count: usize,
        batch_max: usize,
        interval: Duration,
        state: Weak<ChatState>,
        tasks: &tokio_util::task::TaskTracker,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Self {
        let lanes = (0..count.max(1))
            .map(|_| {
                let (jobs, rx) = mpsc::unbounded_channel();
                let gathering = Arc::new(Gathering::new());
                tasks.spawn(run_lane(
                    state.clone(),
                    rx,
                    gathering.clone(),
                    batch_max.max(1),
                    interval,
                    stop.clone(),
                ));
                Lane { jobs, gathering }
            })
            .collect();
        Self { lanes }
    }

    /// Queue `job` on its sender's lane. Never waits.
    pub fn push(&self, job: StoreJob) {
        let lane = &self.lanes[lane_of(job.item.sender, self.lanes.len())];
        match lane.jobs.send(job) {
            Ok(()) => lane.gathering.queued(),
            // Only while the relay is being torn down.
            Err(mpsc::error::SendError(job)) => ack_error(job.ack, Refused::Closing.error()),
        }
    }
}

/// One lane: store what is queued, a batch at a time and at most one batch per `interval`,
/// until the relay stops (the shutdown drain has waited for the admitted sends by then) or is
/// dropped.
async fn run_lane(
    state: Weak<ChatState>,
    mut jobs: mpsc::UnboundedReceiver<StoreJob>,
    gathering: Arc<Gathering>,
    batch_max: usize,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(batch_max);
    let mut last_start: Option<tokio::time::Instant> = None;
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            n = jobs.recv_many(&mut batch, batch_max) => n,
        };
        if received == 0 {
            return;
        }
        // The previous batch began less than an interval ago: the load is sustained, and what
        // arrives until the first send after the interval joins this batch.
        let due = last_start
            .map(|start| start + interval)
            .filter(|due| *due > tokio::time::Instant::now() && batch.len() < batch_max);
        if let Some(due) = due {
            if !gathering.until_due(due, due + interval, &stop).await {
                return;
            }
            while batch.len() < batch_max {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        last_start = Some(tokio::time::Instant::now());
        store_batch(&state, std::mem::take(&mut batch)).await;
    }
}

/// A lane's batch while it gathers the sends of a sustained load: it starts with the first
/// send queued once it is due, in the wake-up that send caused anyway. Starting it at its due
/// time took a timer of its own, which woke an otherwise idle relay once per batch (at
/// 200 msg/s, 1.56 voluntary context switches per message then, ~1.39 now). The sends queued
/// before it is due do not wake the lane either: each finds it not yet due.
struct Gathering {
    /// When the gathering batch is due, in nanoseconds since `base`; [`NOT_GATHERING`] while
    /// the lane is not waiting for one.
    due: AtomicU64,
    base: tokio::time::Instant,
    wake: Notify,
}

const NOT_GATHERING: u64 = u64::MAX;

impl Gathering {
    fn new() -> Self {
        Self {
            due: AtomicU64::new(NOT_GATHERING),
            base: tokio::time::Instant::now(),
            wake: Notify::new(),
        }
    }

    /// `at` on the lane's clock (`u64` nanoseconds last 584 years).
    fn nanos(&self, at: tokio::time::Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// A send was queued: wake the lane if its batch is due.
    fn queued(&self) {
        let due = self.due.load(Ordering::Acquire);
        if due != NOT_GATHERING
            && self.nanos(tokio::time::Instant::now()) >= due
            && self.due.swap(NOT_GATHERING, Ordering::AcqRel) != NOT_GATHERING
        {
            self.wake.notify_one();
        }
    }

    /// Wait for the first send queued at or after `due`, at the latest until `latest` (a send
    /// with nothing after it); `false` when the relay stops meanwhile.
    async fn until_due(
        &self,
        due: tokio::time::Instant,
        latest: tokio::time::Instant,
        stop: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let deadline = tokio::time::sleep_until(latest);
        tokio::pin!(deadline);
        let kept = loop {
            // Registered before the lane says it gathers, so no wake-up falls in between.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            self.due.store(self.nanos(due), Ordering::Release);
            tokio::select! {
                () = stop.cancelled() => break false,
                () = &mut deadline => break true,
                // Otherwise a permit left by a wake-up the last batch did not wait for.
                () = woken => if tokio::time::Instant::now() >= due {
                    break true;
                },
            }
        };
        self.due.store(NOT_GATHERING, Ordering::Release);
        kept
    }
}

/// Store one batch, retrying the whole batch while the port says it may (every send is
/// idempotent on `(sender, clientMsgId)`, so a retry never stores twice), then answer each job.
async fn store_batch(state: &ChatState, jobs: Vec<StoreJob>) {
    let limits = &state.limits;
    let (items, jobs): (Vec<StoreItem>, Vec<Waiting>) = jobs.into_iter().map(split).unzip();
    state.metrics.store_batch_size.observe(jobs.len() as f64);
    // Every message relayed, so each conversation's members known: this relay announces the
    // stored messages itself (`stored`), at once to its own devices, with no trip through Redis
    // and no need of it, and on the bus only while other relays are live (the API publishes
    // nothing for the batch).
    let announce = if jobs.iter().all(|job| job.relayed_to.is_some()) {
        Announce::Caller
    } else {
        Announce::Bus
    };
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(limits.store_backoff_ms);
    let mut attempt = 1;
    let outcomes = loop {
        match state.port.store(&items, announce).await {
            Ok(outcomes) if outcomes.len() == jobs.len() => break Ok(outcomes),
            Ok(outcomes) => {
                tracing::error!(
                    sent = jobs.len(),
                    answered = outcomes.len(),
                    "the API answered a store batch with the wrong number of outcomes"
                );
                break Err(AckError::new(
                    ErrorCode::InternalError,
                    "unexpected answer from the API",
                ));
            }
            Err(error) if error.retryable && attempt < limits.store_attempts => {
                tracing::warn!(attempt, code = %error.code, size = jobs.len(), "storing a batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) if error.retryable => {
                break Err(AckError::new(ErrorCode::StorageFailed, error.message));
            }
            Err(error) => break Err(error),
        }
    };
    state
        .metrics
        .store_latency
        .observe(started.elapsed().as_secs_f64());
    let outcomes: Vec<StoreOutcome> = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => vec![StoreOutcome::Error(error); jobs.len()],
    };
    let answers = items.iter().zip(jobs).zip(outcomes);
    // Corked: what a turn of answers sends to one socket (the sender's ack and its
    // `message_saved`; a device's several `message_saved`) leaves in one write.
    crate::engineio::corked(in_turns(answers, |((item, job), outcome)| match outcome {
        StoreOutcome::Message(message) => stored(state, item, job, message, announce),
        StoreOutcome::Error(error) => failed(state, item, job, error),
    }))
    .await;
}

/// Calls `answer` on each of `answers`, yielding to the runtime after every
/// [`ANSWERS_PER_TURN`]. Tokio (1.x) wakes a yielded task only once its ready tasks have run
/// and its I/O driver was polled; its docs do not promise that order, so the test checks only
/// that other tasks run between turns.
async fn in_turns<T>(answers: impl IntoIterator<Item = T>, mut answer: impl FnMut(T)) {
    for (i, one) in answers.into_iter().enumerate() {
        if i > 0 && i % ANSWERS_PER_TURN == 0 {
            tokio::task::yield_now().await;
        }
        answer(one);
    }
}

/// A job without its item: what answering it needs.
struct Waiting {
    ack: Option<Ack>,
    relayed_to: Option<Members>,
    socket_id: String,
    _ticket: Ticket,
}

fn split(job: StoreJob) -> (StoreItem, Waiting) {
    let StoreJob {
        item,
        ack,
        relayed_to,
        socket_id,
        ticket,
    } = job;
    let waiting = Waiting {
        ack,
        relayed_to,
        socket_id,
        _ticket: ticket,
    };
    (item, waiting)
}

/// Answer a stored send: its socket's ack, then, when this relay announces it, the stored
/// message: on the bus for the other relays (when there are any), and to the members' devices
/// here as a `message_stored` from the bus would be delivered (`message_saved`, …). A retried
/// item stored by an earlier attempt is announced too: that announcement may never have been
/// made.
fn stored(state: &ChatState, item: &StoreItem, job: Waiting, message: Message, announce: Announce) {
    if let Some(socket) = sending_socket(state, item, &job) {
        let receiver = item.message.recipient_id.or_else(|| {
            let members = job.relayed_to.as_deref()?;
            receiver(members, item.sender)
        });
        super::vocab::confirm_send(&socket, &message, receiver);
    }
    if let Some(ack) = job.ack {
        let _ = ack.send_json(&SendAck {
            success: true,
            saved: MessageSaved::from(&message),
            message_id: message.id,
            status: MessageStatus::Sent,
        });
    }
    if let (Announce::Caller, Some(members)) = (announce, &job.relayed_to) {
        // `publish` skips a relay alone too; asked here first, it also spares the copy.
        if !state.roster.alone() {
            state.publish(
                members,
                BusEvent::MessageStored {
                    message: message.clone(),
                },
            );
        }
        super::dispatch::deliver(state, members, BusEvent::MessageStored { message });
    }
}

fn failed(state: &ChatState, item: &StoreItem, job: Waiting, error: AckError) {
    let message = &item.message;
    tracing::warn!(code = %error.code, user_id = %item.sender, client_msg_id = %message.client_msg_id, "message not stored");
    if let (Some(members), Some(conversation)) = (&job.relayed_to, message.conversation_id) {
        let failed = MessageFailed {
            client_msg_id: message.client_msg_id.clone(),
            conversation_id: conversation,
            error: error.clone(),
        };
        state.emit_to(members, "message_failed", &failed, Some(&job.socket_id));
        state.publish(
            members,
            BusEvent::MessageFailed {
                sender_id: item.sender,
                client_msg_id: message.client_msg_id.clone(),
                conversation_id: conversation,
                error: error.clone(),
            },
        );
    }
    match sending_socket(state, item, &job) {
        Some(socket) => super::vocab::refuse_send(&socket, &to_value(message), job.ack, error),
        None => ack_error(job.ack, error),
    }
}

/// The socket that sent `item`, if still connected here.
fn sending_socket(state: &ChatState, item: &StoreItem, job: &Waiting) -> Option<Socket> {
    state.registry.socket(item.sender, &job.socket_id)
}

/// The other member of a two-member conversation.
pub fn receiver(members: &[UserId], sender: UserId) -> Option<UserId> {
    match members {
        [a, b] if *a == sender => Some(*b),
        [a, b] if *b == sender => Some(*a),
        _ => None,
    }
}

/// Admission of sends: how many each socket and the whole relay have waiting to be stored, and
/// whether the relay still accepts any (not while shutting down).
#[derive(Default)]
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
    /// Set at shutdown: new sends are refused (`service_unavailable`, retryable).
    closing: AtomicBool,
    /// Woken when the last unanswered send is answered.
    idle: Arc<Notify>,
}

/// One admitted send; dropping it (when the send is answered) releases its place.
pub struct Ticket {
    relay: Arc<AtomicUsize>,
    socket: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.socket.fetch_sub(1, Ordering::SeqCst);
        if self.relay.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// A socket's count of sends waiting to be stored, kept in its extensions.
#[derive(Clone, Default)]
pub struct SocketSends(Arc<AtomicUsize>);

/// Why a `send_message` was refused before it was relayed or queued for storage. Also the
/// `reason` label of `relay_sends_refused_total`, named after the setting to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The user's send budget (`limits.sends_per_sec`, `limits.sends_burst`).
    UserRate,
    /// The socket's sends waiting to be stored (`limits.sends_queued_per_socket`).
    SocketFull,
    /// The relay's sends waiting to be stored (`limits.sends_in_flight`).
    RelayFull,
    /// The relay is shutting down.
    Closing,
}

impl Refused {
    /// In declaration order, so `refused as usize` is its index.
    pub const ALL: [Self; 4] = [
        Self::UserRate,
        Self::SocketFull,
        Self::RelayFull,
        Self::Closing,
    ];

    /// Its `reason` label on `/metrics`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UserRate => "sends_per_sec",
            Self::SocketFull => "sends_queued_per_socket",
            Self::RelayFull => "sends_in_flight",
            Self::Closing => "shutting_down",
        }
    }

    /// What the sender's ack says.
    pub fn error(self) -> AckError {
        match self {
            Self::UserRate => AckError::new(ErrorCode::RateLimited, "too many messages, slow down"),
            Self::SocketFull => AckError::new(
                ErrorCode::RateLimited,
                "too many messages of this connection waiting to be stored",
            ),
            Self::RelayFull => AckError::new(
                ErrorCode::RateLimited,
                "too many messages on this relay waiting to be stored",
            ),
            Self::Closing => {
                AckError::new(ErrorCode::ServiceUnavailable, "the relay is shutting down")
            }
        }
    }
}

impl Admission {
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Admit one more send of the socket counted by `socket`.
    pub fn admit(
        &self,
        socket: &SocketSends,
        per_socket: usize,
        per_relay: usize,
    ) -> Result<Ticket, Refused> {
        if self.closing() {
            return Err(Refused::Closing);
        }
        if socket.0.fetch_add(1, Ordering::SeqCst) >= per_socket {
            socket.0.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::SocketFull);
        }
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= per_relay {
            socket.0.fetch_sub(1, Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::RelayFull);
        }
        Ok(Ticket {
            relay: self.in_flight.clone(),
            socket: socket.0.clone(),
            idle: self.idle.clone(),
        })
    }

    /// Sends admitted and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Refuse new sends, then wait (at most `timeout`) until every admitted send is answered.
    /// Returns how many were still unanswered at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.in_flight()
    }
}

/// The lane of `user`'s sends: always the same one, so their order is kept.
fn lane_of(user: UserId, lanes: usize) -> usize {
    (user.0.unsigned_abs() as usize) % lanes.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_refuses_new_sends_and_waits_for_the_admitted_ones() {
        let admission = Arc::new(Admission::default());
        let socket = SocketSends::default();
        let ticket = admission.admit(&socket, 10, 10).ok().unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(ticket);
        });
        assert_eq!(admission.drain(Duration::from_secs(5)).await, 0);
        assert!(matches!(
            admission.admit(&socket, 10, 10),
            Err(Refused::Closing)
        ));
    }

    #[tokio::test]
    async fn a_long_batch_answer_lets_other_tasks_run_between_its_turns() {
        // Arrange: a task ready to run (on this single-threaded runtime) before the answers
        // begin, recording how many had been given when it ran
        let given = Arc::new(AtomicUsize::new(0));
        let seen = tokio::spawn({
            let given = given.clone();
            async move { given.load(Ordering::SeqCst) }
        });

        // Act: answer four turns' worth
        in_turns(0..ANSWERS_PER_TURN * 4, |_| {
            given.fetch_add(1, Ordering::SeqCst);
        })
        .await;

        // Assert: the other task ran after the first turn, not after the whole batch
        assert_eq!(seen.await.unwrap(), ANSWERS_PER_TURN);
    }

    const DUE: Duration = Duration::from_millis(20);
    const LATEST: Duration = Duration::from_millis(40);

    /// Queues `count` sends on `gathering`, one every 5 ms, the first 5 ms from now.
    fn sends(gathering: &Arc<Gathering>, count: usize) {
        let gathering = gathering.clone();
        tokio::spawn(async move {
            for _ in 0..count {
                tokio::time::sleep(Duration::from_millis(5)).await;
                gathering.queued();
            }
        });
    }

    /// How long the lane gathered, and whether it goes on.
    async fn gather(
        gathering: &Gathering,
        stop: &tokio_util::sync::CancellationToken,
    ) -> (Duration, bool) {
        let start = tokio::time::Instant::now();
        let kept = gathering.until_due(start + DUE, start + LATEST, stop).await;
        (start.elapsed(), kept)
    }

    #[tokio::test(start_paused = true)]
    async fn a_gathering_batch_starts_with_the_first_send_once_it_is_due() {
        // Arrange: a send every 5 ms, the batch due in 20
        let gathering = Arc::new(Gathering::new());
        let stop = tokio_util::sync::CancellationToken::new();
        sends(&gathering, 9);

        // Act
        let (waited, kept) = gather(&gathering, &stop).await;

        // Assert: the sends at 5, 10 and 15 ms did not start it, the one at 20 did
        assert_eq!(waited, DUE);
        assert!(kept);
        assert_eq!(gathering.due.load(Ordering::SeqCst), NOT_GATHERING);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_with_nothing_after_it_is_stored_at_the_latest() {
        let gathering = Arc::new(Gathering::new());
        let stop = tokio_util::sync::CancellationToken::new();
        sends(&gathering, 1);

        let (waited, kept) = gather(&gathering, &stop).await;

        assert_eq!(waited, LATEST);
        assert!(kept);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_the_last_batch_did_not_wait_for_does_not_start_the_next_early() {
        // Arrange: a permit left behind, as by a send that found the last batch due while the
        // lane was already leaving for its deadline
        let gathering = Arc::new(Gathering::new());
        let stop = tokio_util::sync::CancellationToken::new();
        gathering.wake.notify_one();
        sends(&gathering, 9);

        let (waited, kept) = gather(&gathering, &stop).await;

        assert_eq!(waited, DUE);
        assert!(kept);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_relay_ends_the_gathering() {
        let gathering = Arc::new(Gathering::new());
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();

        let (_, kept) = gather(&gathering, &stop).await;

        assert!(!kept);
    }

    #[test]
    fn a_socket_and_the_relay_each_have_their_own_bound() {
        let admission = Admission::default();
        let (a, b) = (SocketSends::default(), SocketSends::default());
        let first = admission.admit(&a, 1, 2).ok().unwrap();
        assert!(matches!(
            admission.admit(&a, 1, 2),
            Err(Refused::SocketFull)
        ));
        let _second = admission.admit(&b, 1, 2).ok().unwrap();
        let c = SocketSends::default();
        assert!(matches!(admission.admit(&c, 1, 2), Err(Refused::RelayFull)));
        drop(first);
        assert!(admission.admit(&a, 1, 2).is_ok());
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "the ticket was dropped");
    }
}
