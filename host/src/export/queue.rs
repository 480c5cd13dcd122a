//! A bounded queue that drops its oldest items when full, so producers never wait.
//!
//! A sender can [`peek`](DropOldestQueue::peek) a batch and [`ack`](DropOldestQueue::ack) it once
//! delivered: items in flight stay in the queue and count against its capacity, so "dropped"
//! always means exactly the oldest items past capacity.

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

/// The queued items, each with its sequence number.
#[derive(Debug)]
struct Items<T> {
    queue: VecDeque<(u64, T)>,
    next: u64,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            next: 0,
        }
    }
}

impl<T> DropOldestQueue<T> {
    /// An empty queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(Items::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends `items`, dropping the oldest ones past capacity; returns how many were dropped.
    pub fn push(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut guard = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let Items { queue, next } = &mut *guard;
        let before = queue.len();
        queue.extend(items.into_iter().map(|item| {
            *next += 1;
            (*next, item)
        }));
        let added = queue.len() - before;
        let excess = queue.len().saturating_sub(self.capacity);
        queue.drain(..excess);
        drop(guard);
        self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        if added > 0 {
            self.ready.notify_one();
        }
        excess
    }

    /// Removes up to `max` of the oldest items.
    pub fn take(&self, max: usize) -> Vec<T> {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let n = max.min(items.queue.len());
        items.queue.drain(..n).map(|(_, item)| item).collect()
    }

    /// Copies up to `max` of the oldest items, leaving them queued, with the sequence number of
    /// the last one (to [`ack`](Self::ack) once they are delivered).
    pub fn peek(&self, max: usize) -> (Vec<T>, u64)
    where
        T: Clone,
    {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let batch: Vec<(u64, T)> = items.queue.iter().take(max).cloned().collect();
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        (batch.into_iter().map(|(_, item)| item).collect(), last)
    }

    /// Removes the items up to sequence number `last` that are still queued (a full queue may
    /// have dropped some of them meanwhile).
    pub fn ack(&self, last: u64) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        while items.queue.front().is_some_and(|(seq, _)| *seq <= last) {
            items.queue.pop_front();
        }
    }

    /// Waits until something has been pushed since the last wait returned.
    pub async fn pushed(&self) {
        self.ready.notified().await;
    }

    /// The number of queued items.
    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
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
    fn peeked_items_stay_until_acked_and_count_against_capacity() {
        let q = DropOldestQueue::new(3);
        q.push([1, 2, 3]);
        let (batch, last) = q.peek(2);
        assert_eq!(batch, [1, 2]);
        assert_eq!(q.len(), 3, "in flight, still queued");
        assert_eq!(q.push([4]), 1, "the oldest, in flight, is dropped");
        q.ack(last);
        assert_eq!(q.take(10), [3, 4], "acking skips what was already dropped");
        q.push([5, 6]);
        let (_, last) = q.peek(1);
        assert_eq!(q.push([7, 8, 9]), 2);
        q.ack(last);
        assert_eq!(
            q.take(10),
            [7, 8, 9],
            "an ack of dropped items removes nothing newer"
        );
        assert_eq!(q.dropped(), 3);
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
