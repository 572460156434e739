//! The ack window: records sent and not yet acknowledged, by sequence number, and the commits
//! waiting for them. Pure bookkeeping, no I/O: destinations acknowledge records by their
//! sequence number in any order (partitions of a topic are acknowledged independently), and
//! the window answers which commit is the newest whose records are all acknowledged.
//!
//! # Invariant
//!
//! A commit is settled only when every record sent before it is acknowledged, so a checkpoint
//! at a settled commit never runs ahead of what the destination holds.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_domain::position::Position;

/// Records in flight and commits waiting for them.
#[derive(Debug, Default)]
pub(crate) struct AckWindow {
    /// The sequence number of the next record sent.
    next: u64,
    /// Every record before this one is acknowledged.
    frontier: u64,
    /// For each record from `frontier` to `next`: when its event was read, when it was sent,
    /// and whether it is acknowledged yet.
    acked: VecDeque<(Instant, Instant, bool)>,
    /// Commits in order: (records sent before it, its position, its source time).
    commits: VecDeque<(u64, Position, DateTime<Utc>)>,
}

impl AckWindow {
    /// Takes a sequence number for a record about to be sent, whose event was read at
    /// `read_at`.
    pub(crate) fn send(&mut self, read_at: Instant) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.acked.push_back((read_at, Instant::now(), false));
        seq
    }

    /// Record `seq` was acknowledged: returns when its event was read, the first time.
    /// Unknown or repeated numbers are ignored.
    pub(crate) fn acknowledge(&mut self, seq: u64) -> Option<Instant> {
        let offset = seq
            .checked_sub(self.frontier)
            .and_then(|o| usize::try_from(o).ok())?;
        let read_at = match self.acked.get_mut(offset) {
            Some((read_at, _, acked)) if !*acked => {
                *acked = true;
                Some(*read_at)
            }
            _ => None,
        };
        while self.acked.front().is_some_and(|(_, _, acked)| *acked) {
            self.acked.pop_front();
            self.frontier += 1;
        }
        read_at
    }

    /// When the oldest record not yet acknowledged was sent.
    pub(crate) fn oldest_sent(&self) -> Option<Instant> {
        self.acked
            .iter()
            .find(|(_, _, acked)| !*acked)
            .map(|(_, sent, _)| *sent)
    }

    /// A transaction boundary after every record sent so far.
    pub(crate) fn commit(&mut self, position: Position, time: DateTime<Utc>) {
        self.commits.push_back((self.next, position, time));
    }

    /// How many records are sent and not yet acknowledged (counting those acknowledged out of
    /// order behind an older one).
    pub(crate) fn in_flight(&self) -> usize {
        self.acked.len()
    }

    /// The newest commit whose records are all acknowledged, if one became so since the last
    /// call.
    pub(crate) fn settled(&mut self) -> Option<(Position, DateTime<Utc>)> {
        let mut newest = None;
        while self
            .commits
            .front()
            .is_some_and(|(n, ..)| *n <= self.frontier)
        {
            newest = self.commits.pop_front().map(|(_, p, t)| (p, t));
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
            w.acknowledge(b),
            Some(read),
            "the read time, for the latency"
        );
        assert_eq!(
            w.settled(),
            None,
            "b before a does not settle the first commit"
        );
        w.acknowledge(c);
        assert_eq!(w.settled(), None);
        w.acknowledge(a);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(
            w.settled(),
            Some((at(200), time())),
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
        w.acknowledge(b);
        assert_eq!(w.oldest_sent(), Some(first), "a is still in flight");
        w.acknowledge(a);
        assert_eq!(w.oldest_sent(), None);
    }

    #[test]
    fn a_commit_without_records_settles_at_once() {
        let mut w = AckWindow::default();
        let read = Instant::now();
        w.commit(at(50), time());
        assert_eq!(w.settled(), Some((at(50), time())));
        let a = w.send(read);
        w.commit(at(60), time());
        w.commit(at(70), time());
        assert_eq!(w.settled(), None);
        w.acknowledge(a);
        assert_eq!(w.settled(), Some((at(70), time())));
    }

    #[test]
    fn unknown_and_repeated_acknowledgements_change_nothing() {
        let mut w = AckWindow::default();
        let read = Instant::now();
        let a = w.send(read);
        w.commit(at(10), time());
        assert_eq!(w.acknowledge(a + 5), None);
        assert_eq!(w.acknowledge(u64::MAX), None);
        assert_eq!(w.settled(), None);
        assert_eq!(w.acknowledge(a), Some(read));
        assert_eq!(w.acknowledge(a), None, "counted once");
        assert_eq!(w.settled(), Some((at(10), time())));
        let b = w.send(read);
        assert_eq!(b, 1, "numbers keep counting");
        w.acknowledge(b);
        assert_eq!(w.in_flight(), 0);
    }
}
