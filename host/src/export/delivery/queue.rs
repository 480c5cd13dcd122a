//! The queue between producers (intake, collection) and a sender with batches in flight.
//!
//! Items waiting and items in flight both count against the capacity, in items and in bytes.
//! When it is full, [`OnFull::DropOldest`] drops the oldest *waiting* items (never one in flight,
//! so nothing is both dropped and delivered); [`OnFull::Reject`] drops nothing: producers ask
//! [`Queue::room`] first and refuse the data upstream. Every item is accounted for, under one
//! lock: `accepted = delivered + refused + dropped + queued` holds in every [`Counts`].
//!
//! A durable queue also writes every push to a [`Journal`] before it counts as accepted, and
//! starts with what its journal still held. Its capacity is a size on disk: what its memory
//! cannot hold stays in the journal only ("spilled", kept in memory as where it is) and is
//! read back, in order, as the sender drains the memory; past the disk size the `on_full` rule
//! applies (the oldest spilled entry is dropped, or the push refused).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use super::journal::{At, Fsync, Journal, Replayed, Segment};
pub use crate::config::OnFull;

/// Items a durable queue can write to its journal and read back.
pub trait Durable: Sized {
    /// Appends `items` as one journal entry.
    fn write(items: &[Self], out: &mut Vec<u8>);

    /// The items of an entry [`Durable::write`] wrote; `None` if it is not one.
    fn read(entry: Bytes) -> Option<Vec<Self>>;
}

/// A push a durable queue could not write to its journal: nothing of it was accepted.
#[derive(Debug, thiserror::Error)]
#[error("the disk queue cannot be written: {0}")]
pub struct JournalError(#[from] std::io::Error);

/// A journal, how items become its entries and back, and the most bytes it may take.
struct Journaled<T> {
    journal: Journal,
    write: fn(&[T], &mut Vec<u8>),
    read: fn(Bytes) -> Option<Vec<T>>,
    max_bytes: u64,
}

impl<T> std::fmt::Debug for Journaled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.journal.fmt(f)
    }
}

/// No segment: an item only in memory.
const MEMORY: Segment = 0;

/// What an item weighs against the queue's byte capacity.
pub trait Weight {
    /// Its size in bytes (0 for items counted only by number).
    fn bytes(&self) -> usize;

    /// The tenant whose item it is, for items a queue counts per tenant.
    fn tenant(&self) -> Option<&Arc<str>> {
        None
    }
}

/// Where every item that entered a queue is now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Items pushed.
    pub accepted: u64,
    /// Items in exports the backend acknowledged (or, over UDP, sent).
    pub delivered: u64,
    /// Items in requests the backend refused, or that could not be encoded.
    pub refused: u64,
    /// Items a full queue dropped.
    pub dropped: u64,
    /// Items waiting or in flight.
    pub queued: u64,
}

/// A bounded queue of `T` shared by producers and one sender.
#[derive(Debug)]
pub struct Queue<T> {
    state: Mutex<State<T>>,
    max_items: usize,
    max_bytes: usize,
    on_full: OnFull,
    ready: Notify,
    journal: Option<Journaled<T>>,
}

#[derive(Debug)]
struct State<T> {
    /// Waiting items, each with the journal segment that holds it.
    waiting: VecDeque<(T, Segment)>,
    waiting_bytes: usize,
    flying: usize,
    flying_bytes: usize,
    counts: Counts,
    /// Items waiting or in flight, by tenant.
    tenants: HashMap<Arc<str>, usize>,
    /// Entries held only in the journal, oldest first: where each is, its items and its bytes.
    spilled: VecDeque<(At, usize, u64)>,
    spilled_items: usize,
    spilled_bytes: u64,
}

impl<T: Weight> State<T> {
    /// Counts `item` in (`true`) or out of its tenant's share.
    fn share(&mut self, item: &T, entering: bool) {
        let Some(tenant) = item.tenant() else { return };
        match entering {
            true => *self.tenants.entry(tenant.clone()).or_default() += 1,
            false => {
                if let Some(n) = self.tenants.get_mut(tenant) {
                    *n -= 1;
                    if *n == 0 {
                        self.tenants.remove(tenant);
                    }
                }
            }
        }
    }
}

