//! When the capture loop writes a checkpoint: at the newest settled commit (every record
//! before it acknowledged), at most every [`CHECKPOINT_EVERY`](crate::session::CHECKPOINT_EVERY),
//! and at once when the source is idle. Pure: the clock is passed in.

use std::time::{Duration, Instant};

/// The last settled commit `C` not yet checkpointed, and when the last checkpoint was written.
#[derive(Debug)]
pub(super) struct Cadence<C> {
    every: Duration,
    pending: Option<C>,
    written_at: Instant,
}

impl<C> Cadence<C> {
    pub(super) fn new(every: Duration, now: Instant) -> Self {
        Self {
            every,
            pending: None,
            written_at: now,
        }
    }

    /// A commit became settled (newer than any before it).
    pub(super) fn settled(&mut self, commit: C) {
        self.pending = Some(commit);
    }

    /// The commit to checkpoint now, if one is waiting and it is time (or the source is idle).
    pub(super) fn due(&mut self, now: Instant, idle: bool) -> Option<C> {
        if idle || now.duration_since(self.written_at) >= self.every {
            self.pending.take()
        } else {
            None
        }
    }

    /// The waiting commit, whatever the time (at the loop's end).
    pub(super) fn take(&mut self) -> Option<C> {
        self.pending.take()
    }

    /// A checkpoint was written at `now`.
    pub(super) fn written(&mut self, now: Instant) {
        self.written_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use ferry_domain::position::Position;

    fn commit(offset: u64) -> (Position, DateTime<Utc>) {
        (
            format!("binlog.000001:{offset}").parse().unwrap(),
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        )
    }

    #[test]
    fn checkpoints_are_spaced_but_idle_sources_are_checkpointed_at_once() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut c = Cadence::new(second, start);
        assert_eq!(c.due(start + 2 * second, false), None, "nothing settled");
        c.settled(commit(100));
        c.settled(commit(200));
        assert_eq!(c.due(start + second / 2, false), None, "too soon");
        assert_eq!(
            c.due(start + second / 2, true),
            Some(commit(200)),
            "idle: now, the newest"
        );
        c.written(start + second / 2);
        c.settled(commit(300));
        assert_eq!(c.due(start + second, false), None);
        assert_eq!(c.due(start + 2 * second, false), Some(commit(300)));
        assert_eq!(c.take(), None, "taken once");
    }
}
