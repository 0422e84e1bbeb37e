//! What the `chat` run saw, shared by the generator, the ack waiters and every device's reader:
//! per message its sender, its state and how many devices received it; counters; and HDR
//! histograms of the latencies, all measured from the message's **intended** send time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats::{histogram, record};

/// Where message `i` stands (`Record::state`).
pub const PLANNED: u8 = 0;
pub const SENT: u8 = 1;
pub const ACKED: u8 = 2;
/// Answered `{"success":false}` (the code is counted in `Record::failures`).
pub const FAILED: u8 = 3;
/// Its device's connection closed before the ack.
pub const CLOSED: u8 = 4;

/// The latency histograms: over the whole run, and over the last progress interval.
pub struct Histograms {
    pub receive: Histogram<u64>,
    /// The same deliveries from the actual emit: what the stack took, without the generator's
    /// lag (for reference only; `receive` is the measure).
    pub receive_from_emit: Histogram<u64>,
    pub ack: Histogram<u64>,
    /// How late the generator emitted (actual emit − intended time).
    pub lag: Histogram<u64>,
    pub receive_interval: Histogram<u64>,
    pub ack_interval: Histogram<u64>,
}

/// How a device is placed: device `d` belongs to user `d / devices`, in conversation
/// `d / devices / 2` (users are paired 0–1, 2–3, …).
pub struct Layout {
    pub devices_per_user: usize,
}

impl Layout {
    pub fn user(&self, device: usize) -> usize {
        device / self.devices_per_user
    }

    pub fn conversation(&self, device: usize) -> usize {
        self.user(device) / 2
    }

    /// Deliveries one send should make: the partner's devices and the sender's other ones.
    pub fn fanout(&self) -> u64 {
        2 * self.devices_per_user as u64 - 1
    }
}

pub struct Record {
    pub layout: Layout,
    /// When message 0 is due; message `i` is due at `start + i / rate`.
    pub start: Instant,
    rate: u64,
    /// The device that sent each message (`u32::MAX` before it is sent).
    sender: Vec<AtomicU32>,
    /// How late each message was emitted, in microseconds.
    lag_us: Vec<AtomicU32>,
    state: Vec<AtomicU8>,
    delivered: Vec<AtomicU8>,
    pub sent: AtomicU64,
    /// First `receive_message` of a (device, message) on a device that should get it.
    pub received: AtomicU64,
    /// Of `received`: the stored copy (with an `id`) rather than the relayed one.
    pub stored_copies: AtomicU64,
    /// A second `receive_message` of one (device, clientMsgId).
    pub duplicates: AtomicU64,
    /// A `receive_message` on the sending device or outside the conversation.
    pub misdirected: AtomicU64,
    /// A `receive_message` whose clientMsgId this run never sent.
    pub unknown: AtomicU64,
    pub acked: AtomicU64,
    /// Acks (stored) read by the end of the send window.
    pub acked_in_window: AtomicU64,
    pub failed: AtomicU64,
    pub closed: AtomicU64,
    /// Microseconds from `start` to the last ack read.
    pub last_ack_us: AtomicU64,
    pub histograms: Mutex<Histograms>,
    pub failures: Mutex<BTreeMap<String, u64>>,
}

impl Record {
    pub fn new(layout: Layout, start: Instant, rate: u64, planned: usize) -> Record {
        let fresh = |n: usize| (0..n).map(|_| AtomicU8::new(0)).collect::<Vec<_>>();
        Record {
            layout,
            start,
            rate,
            sender: (0..planned).map(|_| AtomicU32::new(u32::MAX)).collect(),
            lag_us: (0..planned).map(|_| AtomicU32::new(0)).collect(),
            state: fresh(planned),
            delivered: fresh(planned),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stored_copies: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            misdirected: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            histograms: Mutex::new(Histograms {
                receive: histogram(),
                receive_from_emit: histogram(),
                ack: histogram(),
                lag: histogram(),
                receive_interval: histogram(),
                ack_interval: histogram(),
            }),
            failures: Mutex::default(),
        }
    }

    pub fn planned(&self) -> usize {
        self.state.len()
    }

