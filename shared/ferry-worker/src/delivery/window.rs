//! The ack window: records sent and not yet acknowledged, by sequence number, and the commits
//! waiting for them. Pure bookkeeping, no I/O: destinations acknowledge records by their
//! sequence number in any order (partitions of a topic are acknowledged independently), and
//! the window answers which commit is the newest whose records are all acknowledged, and where
//! in the topic the records after it start.
//!
//! # Invariants
//!
//! A commit is settled only when every record sent before it is acknowledged, so a checkpoint
//! at a settled commit never runs ahead of what the destination holds.
//!
//! A settled commit's offsets are, for each partition, the offset just after the last record
//! sent before it: a restarted loop reads the topic from there to find what it already holds
//! (see `super::tail`). They are known only when every record before them landed at a known
//! offset; otherwise the commit has none, and a restart trusts the tail alone.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_domain::position::Position;

/// Where a record landed, as far as the window is told: its partition and offset, or in a
/// partition at an offset nobody knows (skipped on the tail's word), or nothing (a stream).
pub(crate) type Place = Option<(usize, Option<i64>)>;

/// A record in the window.
#[derive(Debug)]
struct Slot {
    read_at: Instant,
    sent: Instant,
    acked: bool,
    place: Place,
}

/// A commit waiting for its records: how many records were sent before it, where, when, and
/// the offsets once every record before it is acknowledged (`Some(None)`: reached, unknown).
#[derive(Debug)]
struct Commit {
    records: u64,
    position: Position,
    time: DateTime<Utc>,
    offsets: Option<Option<Vec<i64>>>,
}

/// A settled commit: its position, source time and offsets (see the module's invariants).
pub(crate) type Settled = (Position, DateTime<Utc>, Option<Vec<i64>>);

/// Records in flight and commits waiting for them.
#[derive(Debug, Default)]
pub(crate) struct AckWindow {
    /// The sequence number of the next record sent.
    next: u64,
    /// Every record before this one is acknowledged.
    frontier: u64,
    /// Every record from `frontier` to `next`.
    acked: VecDeque<Slot>,
    /// Commits in order.
    commits: VecDeque<Commit>,
    /// How many of `commits`, from the front, have their offsets: those the frontier reached.
    snapped: usize,
    /// For each partition, the offset after the last record before `frontier` (`None`:
    /// unknown). Empty for a destination without offsets.
    offsets: Vec<Option<i64>>,
}

impl AckWindow {
    /// A window for a destination with `offsets.len()` partitions whose records before this
    /// loop end at `offsets` (see the module's invariants).
    pub(crate) fn new(offsets: Vec<Option<i64>>) -> Self {
        Self {
            offsets,
            ..Self::default()
        }
    }