/// Items taken to be sent: end them with [`Queue::finish`].
#[derive(Debug)]
pub struct Taken<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// How many were taken.
    count: usize,
    /// What they weighed.
    bytes: usize,
    /// The journal segment of each.
    segments: Vec<Segment>,
    /// How many of them each tenant had.
    tenants: Vec<(Arc<str>, usize)>,
}

impl<T> Taken<T> {
    /// How many items were taken.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl<T: Weight> Queue<T> {
    /// An empty queue holding at most `max_items` items (at least one) and `max_bytes` bytes.
    pub fn new(max_items: usize, max_bytes: usize, on_full: OnFull) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                waiting_bytes: 0,
                flying: 0,
                flying_bytes: 0,
                counts: Counts::default(),
                tenants: HashMap::new(),
                spilled: VecDeque::new(),
                spilled_items: 0,
                spilled_bytes: 0,
            }),
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            on_full,
            ready: Notify::new(),
            journal: None,
        }
    }

    /// A queue as [`Queue::new`] makes, whose pushes are written to a journal in `dir` first,
    /// holding at most `max_disk_bytes` there, and starting with what the journal still holds
    /// (counted as accepted: as much as memory holds read back, the rest left spilled).
    pub fn durable(
        (max_items, max_bytes): (usize, usize),
        on_full: OnFull,
        dir: &Path,
        (fsync, max_disk_bytes): (Fsync, u64),
    ) -> std::io::Result<(Self, Replayed)>
    where
        T: Durable,
    {
        let (journal, entries, mut replayed) = Journal::open(dir, fsync, |entry| {
            T::read(Bytes::copy_from_slice(entry)).map_or(0, |items| items.len() as u64)
        })?;
        let mut queue = Self::new(max_items, max_bytes, on_full);
        {
            let s = queue
                .state
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            for (at, entry) in entries {
                let Some(items) = T::read(Bytes::from(entry)) else {
                    continue;
                };
                replayed.items += items.len() as u64;
                s.counts.accepted += items.len() as u64;
                if s.spilled.is_empty() && s.waiting.len() + items.len() <= queue.max_items {
                    for item in items {
                        s.waiting_bytes += item.bytes();
                        s.waiting.push_back((item, at.segment));
                    }
                } else {
                    s.spilled_items += items.len();
                    s.spilled_bytes += at.bytes();
                    s.spilled.push_back((at, items.len(), at.bytes()));
                }
            }
        }
        queue.journal = Some(Journaled {
            journal,
            write: T::write,
            read: T::read,
            max_bytes: max_disk_bytes,
        });
        Ok((queue, replayed))
    }

    /// Writes `items` to the journal, if the queue has one: where they are.
    fn journal(&self, items: &[T]) -> Result<Option<At>, JournalError> {
        let Some(j) = &self.journal else {
            return Ok(None);
        };
        let mut entry = Vec::new();
        (j.write)(items, &mut entry);
        Ok(Some(j.journal.append(&entry, items.len() as u64)?))
    }

    /// Reads spilled entries back into memory, oldest first, while memory holds them.
    fn refill(&self, s: &mut State<T>) {
        let Some(j) = &self.journal else { return };
        while let Some(&(at, n, bytes)) = s.spilled.front() {
            let held = s.waiting.len() + s.flying;
            if held > 0 && held + n > self.max_items {
                return;
            }
            s.spilled.pop_front();
            s.spilled_items -= n;
            s.spilled_bytes -= bytes;
            let items = j
                .journal
                .read(at)
                .ok()
                .and_then(|entry| (j.read)(Bytes::from(entry)));
            match items {
                Some(items) => {
                    for item in items {
                        s.waiting_bytes += item.bytes();
                        s.share(&item, true);
                        s.waiting.push_back((item, at.segment));
                    }
                }
                None => {
                    tracing::warn!(
                        "disk queue: an entry of {n} records could not be read back; they are dropped"
                    );
                    s.counts.dropped += n as u64;
                    j.journal.resolve(std::iter::repeat_n(at.segment, n));
                }
            }
        }
    }

    /// Drops the oldest spilled entries (never the newest) while what is spilled takes more
    /// than the journal's size; how many items.
    fn shed(&self, s: &mut State<T>) -> usize {
        let Some(j) = &self.journal else { return 0 };
        let mut dropped = 0;
        while s.spilled_bytes > j.max_bytes && s.spilled.len() > 1 {
            let Some((at, n, bytes)) = s.spilled.pop_front() else {
                break;
            };
            s.spilled_items -= n;
            s.spilled_bytes -= bytes;
            dropped += n;
            j.journal.resolve(std::iter::repeat_n(at.segment, n));
        }
        s.counts.dropped += dropped as u64;
        dropped
    }

    /// Resolves items of `segments` in the journal, if the queue has one.
    fn resolve(&self, segments: impl IntoIterator<Item = Segment>) {
        if let Some(j) = &self.journal {
            j.journal
                .resolve(segments.into_iter().filter(|s| *s != MEMORY));
        }
    }

    /// Bytes the queue's journal takes on disk (0 for a queue in memory).
    pub fn disk_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.journal.disk_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the queue does when full.
    pub fn on_full(&self) -> OnFull {
        self.on_full
    }

    /// Whether `items` more items of `tenant` fit within `share` (a fraction) of the queue.
    pub fn within_share(&self, tenant: &str, items: usize, share: f64) -> bool {
        let held = self.lock().tenants.get(tenant).copied().unwrap_or(0);
        ((held + items) as f64) <= (self.max_items as f64 * share).max(1.0)
    }

    /// Whether `items` more items of `bytes` bytes fit now: in a durable queue, whether what
    /// is spilled to its journal leaves room for them.
    pub fn room(&self, items: usize, bytes: usize) -> bool {
        let s = self.lock();
        if let Some(j) = &self.journal {
            return s.spilled_bytes + bytes as u64 <= j.max_bytes;
        }
        s.waiting.len() + s.flying + items <= self.max_items
            && s.waiting_bytes + s.flying_bytes + bytes <= self.max_bytes
    }

    /// Appends `items` (written to the journal first, for a durable queue); past the
    /// capacity, with [`OnFull::DropOldest`], drops the oldest waiting ones. Returns how many
    /// were dropped.
    pub fn push(&self, items: Vec<T>) -> Result<usize, JournalError> {
        self.push_as(items, self.on_full)
    }

    /// Appends `items` as [`Queue::push`] does, dropping the oldest past the capacity whatever
    /// the queue's own rule (for a sender that cannot drain it now).
    pub fn push_dropping_oldest(&self, items: Vec<T>) -> Result<usize, JournalError> {
        self.push_as(items, OnFull::DropOldest)
    }

    fn push_as(&self, items: Vec<T>, on_full: OnFull) -> Result<usize, JournalError> {
        if items.is_empty() {
            return Ok(0);
        }
        let at = self.journal(&items)?;
        let mut s = self.lock();
        let added = items.len();
        s.counts.accepted += added as u64;
        let bytes: usize = items.iter().map(Weight::bytes).sum();
        let full = s.waiting.len() + s.flying + added > self.max_items
            || s.waiting_bytes + s.flying_bytes + bytes > self.max_bytes;
        // Past what memory holds (or behind what is already spilled, to keep the order) a
        // durable queue keeps the entry on disk only.
        if let Some(at) = at.filter(|_| full || !s.spilled.is_empty()) {
            s.spilled.push_back((at, added, at.bytes()));
            s.spilled_items += added;
            s.spilled_bytes += at.bytes();
            let dropped = match on_full {
                OnFull::DropOldest => self.shed(&mut s),
                OnFull::Reject => 0,
            };
            drop(s);
            self.ready.notify_one();
            return Ok(dropped);
        }
        let segment = at.map_or(MEMORY, |at| at.segment);
        for item in items {
            s.waiting_bytes += item.bytes();
            s.share(&item, true);
            s.waiting.push_back((item, segment));
        }
        let dropped = self.trim(&mut s, on_full);
        drop(s);
        self.ready.notify_one();
        Ok(dropped)
    }

    /// Drops the oldest waiting items past the capacity, unless `on_full` rejects instead.
    fn trim(&self, s: &mut State<T>, on_full: OnFull) -> usize {
        if on_full == OnFull::Reject {
            return 0;
        }
        let mut dropped = Vec::new();
        while !s.waiting.is_empty()
            && (s.waiting.len() + s.flying > self.max_items
                || s.waiting_bytes + s.flying_bytes > self.max_bytes)
        {
            if let Some((item, segment)) = s.waiting.pop_front() {
                s.waiting_bytes -= item.bytes();
                s.share(&item, false);
                dropped.push(segment);
            }
        }
        s.counts.dropped += dropped.len() as u64;
        let n = dropped.len();
        self.resolve(dropped);
        n
    }

    /// Takes the oldest waiting items, at most `max_items` of at most `max_bytes` in all (but
    /// always one, if any waits), to be sent.
    pub fn take(&self, max_items: usize, max_bytes: usize) -> Option<Taken<T>> {
        let mut s = self.lock();
        self.refill(&mut s);
        let mut items = Vec::new();
        let mut segments = Vec::new();
        let mut bytes = 0;
        while items.len() < max_items.max(1) {
            let Some((next, _)) = s.waiting.front() else {
                break;
            };
            let weight = next.bytes();
            if !items.is_empty() && bytes + weight > max_bytes {
                break;
            }
            bytes += weight;
            if let Some((item, segment)) = s.waiting.pop_front() {
                items.push(item);
                segments.push(segment);
            }
        }
        if items.is_empty() {
            return None;
        }
        s.waiting_bytes -= bytes;
        s.flying += items.len();
        s.flying_bytes += bytes;
        let mut tenants: Vec<(Arc<str>, usize)> = Vec::new();
        for tenant in items.iter().filter_map(Weight::tenant) {
            match tenants.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, n)) => *n += 1,
                None => tenants.push((tenant.clone(), 1)),
            }
        }
        Some(Taken {
            count: items.len(),
            items,
            bytes,
            segments,
            tenants,
        })
    }

    /// Ends a taken batch: `delivered` of its items reached the backend, `refused` were refused,
    /// and `back` go to the front again, to be sent later (or dropped like any waiting item).
    /// Items split since they were taken count as they are now. In a durable queue a batch
    /// given back whole keeps its journal entries (so a restart replays it once); other items
    /// given back are journaled again, as one entry, before the batch is resolved.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "finishing a taken batch uses it up: it cannot be finished twice"
    )]
    pub fn finish(&self, taken: Taken<T>, delivered: usize, refused: usize, back: Vec<T>) {
        let whole = !back.is_empty() && back.len() == taken.count && delivered + refused == 0;
        let segments = if whole {
            taken.segments.clone()
        } else {
            let segment = match back.is_empty() {
                true => MEMORY,
                false => self.journal(&back).map_or_else(
                    |e| {
                        tracing::warn!("{e}: {} records stay in memory only", back.len());
                        MEMORY
                    },
                    |at| at.map_or(MEMORY, |at| at.segment),
                ),
            };
            self.resolve(taken.segments.iter().copied());
            vec![segment; back.len()]
        };
        let mut s = self.lock();
        s.flying -= taken.count;
        s.flying_bytes -= taken.bytes;
        for (tenant, n) in &taken.tenants {
            if let Some(held) = s.tenants.get_mut(tenant) {
                *held = held.saturating_sub(*n);
                if *held == 0 {
                    s.tenants.remove(tenant);
                }
            }
        }
        s.counts.delivered += delivered as u64;
        s.counts.refused += refused as u64;
        let now = (delivered + refused + back.len()) as u64;
        s.counts.accepted = (s.counts.accepted + now).saturating_sub(taken.count as u64);
        let returned = !back.is_empty();
        for (item, segment) in back.into_iter().zip(segments).rev() {
            s.waiting_bytes += item.bytes();
            s.share(&item, true);
            s.waiting.push_front((item, segment));
        }
        self.trim(&mut s, self.on_full);
        drop(s);
        if returned {
            self.ready.notify_one();
        }
    }

    /// Waits until something has been pushed (or given back) since the last wait returned.
    pub async fn pushed(&self) {
        self.ready.notified().await;
    }

    /// Where every item that entered the queue is now.
    pub fn counts(&self) -> Counts {
        let s = self.lock();
        Counts {
            queued: (s.waiting.len() + s.flying + s.spilled_items) as u64,
            ..s.counts
        }
    }

    /// Items held only in the journal now.
    pub fn spilled(&self) -> u64 {
        self.lock().spilled_items as u64
    }

    /// Whether nothing waits to be taken.
    pub fn is_idle(&self) -> bool {
        let s = self.lock();
        s.waiting.is_empty() && s.spilled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weight for u32 {
        fn bytes(&self) -> usize {
            *self as usize
        }
    }

    fn push(q: &Queue<u32>, items: &[u32]) -> usize {
        q.push(items.to_vec()).expect("a queue in memory")
    }

    fn balanced(q: &Queue<u32>) -> Counts {
        let c = q.counts();
        assert_eq!(
            c.accepted,
            c.delivered + c.refused + c.dropped + c.queued,
            "{c:?}"
        );
        c
    }

    impl Durable for u32 {
        fn write(items: &[Self], out: &mut Vec<u8>) {
            items
                .iter()
                .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
        }

        fn read(entry: Bytes) -> Option<Vec<Self>> {
            let words = entry.chunks_exact(4);
            (words.remainder().is_empty()).then(|| {
                words
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                    .collect()
            })
        }
    }

    /// Takes and delivers everything, batch by batch; what came out, in order.
    fn drain(q: &Queue<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(taken) = q.take(3, usize::MAX) {
            out.extend(taken.items.iter().copied());
            let n = taken.count();
            q.finish(taken, n, 0, Vec::new());
        }
        out
    }

    #[test]
    fn a_durable_queue_holds_past_memory_on_disk_and_reads_it_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let open = |max_disk| {
            Queue::<u32>::durable(
                (4, usize::MAX),
                OnFull::DropOldest,
                dir.path(),
                (Fsync::Never, max_disk),
            )
            .expect("open")
            .0
        };
        let q = open(1 << 20);
        for i in 0..50 {
            assert_eq!(q.push(vec![2 * i, 2 * i + 1]).expect("push"), 0);
        }
        assert_eq!(q.spilled(), 96, "memory holds four, the journal the rest");
        assert_eq!(balanced(&q).queued, 100);
        assert!(q.room(1, 8), "room on disk");
        let out = drain(&q);
        assert_eq!(
            out,
            (0..100).collect::<Vec<_>>(),
            "every item once, in order"
        );
        assert_eq!(balanced(&q).delivered, 100);
        assert!(q.is_idle());
        assert_eq!(q.disk_bytes(), 0, "the journal shrinks back");
        drop(q);

        // Reopened over a journal holding more than memory: read back in order, the rest spilled.
        let q = open(1 << 20);
        for i in 0..10 {
            q.push(vec![i]).expect("push");
        }
        drop(q);
        let q = open(1 << 20);
        assert_eq!(q.spilled(), 6);
        assert_eq!(drain(&q), (0..10).collect::<Vec<_>>());
        drop(q);

        // Past its size on disk the oldest spilled entries are dropped, and counted.
        let q = open(200);
        for i in 0..100 {
            q.push(vec![i]).expect("push");
        }
        let counts = balanced(&q);
        // Each entry takes 12 bytes: past 200 spilled, each push drops the oldest spilled one.
        assert_eq!(counts.dropped, 100 - 4 - 200 / 12, "{counts:?}");
        let out = drain(&q);
        assert_eq!(out.len() as u64, 100 - counts.dropped);
        assert!(
            out.windows(2).all(|w| w[0] < w[1]),
            "still in order: {out:?}"
        );
        assert_eq!(out.last(), Some(&99), "the newest are kept");
    }

    #[test]
    fn drops_exactly_the_oldest_waiting_items_past_capacity() {
        let q = Queue::new(3, 1000, OnFull::DropOldest);
        assert_eq!(push(&q, &[1, 2]), 0);
        assert_eq!(push(&q, &[3, 4, 5]), 2);
        let taken = q.take(10, 1000).expect("items");
        assert_eq!(taken.items, [3, 4, 5]);
        assert_eq!(
            push(&q, &[6]),
            1,
            "items in flight count; the new one is the only waiting"
        );
        q.finish(taken, 2, 1, Vec::new());
        assert_eq!(
            balanced(&q),
            Counts {
                accepted: 6,
                delivered: 2,
                refused: 1,
                dropped: 3,
                queued: 0
            }
        );
    }

    #[test]
    fn bytes_bound_the_queue_and_each_batch() {
        let q = Queue::new(100, 10, OnFull::DropOldest);
        assert_eq!(push(&q, &[4, 4, 4]), 1, "12 bytes: the oldest goes");
        assert!(q.room(0, 2) && !q.room(0, 3));
        let taken = q.take(10, 5).expect("one batch");
        assert_eq!(taken.items, [4], "a second item would pass 5 bytes");
        let big = Queue::new(100, 100, OnFull::DropOldest);
        push(&big, &[50]);
        assert_eq!(
            big.take(10, 5).expect("one").items,
            [50],
            "one item always goes"
        );
        balanced(&q);
    }

    #[test]
    fn reject_mode_never_drops_and_reports_no_room() {
        let q = Queue::new(2, 1000, OnFull::Reject);
        assert!(q.room(2, 0));
        assert_eq!(push(&q, &[1, 2]), 0);
        assert!(!q.room(1, 0));
        assert_eq!(
            push(&q, &[3]),
            0,
            "a producer that raced past the check is still kept"
        );
        assert_eq!(balanced(&q).queued, 3);
        assert_eq!(
            q.push_dropping_oldest(vec![4]).expect("memory"),
            2,
            "unless told to drop"
        );
        assert_eq!(balanced(&q).dropped, 2);
    }

    #[test]
    fn a_batch_given_back_goes_first_again_and_counts_as_it_is_now() {
        let q = Queue::new(10, 1000, OnFull::DropOldest);
        push(&q, &[1, 2, 3]);
        let taken = q.take(2, 1000).expect("batch");
        push(&q, &[4]);
        let items = taken.items.clone();
        q.finish(taken, 0, 0, items);
        assert_eq!(q.take(10, 1000).expect("all").items, [1, 2, 3, 4]);
        let split = Queue::new(10, 1000, OnFull::DropOldest);
        push(&split, &[8, 9]);
        let taken = split.take(2, 1000).expect("two");
        // 8 was split in halves, one delivered; 9 was refused.
        split.finish(taken, 1, 1, vec![4]);
        assert_eq!(
            balanced(&split),
            Counts {
                accepted: 3,
                delivered: 1,
                refused: 1,
                dropped: 0,
                queued: 1
            }
        );
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let q = Queue::new(3, 1000, OnFull::DropOldest);
        push(&q, &[1]);
        tokio::time::timeout(std::time::Duration::from_secs(5), q.pushed())
            .await
            .expect("permit kept");
    }

    /// An item of a tenant, weighing nothing.
    struct Of(Arc<str>);

    impl Weight for Of {
        fn bytes(&self) -> usize {
            0
        }
        fn tenant(&self) -> Option<&Arc<str>> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_tenants_share_counts_its_waiting_and_flying_items_until_they_end() {
        let q: Queue<Of> = Queue::new(4, usize::MAX, OnFull::DropOldest);
        let a: Arc<str> = Arc::from("a");
        let of = |n: usize| (0..n).map(|_| Of(a.clone())).collect::<Vec<_>>();
        q.push(of(2)).expect("pushed");
        assert!(q.within_share("a", 0, 0.5) && !q.within_share("a", 1, 0.5));
        assert!(
            q.within_share("b", 2, 0.5),
            "another tenant has its own share"
        );
        let taken = q.take(1, usize::MAX).expect("one");
        assert!(!q.within_share("a", 1, 0.5), "a flying item still counts");
        q.finish(taken, 1, 0, Vec::new());
        assert!(q.within_share("a", 1, 0.5), "a delivered one does not");
        q.push(of(4)).expect("pushed");
        assert_eq!(q.counts().dropped, 1, "the oldest dropped past four");
        assert!(!q.within_share("a", 1, 1.0) && q.within_share("a", 0, 1.0));
        let taken = q.take(4, usize::MAX).expect("all");
        q.finish(taken, 0, 0, of(1));
        assert!(q.within_share("a", 3, 1.0), "one given back counts again");
    }
}
