//! A WebSocket connection's bytes to write, shared by the connection's task and the session's
//! senders, so that a sender whose packet is next on the wire writes it itself.
//!
//! Before, every packet went through the session's outbox: the sender queued it and woke the
//! connection's task, which encoded and wrote it on its next turn. For a relay most packets are
//! written to sockets other than the one being read (a message read from one device goes to
//! three others), so each cost a wake-up and a turn of another connection's task: the
//! scheduler, its `select!` over the socket, the outbox, the close and the heartbeat. Now,
//! while the connection's task serves the socket ([`Wire::open`] to [`Wire::close`]), a sender
//! finding nothing queued before its packet appends the frames to [`State::out`] and writes
//! them at once (`try_write`, never waiting); what the socket does not take stays in `out`, and
//! the connection's task, woken, writes it once the socket is writable.
//!
//! Order: every byte reaches the socket through `out`, under the lock. A sender appends only
//! when the outbox is empty, and the connection's task moves packets from the outbox to `out`
//! under the lock, so nothing overtakes a queued packet. A sender that finds the lock held (the
//! task is writing), the connection not served yet, or `out` past the write batch (the client
//! is not reading) queues in the outbox as before, whose bound still closes a slow consumer.
//!
//! A [`Cork`] defers the writes of the current thread until it is dropped, so several packets
//! for one socket made in one go (the sender's ack and its `message_saved`; what a handler
//! answers) leave in one write.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll};

use tokio::net::tcp::OwnedWriteHalf;

use super::packet::{Frame, Outgoing};
use super::ws_frame::{encode, OP_BINARY, OP_TEXT};
use crate::queue;

pub(crate) struct Wire {
    state: Mutex<State>,
}

pub(crate) struct State {
    /// Encoded frames not written yet; given back once written.
    pub out: Vec<u8>,
    /// How much of `out` was written.
    pub written: usize,
    /// `out` takes no more packets past this many bytes (one write).
    batch: usize,
    /// The socket's writing half when it is plain TCP (anything else only the connection's
    /// task writes), until the connection is dropped.
    tcp: Option<OwnedWriteHalf>,
    /// While the connection's task serves the socket: the outbox's sender, to wake the task
    /// when a sender leaves bytes it could not write.
    open: Option<queue::Sender<Outgoing>>,
}

/// A thread's [`Cork`]: whether one is in place, and the wires whose writes wait for it.
struct Corks {
    on: bool,
    /// Kept from one cork to the next (up to [`CORKED_KEEP`]): a cork that allocated its list
    /// cost ~100 instructions of a handler turn's few thousand.
    wires: Vec<Arc<Wire>>,
}

/// Most wires a thread's list keeps room for between corks.
const CORKED_KEEP: usize = 1024;

thread_local! {
    static CORKED: RefCell<Corks> = const {
        RefCell::new(Corks {
            on: false,
            wires: Vec::new(),
        })
    };
}

