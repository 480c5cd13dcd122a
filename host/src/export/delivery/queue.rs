//! A bounded queue that drops its oldest items when full, so producers never wait.
//!
//! The sender [`peek`](DropOldestQueue::peek)s a batch, which pins it: pinned items are being
//! sent, so a full queue drops the oldest items *not* pinned, and nothing is ever both dropped
//! and delivered. Once the batch is delivered (or refused) the sender
//! [`ack`](DropOldestQueue::ack)s it; when an export fails before any of it was delivered, the
//! sender [`release`](DropOldestQueue::release)s it so that it can be dropped like the rest.
//! Pinned items count against the capacity; only a pinned batch larger than the capacity
//! makes the queue hold more.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Bounded FIFO shared by producers (intake, collection) and one sender task.
#[derive(Debug)]
pub struct DropOldestQueue<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
}

/// The queued items, each with its sequence number, and how many at the front are pinned.
#[derive(Debug)]
struct Items<T> {
    queue: VecDeque<(u64, T)>,
    next: u64,
    pinned: usize,
}

impl<T> DropOldestQueue<T> {
    /// An empty queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(Items {
                queue: VecDeque::new(),
                next: 0,
                pinned: 0,
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Items<T>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `items`, dropping the oldest unpinned ones past capacity; returns how many were dropped.
    pub fn push(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut guard = self.lock();
        let Items {
            queue,
            next,
            pinned,
        } = &mut *guard;
        let before = queue.len();
        queue.extend(items.into_iter().map(|item| {
            *next += 1;
            (*next, item)
        }));
        let added = queue.len() - before;
        let unpinned = queue.len() - *pinned;
        let excess = queue.len().saturating_sub(self.capacity).min(unpinned);
        queue.drain(*pinned..*pinned + excess);
        drop(guard);
        self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        if added > 0 {
            self.ready.notify_one();
        }
        excess
    }

    /// Removes up to `max` of the oldest unpinned items (the queue must have none pinned).
    pub fn take(&self, max: usize) -> Vec<T> {
        let mut items = self.lock();
        let start = items.pinned;
        let n = max.min(items.queue.len() - start);
        items
            .queue
            .drain(start..start + n)
            .map(|(_, item)| item)
            .collect()
    }

    /// Copies up to `max` of the oldest items and pins them, with the sequence number of the
    /// last one (to [`ack`](Self::ack) once they are delivered); nothing when a batch is
    /// already pinned.
    pub fn peek(&self, max: usize) -> (Vec<T>, u64)
    where
        T: Clone,
    {
        let mut items = self.lock();
        if items.pinned > 0 {
            return (Vec::new(), 0);
        }
        let batch: Vec<(u64, T)> = items.queue.iter().take(max).cloned().collect();
        items.pinned = batch.len();
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        (batch.into_iter().map(|(_, item)| item).collect(), last)
    }

    /// Removes the pinned items up to sequence number `last`.
    pub fn ack(&self, last: u64) {
        let mut items = self.lock();
        while items.queue.front().is_some_and(|(seq, _)| *seq <= last) {
            items.queue.pop_front();
        }
        items.pinned = 0;
    }

    /// Unpins the pinned batch, leaving it queued (and droppable) as it was.
    pub fn release(&self) {
        let mut items = self.lock();
        items.pinned = 0;
        let excess = items.queue.len().saturating_sub(self.capacity);
        items.queue.drain(..excess);
        drop(items);
        self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
    }

    /// Waits until something has been pushed since the last wait returned.
    pub async fn pushed(&self) {
        self.ready.notified().await;
    }

    /// The number of queued items, pinned ones included.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// How many items were dropped in all.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_exactly_the_oldest_items_past_capacity() {
        let q = DropOldestQueue::new(3);
        assert_eq!(q.push([1, 2]), 0);
        assert_eq!(q.push([3, 4, 5]), 2);
        assert_eq!(q.take(10), vec![3, 4, 5]);
        assert!(q.is_empty());
        assert_eq!(q.push(0..10), 7);
        assert_eq!(q.take(2), vec![7, 8]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn pinned_items_are_never_dropped_and_never_counted_twice() {
        let q = DropOldestQueue::new(3);
        q.push([1, 2, 3]);
        let (batch, last) = q.peek(2);
        assert_eq!(batch, [1, 2]);
        assert_eq!(
            q.peek(2).0,
            Vec::<i32>::new(),
            "one batch in flight at a time"
        );
        assert_eq!(q.push([4, 5]), 2, "3 and 4 are the oldest unpinned items");
        assert_eq!(q.len(), 3);
        q.ack(last);
        assert_eq!(q.take(10), [5]);
        assert_eq!(q.dropped(), 2);
        // A pinned batch larger than the capacity stays whole; everything else goes.
        q.push([6, 7, 8]);
        let (batch, last) = q.peek(3);
        assert_eq!(batch, [6, 7, 8]);
        assert_eq!(q.push([9]), 1);
        q.ack(last);
        assert!(q.is_empty());
    }

    #[test]
    fn a_released_batch_can_be_dropped_again() {
        let q = DropOldestQueue::new(2);
        q.push([1, 2]);
        let (batch, _) = q.peek(2);
        assert_eq!(batch, [1, 2]);
        assert_eq!(q.push([3]), 1, "the new item is the only unpinned one");
        q.release();
        assert_eq!(q.push([4]), 1, "released, the oldest goes first again");
        assert_eq!(q.peek(5).0, [2, 4]);
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let q = DropOldestQueue::new(3);
        q.push([1]);
        tokio::time::timeout(std::time::Duration::from_secs(5), q.pushed())
            .await
            .expect("permit kept");
    }
}
