//! What a task's binlog archive holds, as its archiver last reported it (`GET …/task`'s
//! `archive`; docs/capture.md, "Binlog archive"). The archive itself is in S3; this is the
//! operator's view of it without listing the bucket: how far it reaches back and forward, how
//! far behind the server it is, and its last failure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The archive's extent and health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// The source server whose binlog is archived (`server_id:7`): a failover starts another
    /// archive under the new server.
    pub server: String,
    /// The oldest position the archive holds (the start of its oldest piece), as of the last
    /// listing (at the archiver's start and every hourly retention pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    /// Where the archive ends: every event of the server's binlog before this position is
    /// stored (`binlog.000007:1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
    /// The source time of the newest event stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_time: Option<DateTime<Utc>>,
    /// When a piece was last stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<DateTime<Utc>>,
    /// Pieces stored by the archiver's current run.
    #[serde(default)]
    pub pieces: u64,
    /// Whether the source had nothing newer than what is stored, at `updated_at`.
    #[serde(default)]
    pub caught_up: bool,
    /// The last failure (the archiver retries; the task goes on): cleared by the next piece
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_at: Option<DateTime<Utc>>,
    /// When the archiver last wrote this.
    pub updated_at: DateTime<Utc>,
}

impl ArchiveStatus {
    /// A status with nothing known yet but the server.
    pub fn new(server: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            server: server.into(),
            oldest: None,
            through: None,
            through_time: None,
            stored_at: None,
            pieces: 0,
            caught_up: false,
            error: None,
            error_at: None,
            updated_at: now,
        }
    }

    /// A piece from `start` to `end`, whose newest event is from `event_time`, was stored.
    pub fn stored(
        &mut self,
        start: String,
        end: String,
        event_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        // The first piece of a new archive: nothing older is kept.
        self.oldest.get_or_insert(start);
        self.through = Some(end);
        if event_time.is_some() {
            self.through_time = event_time;
        }
        self.stored_at = Some(now);
        self.pieces += 1;
        self.error = None;
        self.error_at = None;
        self.updated_at = now;
    }

    /// The archiver failed (and will try again).
    pub fn failed(&mut self, error: String, now: DateTime<Utc>) {
        self.error = Some(error);
        self.error_at = Some(now);
        self.caught_up = false;
        self.updated_at = now;
    }

    /// Notes whether the source has nothing newer than what is stored; `true` when that
    /// changed to yes (worth recording: while caught up nothing else is written).
    pub fn set_caught_up(&mut self, caught_up: bool, now: DateTime<Utc>) -> bool {
        let became = caught_up && !self.caught_up;
        self.caught_up = caught_up;
        if became {
            self.updated_at = now;
        }
        became
    }

    /// How far the archive is behind the server at `now`: `None` when nothing is stored yet,
    /// zero when caught up.
    pub fn delay(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        if self.caught_up {
            return Some(chrono::Duration::zero());
        }
        self.through_time
            .map(|t| (now - t).max(chrono::Duration::zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_stored_piece_moves_the_end_and_clears_the_failure() {
        let mut s = ArchiveStatus::new("server_id:7", at(0));
        s.failed("S3 refused the request".into(), at(1));
        assert_eq!(s.error.as_deref(), Some("S3 refused the request"));
        s.stored(
            "binlog.000003:4".into(),
            "binlog.000003:9000".into(),
            Some(at(2)),
            at(3),
        );
        assert_eq!(s.oldest.as_deref(), Some("binlog.000003:4"));
        assert_eq!(s.through.as_deref(), Some("binlog.000003:9000"));
        assert_eq!((s.through_time, s.stored_at), (Some(at(2)), Some(at(3))));
        assert_eq!((&s.error, s.error_at, s.pieces), (&None, None, 1));
        // A piece of artificial events only (no time of their own) keeps the last time.
        s.stored(
            "binlog.000004:4".into(),
            "binlog.000004:120".into(),
            None,
            at(5),
        );
        assert_eq!(s.through_time, Some(at(2)));
        assert_eq!(s.oldest.as_deref(), Some("binlog.000003:4"), "kept");
    }

    #[test]
    fn the_delay_is_the_age_of_the_newest_event_stored_or_zero_when_caught_up() {
        let mut s = ArchiveStatus::new("server_id:7", at(0));
        assert_eq!(s.delay(at(10)), None, "nothing stored");
        s.stored(
            "binlog.000001:4".into(),
            "binlog.000001:500".into(),
            Some(at(4)),
            at(5),
        );
        assert_eq!(s.delay(at(10)), Some(chrono::Duration::seconds(6)));
        assert!(
            s.set_caught_up(true, at(10)),
            "became caught up: worth a report"
        );
        assert!(
            !s.set_caught_up(true, at(11)),
            "still caught up: nothing to report"
        );
        assert_eq!(s.delay(at(20)), Some(chrono::Duration::zero()));
        assert!(!s.set_caught_up(false, at(21)));
        // A source clock ahead of ours is no negative delay.
        assert_eq!(s.delay(at(1)), Some(chrono::Duration::zero()));
        s.set_caught_up(true, at(22));
        s.failed("the source closed the stream".into(), at(23));
        assert!(!s.caught_up, "a failed archiver is not caught up");
    }

    #[test]
    fn it_reads_back_what_it_writes() {
        let mut s = ArchiveStatus::new("server_id:7", at(0));
        s.stored(
            "binlog.000001:4".into(),
            "binlog.000001:500".into(),
            Some(at(4)),
            at(5),
        );
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["through"], "binlog.000001:500");
        assert!(json.get("error").is_none());
        let back: ArchiveStatus = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s);
    }
}