impl Wire {
    /// Bytes to write to `tcp` (`None`: the connection's task writes them to its stream).
    pub fn new(batch: usize, tcp: Option<OwnedWriteHalf>) -> Self {
        Self {
            state: Mutex::new(State {
                out: Vec::new(),
                written: 0,
                batch,
                tcp,
                open: None,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Each use leaves `out` and `written` consistent: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Senders may write: the connection's task serves the socket from now on; `wake` wakes it.
    pub fn open(&self, wake: queue::Sender<Outgoing>) {
        self.lock().open = Some(wake);
    }

    /// Senders queue in the outbox again; the connection's task writes what is left.
    pub fn close(&self) {
        self.lock().open = None;
    }

    /// Takes `packet` if nothing is queued before it (`outbox` is empty) and the connection is
    /// served, and writes it unless a [`Cork`] defers the write; false if it must be queued.
    pub fn send(self: &Arc<Self>, packet: &Outgoing, outbox: &queue::Sender<Outgoing>) -> bool {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // The task is writing or moving the outbox: queue behind it.
            Err(TryLockError::WouldBlock) => return false,
        };
        if state.open.is_none() || !outbox.is_empty() || !state.has_room() {
            return false;
        }
        let idle = state.out.is_empty();
        state.push(packet);
        // Bytes already waiting are written by whoever left them (the task once the socket is
        // writable, or the cork that deferred them): these go with them.
        if idle {
            let deferred = CORKED.with_borrow_mut(|corked| {
                if corked.on {
                    corked.wires.push(self.clone());
                }
                corked.on
            });
            if !deferred {
                state.write_or_wake();
            }
        }
        true
    }
}

impl State {
    /// Whether `out` takes more packets.
    pub fn has_room(&self) -> bool {
        self.out.len() < self.batch
    }

    /// Encodes one packet's frames at the end of `out`, back to back.
    pub fn push(&mut self, packet: &Outgoing) {
        for frame in packet.frames() {
            self.push_frame(frame);
        }
    }

    /// Encodes one frame at the end of `out`.
    pub fn push_frame(&mut self, frame: &Frame) {
        match frame {
            Frame::Text(text) => encode(OP_TEXT, text.as_bytes(), &mut self.out),
            Frame::Binary(data) => encode(OP_BINARY, data, &mut self.out),
        }
    }

    /// Writes what the socket takes now, without waiting; if anything is left (the socket is
    /// full, or failed: the task's own write reports the error), wakes the connection's task.
    fn write_or_wake(&mut self) {
        if self.open.is_none() {
            return;
        }
        if !self.try_write().unwrap_or(false) {
            if let Some(wake) = &self.open {
                wake.wake_receiver();
            }
        }
    }

    /// Writes `out` to the TCP socket until it is written (true: its buffer given back) or the
    /// socket takes no more (false; always false without a TCP socket).
    pub fn try_write(&mut self) -> io::Result<bool> {
        let Some(tcp) = &self.tcp else {
            return Ok(false);
        };
        while self.written < self.out.len() {
            match tcp.try_write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        self.written_all();
        Ok(true)
    }

    /// Ready when the TCP socket may take more (the waker of `cx` registered until then).
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.tcp {
            Some(tcp) => tcp.as_ref().poll_write_ready(cx),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Lets go of the TCP socket's writing half, which ends the sending side (FIN).
    pub fn release(&mut self) {
        self.tcp = None;
    }

    /// `out` was written whole: its buffer is given back (an idle connection holds none).
    pub fn written_all(&mut self) {
        self.out = Vec::new();
        self.written = 0;
    }
}

/// Defers the writes senders on this thread would make at once until it is dropped, so that the
/// packets they make for one socket meanwhile leave in one write. Not `Send`: it cannot be held
/// across an `.await` (the task may resume on another thread). A cork made while another is in
/// place leaves the writes to the outer one.
pub(crate) struct Cork {
    outermost: bool,
    _thread: PhantomData<*const ()>,
}

pub(crate) fn cork() -> Cork {
    let outermost = CORKED.with_borrow_mut(|corked| !std::mem::replace(&mut corked.on, true));
    Cork {
        outermost,
        _thread: PhantomData,
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let mut wires = CORKED.with_borrow_mut(|corked| {
            corked.on = false;
            std::mem::take(&mut corked.wires)
        });
        for wire in wires.drain(..) {
            wire.lock().write_or_wake();
        }
        if wires.capacity() <= CORKED_KEEP {
            CORKED.with_borrow_mut(|corked| corked.wires = wires);
        }
    }
}

pin_project_lite::pin_project! {
    /// `future`, polled with a [`Cork`] in place each time: what it sends in one turn leaves in
    /// one write per socket, at the end of the turn. Adds nothing to the future's size (an
    /// `async` wrapper would keep the future twice: as its argument and pinned).
    pub(crate) struct Corked<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Corked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _cork = cork();
        self.project().future.poll(cx)
    }
}

pub(crate) fn corked<F: Future>(future: F) -> Corked<F> {
    Corked { future }
}
