//! The gateway's bounded priority queue.
//!
//! Order is by a virtual start time: arrival plus `rank * aging`, where rank is 0 for the most
//! urgent case work, 9 for the least, and 10 for windowed reports (see
//! [`super::Priority::rank`]). Urgent work goes first, yet waiting counts: a request that has
//! waited one aging step is as urgent as one a rank above it arriving now, so nothing starves;
//! a report waits at most ten aging steps longer than anything arriving after it. Ties go to
//! the earlier arrival. The key is fixed at arrival, so a binary heap serves it in O(log n).
//!
//! Capacity bounds new arrivals only: a request coming back after a failed leg was already
//! admitted and is never refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A queue of `T` ordered by priority with aging.
#[derive(Debug)]
pub(crate) struct PriorityQueue<T> {
    heap: BinaryHeap<Reverse<Slot<T>>>,
    capacity: usize,
    aging_ms: u64,
    seq: u64,
}

#[derive(Debug)]
struct Slot<T> {
    key: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}

impl<T> Eq for Slot<T> {}

impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Slot<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// The queue was full; the item comes back.
#[derive(Debug)]
pub(crate) struct Full<T>(pub T);

impl<T> PriorityQueue<T> {
    /// An empty queue for `capacity` new arrivals.
    pub(crate) fn new(capacity: usize, aging_ms: u64) -> Self {
        Self {
            heap: BinaryHeap::new(),
            capacity,
            aging_ms,
            seq: 0,
        }
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Capacity for new arrivals.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The key of an item of `rank` arriving at `now_ms`.
    pub(crate) fn key(&self, rank: u64, now_ms: u64) -> u64 {
        now_ms.saturating_add(rank.saturating_mul(self.aging_ms))
    }

    /// Admits a new arrival, or gives it back when the queue is full.
    pub(crate) fn push(&mut self, key: u64, item: T) -> Result<(), Full<T>> {
        if self.heap.len() >= self.capacity {
            return Err(Full(item));
        }
        self.requeue(key, item);
        Ok(())
    }

    /// Puts back an admitted item with its original key (never refused).
    pub(crate) fn requeue(&mut self, key: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Slot {
            key,
            seq: self.seq,
            item,
        }));
    }

    /// With the queue full: admits `item` in place of the least urgent queued item if `item`
    /// outranks it, and returns whichever of the two is refused. O(n), and n is the capacity.
    pub(crate) fn displace(&mut self, key: u64, item: T) -> T {
        let worst = self
            .heap
            .iter()
            .enumerate()
            .max_by_key(|(_, Reverse(s))| (s.key, s.seq))
            .map(|(i, Reverse(s))| (i, s.key));
        match worst {
            Some((at, worst_key)) if key < worst_key => {
                let mut slots = std::mem::take(&mut self.heap).into_vec();
                let Reverse(evicted) = slots.swap_remove(at);
                self.heap = slots.into();
                self.requeue(key, item);
                evicted.item
            }
            _ => item,
        }
    }

    /// The next item and its key.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        self.heap.pop().map(|Reverse(s)| (s.key, s.item))
    }

    /// Removes every item `dead` selects (callers gone, deadlines passed) and returns them.
    pub(crate) fn remove_if(&mut self, mut dead: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        if !self.heap.iter().any(|Reverse(s)| dead(&s.item)) {
            return removed;
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .partition(|Reverse(s)| dead(&s.item));
        self.heap = kept.into();
        removed.extend(gone.into_iter().map(|Reverse(s)| s.item));
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_first_then_arrival_and_full_is_refused() {
        let mut q = PriorityQueue::new(3, 1000);
        q.push(q.key(10, 0), "report").unwrap();
        q.push(q.key(5, 0), "p5").unwrap();
        q.push(q.key(0, 0), "p10").unwrap();
        assert!(matches!(q.push(q.key(0, 0), "late"), Err(Full("late"))));
        q.requeue(q.key(1, 0), "retried");
        assert_eq!(q.len(), 4);
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, i)| i)).collect();
        assert_eq!(order, ["p10", "retried", "p5", "report"]);
    }

    #[test]
    fn a_full_queue_refuses_the_least_urgent() {
        let mut q = PriorityQueue::new(2, 1000);
        q.push(q.key(10, 0), "report").unwrap();
        q.push(q.key(5, 0), "p5").unwrap();
        let Err(Full(urgent)) = q.push(q.key(0, 0), "p10") else {
            panic!("full")
        };
        assert_eq!(q.displace(q.key(0, 0), urgent), "report");
        let Err(Full(low)) = q.push(q.key(9, 0), "p1") else {
            panic!("full")
        };
        assert_eq!(
            q.displace(q.key(9, 0), low),
            "p1",
            "it outranks nothing queued"
        );
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, i)| i)).collect();
        assert_eq!(order, ["p10", "p5"]);
    }

    #[test]
    fn waiting_reports_are_not_starved() {
        // A report queued at t=0 against a stream of urgent work arriving every 100 ms: it is
        // served once urgent arrivals are ten aging steps younger than it.
        let mut q = PriorityQueue::new(1000, 1000);
        q.push(q.key(10, 0), "report").unwrap();
        let mut served_at = None;
        for t in (0..20_000).step_by(100) {
            q.push(q.key(0, t), "urgent").unwrap();
            if let Some((_, "report")) = q.pop() {
                served_at = Some(t);
                break;
            }
        }
        assert_eq!(served_at, Some(10_000));
    }

    #[test]
    fn remove_if_takes_out_only_the_selected() {
        let mut q = PriorityQueue::new(10, 1);
        for i in 0..6 {
            q.push(i, i).unwrap();
        }
        let mut removed = q.remove_if(|i| i % 2 == 0);
        removed.sort_unstable();
        assert_eq!(removed, [0, 2, 4]);
        let left: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, i)| i)).collect();
        assert_eq!(left, [1, 3, 5]);
        assert!(q.remove_if(|_| false).is_empty());
    }
}