    /// Takes a sequence number for a record about to be sent, whose event was read at
    /// `read_at`.
    pub(crate) fn send(&mut self, read_at: Instant) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.acked.push_back(Slot {
            read_at,
            sent: Instant::now(),
            acked: false,
            place: None,
        });
        seq
    }

    /// Record `seq` was acknowledged, and landed at `place`: returns when its event was read,
    /// the first time. Unknown or repeated numbers are ignored.
    pub(crate) fn acknowledge(&mut self, seq: u64, place: Place) -> Option<Instant> {
        let offset = seq
            .checked_sub(self.frontier)
            .and_then(|o| usize::try_from(o).ok())?;
        let read_at = match self.acked.get_mut(offset) {
            Some(slot) if !slot.acked => {
                slot.acked = true;
                slot.place = place;
                Some(slot.read_at)
            }
            _ => None,
        };
        while self.acked.front().is_some_and(|s| s.acked) {
            if let Some(Slot {
                place: Some((p, at)),
                ..
            }) = self.acked.pop_front()
                && let Some(slot) = self.offsets.get_mut(p)
            {
                *slot = at.map(|o| o + 1);
            }
            self.frontier += 1;
            self.snapshot();
        }
        read_at
    }

    /// Gives the commits the frontier has just reached their offsets.
    fn snapshot(&mut self) {
        while let Some(c) = self.commits.get_mut(self.snapped)
            && c.records <= self.frontier
        {
            c.offsets = Some(if self.offsets.is_empty() {
                None
            } else {
                self.offsets.iter().copied().collect()
            });
            self.snapped += 1;
        }
    }

    /// When the oldest record not yet acknowledged was sent.
    pub(crate) fn oldest_sent(&self) -> Option<Instant> {
        self.acked.iter().find(|s| !s.acked).map(|s| s.sent)
    }

    /// A transaction boundary after every record sent so far.
    pub(crate) fn commit(&mut self, position: Position, time: DateTime<Utc>) {
        self.commits.push_back(Commit {
            records: self.next,
            position,
            time,
            offsets: None,
        });
        if self.next == self.frontier {
            self.snapshot();
        }
    }

    /// How many records are sent and not yet acknowledged (counting those acknowledged out of
    /// order behind an older one).
    pub(crate) fn in_flight(&self) -> usize {
        self.acked.len()
    }

    /// The newest commit whose records are all acknowledged, if one became so since the last
    /// call.
    pub(crate) fn settled(&mut self) -> Option<Settled> {
        let mut newest = None;
        while self
            .commits
            .front()
            .is_some_and(|c| c.records <= self.frontier)
        {
            newest = self
                .commits
                .pop_front()
                .map(|c| (c.position, c.time, c.offsets.flatten()));
            self.snapped = self.snapped.saturating_sub(1);
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        format!("binlog.000001:{offset}").parse().unwrap()
    }

    fn time() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_commit_settles_when_every_record_before_it_is_acknowledged() {
        let mut w = AckWindow::default();
        let read = Instant::now();
        let a = w.send(read);
        let b = w.send(read);
        w.commit(at(100), time());
        let c = w.send(read);
        w.commit(at(200), time());
        assert_eq!(w.in_flight(), 3);
        assert_eq!(w.settled(), None, "nothing acknowledged yet");
        assert_eq!(
            w.acknowledge(b, None),
            Some(read),
            "the read time, for the latency"
        );
        assert_eq!(
            w.settled(),
            None,
            "b before a does not settle the first commit"
        );
        w.acknowledge(c, None);
        assert_eq!(w.settled(), None);
        w.acknowledge(a, None);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(
            w.settled(),
            Some((at(200), time(), None)),
            "both commits settle at once; the newest is returned"
        );
        assert_eq!(w.settled(), None, "a settled commit is returned once");
    }

    #[test]
    fn the_oldest_record_in_flight_is_known() {
        let mut w = AckWindow::default();
        assert_eq!(w.oldest_sent(), None);
        let read = Instant::now();
        let a = w.send(read);
        let b = w.send(read);
        let first = w.oldest_sent().unwrap();
        w.acknowledge(b, None);
        assert_eq!(w.oldest_sent(), Some(first), "a is still in flight");
        w.acknowledge(a, None);
        assert_eq!(w.oldest_sent(), None);
    }

    #[test]
    fn a_commit_without_records_settles_at_once() {
        let mut w = AckWindow::default();
        let read = Instant::now();
        w.commit(at(50), time());
        assert_eq!(w.settled(), Some((at(50), time(), None)));
        let a = w.send(read);
        w.commit(at(60), time());
        w.commit(at(70), time());
        assert_eq!(w.settled(), None);
        w.acknowledge(a, None);
        assert_eq!(w.settled(), Some((at(70), time(), None)));
    }

    #[test]
    fn unknown_and_repeated_acknowledgements_change_nothing() {
        let mut w = AckWindow::default();
        let read = Instant::now();
        let a = w.send(read);
        w.commit(at(10), time());
        assert_eq!(w.acknowledge(a + 5, None), None);
        assert_eq!(w.acknowledge(u64::MAX, None), None);
        assert_eq!(w.settled(), None);
        assert_eq!(w.acknowledge(a, None), Some(read));
        assert_eq!(w.acknowledge(a, None), None, "counted once");
        assert_eq!(w.settled(), Some((at(10), time(), None)));
        let b = w.send(read);
        assert_eq!(b, 1, "numbers keep counting");
        w.acknowledge(b, None);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn a_settled_commit_names_where_the_records_after_it_start() {
        // Two partitions; before this loop, partition 0 ended at 10 and partition 1 at 3.
        let mut w = AckWindow::new(vec![Some(10), Some(3)]);
        let read = Instant::now();
        w.commit(at(1), time());
        assert_eq!(w.settled(), Some((at(1), time(), Some(vec![10, 3]))));
        let a = w.send(read); // partition 0
        let b = w.send(read); // partition 1
        w.commit(at(2), time());
        let c = w.send(read); // partition 0
        w.commit(at(3), time());
        w.acknowledge(c, Some((0, Some(11))));
        w.acknowledge(b, Some((1, Some(3))));
        assert_eq!(w.settled(), None);
        w.acknowledge(a, Some((0, Some(10))));
        // Both commits settle at once: the newest is returned, with c counted.
        assert_eq!(w.settled(), Some((at(3), time(), Some(vec![12, 4]))));
        let d = w.send(read);
        w.commit(at(4), time());
        let e = w.send(read);
        w.commit(at(5), time());
        w.acknowledge(d, Some((1, Some(4))));
        w.acknowledge(e, Some((0, Some(12))));
        // The first of two commits settled by one call keeps its own offsets: checked by
        // settling them one at a time.
        let mut w2 = AckWindow::new(vec![Some(0)]);
        let f = w2.send(read);
        w2.commit(at(6), time());
        let g = w2.send(read);
        w2.acknowledge(f, Some((0, Some(0))));
        assert_eq!(w2.settled(), Some((at(6), time(), Some(vec![1]))));
        w2.commit(at(7), time());
        w2.acknowledge(g, Some((0, Some(1))));
        assert_eq!(w2.settled(), Some((at(7), time(), Some(vec![2]))));
        assert_eq!(w.settled(), Some((at(5), time(), Some(vec![13, 5]))));
    }

    #[test]
    fn offsets_are_unknown_until_a_record_lands_at_a_known_one() {
        let mut w = AckWindow::new(vec![None]);
        let read = Instant::now();
        w.commit(at(1), time());
        assert_eq!(w.settled(), Some((at(1), time(), None)), "unknown at first");
        let a = w.send(read);
        w.acknowledge(a, Some((0, None)));
        w.commit(at(2), time());
        assert_eq!(
            w.settled(),
            Some((at(2), time(), None)),
            "skipped on the tail's word"
        );
        let b = w.send(read);
        w.commit(at(3), time());
        w.acknowledge(b, Some((0, Some(41))));
        assert_eq!(w.settled(), Some((at(3), time(), Some(vec![42]))));
        // A stream has no offsets.
        let mut s = AckWindow::default();
        let c = s.send(read);
        s.commit(at(4), time());
        s.acknowledge(c, None);
        assert_eq!(s.settled(), Some((at(4), time(), None)));
    }
}
