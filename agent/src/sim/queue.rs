//! The simulation's agenda: events ordered by virtual time, ties in the order
//! they were scheduled, so a run is a pure function of its seed.

use std::{cmp::Ordering, collections::BinaryHeap, time::Duration};

struct Entry<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Reversed: `BinaryHeap` is a max-heap and the earliest event must come first.
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub(super) struct Agenda<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
}

impl<E> Agenda<E> {
    pub(super) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    pub(super) fn push(&mut self, at: Duration, event: E) {
        self.heap.push(Entry {
            at,
            seq: self.next_seq,
            event,
        });
        self.next_seq += 1;
    }

    /// The earliest event if it is due by `until`.
    pub(super) fn pop_due(&mut self, until: Duration) -> Option<(Duration, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        self.heap.pop().map(|entry| (entry.at, entry.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_fifo() {
        let mut agenda = Agenda::new();
        let ms = Duration::from_millis;
        agenda.push(ms(5), "late");
        agenda.push(ms(1), "first");
        agenda.push(ms(1), "second");
        assert_eq!(agenda.pop_due(ms(0)), None);
        assert_eq!(agenda.pop_due(ms(9)), Some((ms(1), "first")));
        assert_eq!(agenda.pop_due(ms(9)), Some((ms(1), "second")));
        assert_eq!(agenda.pop_due(ms(4)), None);
        assert_eq!(agenda.pop_due(ms(5)), Some((ms(5), "late")));
    }
}
