//! A bounded FIFO queue between tasks that costs nothing while it is empty.
//!
//! tokio's `mpsc` channels allocate their first block of 32 slots when created: for a session's
//! outbox (40-byte packets) and a socket's event queue (88-byte events) that is 1.3 + 2.8 KiB
//! per connection, held by every idle connection. Here the items live in a `VecDeque` that is
//! allocated when the first item arrives and given back when the queue is drained, so an idle
//! connection's queues are a few words each.
//!
//! Same use as a bounded `mpsc` channel: any number of [`Sender`]s (cloned), one [`Receiver`];
//! [`Sender::send`] waits for room, [`Sender::try_send`] does not; [`Receiver::recv`] returns
//! `None` once every sender is gone and the queue is empty; senders fail once the receiver is
//! gone. The one receiver waits on an [`AtomicWaker`]: a `select!` loop that polls
//! [`Receiver::recv`] on every turn (the WebSocket writer) registers its waker with an atomic
//! exchange, where a `Notify` put a waiter in its locked list and took it out again each time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::Semaphore;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    /// One permit per free place.
    room: Semaphore,
    /// Wakes the receiver when an item arrives or the last sender leaves.
    ready: AtomicWaker,
    senders: AtomicUsize,
    capacity: usize,
}

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        // Each use is one queue operation: a poisoned queue is still consistent.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue holding at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        room: Semaphore::new(capacity),
        ready: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queue `item` if there is room; `Full` or `Closed` (the receiver is gone) otherwise.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.shared.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.push(item);
                Ok(())
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(TrySendError::Full(item)),
            Err(tokio::sync::TryAcquireError::Closed) => Err(TrySendError::Closed(item)),
        }
    }

    /// Queue `item` once there is room; the item back if the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        match self.shared.room.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.push(item);
                Ok(())
            }
            Err(_) => Err(item),
        }
    }

    fn push(&self, item: T) {
        self.shared.items().push_back(item);
        self.shared.ready.wake();
    }

    /// Whether nothing is queued, in one atomic load. A place is taken before its item is
    /// pushed and given back after it was taken out, so while an item is in the queue this is
    /// false (it may also be false a moment longer, on either side).
    pub fn is_empty(&self) -> bool {
        self.shared.room.available_permits() == self.shared.capacity
    }

    /// How many items are queued (or being pushed or taken out), in one atomic load.
    pub fn queued(&self) -> usize {
        self.shared.capacity - self.shared.room.available_permits()
    }

    /// Wakes the receiver as an arriving item would, without queuing one: for a sender that
    /// left it work by another way.
    pub fn wake_receiver(&self) {
        self.shared.ready.wake();
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.wake();
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, or `None` once the queue is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll: the next item, `None` once the queue is empty and every
    /// sender is gone, or `Pending` with the waker of `cx` registered for the next item.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Registered before looking, so an item pushed between the look and the wait wakes us.
        self.shared.ready.register(cx.waker());
        match self.try_recv() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut items = self.shared.items();
        match items.pop_front() {
            Some(item) => {
                if items.is_empty() {
                    // Drained: give the buffer back (an idle queue holds no allocation).
                    *items = VecDeque::new();
                }
                drop(items);
                self.shared.room.add_permits(1);
                Ok(item)
            }
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                Err(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_come_out_in_order_and_the_queue_is_bounded() {
        let (tx, mut rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn is_empty_says_whether_an_item_is_queued() {
        let (tx, mut rx) = bounded(2);
        assert!(tx.is_empty());
        tx.try_send(1).unwrap();
        assert!(!tx.is_empty());
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(tx.is_empty());
    }

    #[tokio::test]
    async fn a_drained_queue_holds_no_buffer() {
        let (tx, mut rx) = bounded(64);
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.shared.items().capacity() >= 10);
        while rx.try_recv().is_ok() {}
        assert_eq!(tx.shared.items().capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_when_the_receiver_takes_an_item() {
        let (tx, mut rx) = bounded(1);
        tx.send(1).await.unwrap();
        let sender = tokio::spawn(async move { tx.send(2).await });
        assert_eq!(rx.recv().await, Some(1));
        sender.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
        // The only sender is gone: the queue ends once drained.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn senders_fail_once_the_receiver_is_gone() {
        let (tx, rx) = bounded(4);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
        assert_eq!(tx.send(2).await, Err(2));
    }

    #[tokio::test]
    async fn the_receiver_ends_when_the_last_clone_of_the_sender_drops() {
        let (tx, mut rx) = bounded::<u8>(4);
        let other = tx.clone();
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let waiter = tokio::spawn(async move { rx.recv().await });
        drop(other);
        assert_eq!(waiter.await.unwrap(), None);
    }
}
