//! A bounded queue that drops its oldest items when full, so producers never wait.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Bounded FIFO shared by producers (intake, collection) and one sender task.
#[derive(Debug)]
pub struct DropOldestQueue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
}

impl<T> DropOldestQueue<T> {
    /// An empty queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Appends `items`, dropping the oldest ones past capacity; returns how many were dropped.
    pub fn push(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut queue = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let before = queue.len();
        queue.extend(items);
        let added = queue.len() - before;
        let excess = queue.len().saturating_sub(self.capacity);
        queue.drain(..excess);
        drop(queue);
        if added > 0 {
            self.ready.notify_one();
        }
        excess
    }

    /// Removes up to `max` of the oldest items.
    pub fn take(&self, max: usize) -> Vec<T> {
        let mut queue = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let n = max.min(queue.len());
        queue.drain(..n).collect()
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
            .len()
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

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let q = DropOldestQueue::new(3);
        q.push([1]);
        tokio::time::timeout(std::time::Duration::from_secs(5), q.pushed())
            .await
            .expect("permit kept");
    }
}