    /// When message `i` is due (the schedule, whatever the generator managed).
    pub fn intended(&self, i: usize) -> Instant {
        let nanos = i as u128 * 1_000_000_000 / u128::from(self.rate.max(1));
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The end of the send window (when the message after the last is due).
    pub fn window_end(&self) -> Instant {
        self.intended(self.planned())
    }

    pub fn histograms(&self) -> std::sync::MutexGuard<'_, Histograms> {
        self.histograms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Message `i` is about to be emitted by `device`, `lag` after it was due.
    pub fn sending(&self, i: usize, device: usize, lag: Duration) {
        let lag_us = u32::try_from(lag.as_micros()).unwrap_or(u32::MAX);
        self.lag_us[i].store(lag_us, Ordering::Relaxed);
        self.sender[i].store(device as u32, Ordering::Release);
        self.state[i].store(SENT, Ordering::Release);
        self.sent.fetch_add(1, Ordering::Relaxed);
        record(&mut self.histograms().lag, lag);
    }

    pub fn acked(&self, i: usize, at: Instant) {
        self.state[i].store(ACKED, Ordering::Release);
        let latency = at.saturating_duration_since(self.intended(i));
        {
            let mut h = self.histograms();
            record(&mut h.ack, latency);
            record(&mut h.ack_interval, latency);
        }
        if at <= self.window_end() {
            self.acked_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let since_start = at.saturating_duration_since(self.start).as_micros();
        self.last_ack_us.fetch_max(
            u64::try_from(since_start).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, i: usize, code: &str) {
        self.state[i].store(FAILED, Ordering::Release);
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code.to_owned())
            .or_default() += 1;
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self, i: usize) {
        self.state[i].store(CLOSED, Ordering::Release);
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// `device` read a `receive_message` for `client_msg_id` at `at` (`stored`: the stored
    /// copy, with an id). `seen` is the device's own set of messages already received.
    pub fn receive(
        &self,
        device: usize,
        client_msg_id: &str,
        stored: bool,
        at: Instant,
        seen: &mut std::collections::HashSet<usize>,
    ) {
        let Some(i) = client_msg_id
            .strip_prefix('c')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| i < self.planned())
        else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !seen.insert(i) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sender = self.sender[i].load(Ordering::Acquire);
        if sender == u32::MAX
            || sender as usize == device
            || self.layout.conversation(sender as usize) != self.layout.conversation(device)
        {
            self.misdirected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered[i].fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        if stored {
            self.stored_copies.fetch_add(1, Ordering::Relaxed);
        }
        let latency = at.saturating_duration_since(self.intended(i));
        let lag = Duration::from_micros(u64::from(self.lag_us[i].load(Ordering::Relaxed)));
        let mut h = self.histograms();
        record(&mut h.receive, latency);
        record(&mut h.receive_interval, latency);
        record(&mut h.receive_from_emit, latency.saturating_sub(lag));
    }

    /// Sends answered so far (acked, failed or closed).
    pub fn answered(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.closed.load(Ordering::Relaxed)
    }

    /// Deliveries the sends so far should make (a failed send may not have been relayed, so
    /// it is not counted; deliveries it did make are in `received` all the same).
    pub fn expected_so_far(&self) -> u64 {
        let sends = self
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.failed.load(Ordering::Relaxed));
        sends * self.layout.fanout()
    }

    /// At the end: `(expected, received, missing)` over the sends that did not fail, counted
    /// per message; and the deliveries made for sends that failed.
    pub fn deliveries(&self) -> (u64, u64, u64, u64) {
        let fanout = self.layout.fanout();
        let (mut expected, mut received, mut missing, mut of_failed) = (0, 0, 0, 0);
        for (state, delivered) in self.state.iter().zip(&self.delivered) {
            let got = u64::from(delivered.load(Ordering::Acquire));
            match state.load(Ordering::Acquire) {
                PLANNED => {}
                FAILED => of_failed += got,
                _ => {
                    expected += fanout;
                    received += got.min(fanout);
                    missing += fanout.saturating_sub(got);
                }
            }
        }
        (expected, received, missing, of_failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_checked_against_the_sender_and_the_conversation() {
        // 4 users × 2 devices: devices 0–3 are conversation 0, 4–7 conversation 1.
        let record = Record::new(
            Layout {
                devices_per_user: 2,
            },
            Instant::now(),
            100,
            2,
        );
        record.sending(0, 1, Duration::ZERO);
        let mut seen = std::collections::HashSet::new();
        let now = Instant::now();
        record.receive(0, "c0", false, now, &mut seen);
        record.receive(0, "c0", false, now, &mut seen);
        record.receive(1, "c0", false, now, &mut std::collections::HashSet::new());
        record.receive(5, "c0", false, now, &mut std::collections::HashSet::new());
        record.receive(2, "x9", false, now, &mut std::collections::HashSet::new());
        assert_eq!(record.received.load(Ordering::Relaxed), 1);
        assert_eq!(record.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(record.misdirected.load(Ordering::Relaxed), 2);
        assert_eq!(record.unknown.load(Ordering::Relaxed), 1);
        assert_eq!(record.deliveries(), (3, 1, 2, 0));
    }

    #[test]
    fn the_schedule_is_the_rate() {
        let start = Instant::now();
        let record = Record::new(
            Layout {
                devices_per_user: 1,
            },
            start,
            1000,
            2000,
        );
        assert_eq!(record.intended(500) - start, Duration::from_millis(500));
        assert_eq!(record.window_end() - start, Duration::from_secs(2));
    }
}
