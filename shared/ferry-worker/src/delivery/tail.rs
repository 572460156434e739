//! What a restarted loop finds already delivered: the last record of each partition of the
//! task's topic when the loop started. Re-read records at or before it were produced before
//! the restart and are skipped, so the topic holds every change once.
//!
//! Whatever kind of record is last (a row, BEGIN, COMMIT, DDL or a heartbeat), it names the
//! position it was read at; a tail written from another source server's binlog is refused
//! (positions of two servers are not comparable).

use ferry_domain::change::split_part;
use ferry_domain::position::Position;
use ferry_kafka::sink::TailHeaders;

use crate::error::DefiniteError;

/// The last record already in a partition when the loop started.
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) position: Position,
    /// The record's event index in its transaction and its part in the event (see
    /// `ferry_domain::change::split_part`); `(u32::MAX, u8::MAX)` for a heartbeat, which covers
    /// every event at its position.
    index: (u32, u8),
}

impl Tail {
    /// The tail from a record's headers, for a loop reading `source`'s binlog.
    pub(crate) fn parse(h: &TailHeaders, source: &str) -> Result<Self, DefiniteError> {
        if let Some(written) = &h.source
            && written != source
        {
            return Err(DefiniteError::TopicTailSource {
                written: written.clone(),
                source_server: source.to_owned(),
            });
        }
        let bad = || DefiniteError::TopicTail {
            key: h.key.clone(),
            position: h.position.clone(),
        };
        // A heartbeat's key is `hb/<position>`: every event up to its position was before it.
        let index = if h.key.starts_with("hb/") {
            (u32::MAX, u8::MAX)
        } else {
            let (event, part) = split_part(&h.key);
            let index = event
                .rsplit_once('/')
                .and_then(|(_, i)| i.parse().ok())
                .ok_or_else(bad)?;
            (index, part)
        };
        Ok(Self {
            position: h.position.parse().map_err(|_| bad())?,
            index,
        })
    }

    /// Whether part `index.1` of the event at `position` with row `index.0` is at or before
    /// this tail. Rows of one rows event share its position and are told apart by their index.
    pub(crate) fn covers(&self, position: &Position, index: (u32, u8)) -> bool {
        match position.cmp_file_offset(&self.position) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => index <= self.index,
            std::cmp::Ordering::Greater => false,
        }
    }
}

/// The tails of a topic's partitions, each dropped once the loop passed it.
#[derive(Debug, Default)]
pub(crate) struct Tails(Vec<Option<Tail>>);

impl Tails {
    pub(crate) fn new(tails: Vec<Option<Tail>>) -> Self {
        Self(tails)
    }

    /// Whether the record at `position` with `index` (see [`Tail::covers`]), going to
    /// `partition`, is already there.
    pub(crate) fn covers(
        &mut self,
        partition: usize,
        position: &Position,
        index: (u32, u8),
    ) -> bool {
        let Some(slot) = self.0.get_mut(partition) else {
            return false;
        };
        let Some(tail) = slot else {
            return false;
        };
        if tail.covers(position, index) {
            return true;
        }
        // Past the tail: every later event of this partition is new.
        *slot = None;
        false
    }

    /// The positions of the tails (where a reselection may first switch, see `capture`).
    pub(crate) fn positions(&self) -> impl Iterator<Item = &Position> {
        self.0.iter().flatten().map(|t| &t.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str, position: &str, source: Option<&str>) -> TailHeaders {
        TailHeaders {
            key: key.into(),
            position: position.into(),
            source: source.map(Into::into),
        }
    }

    fn parse(key: &str, position: &str) -> Result<Tail, DefiniteError> {
        Tail::parse(&headers(key, position, Some("server_id:1")), "server_id:1")
    }

    #[test]
    fn the_tail_covers_what_was_produced() {
        let tail = parse("0-1-9/2", "binlog.000002:500@0-1-9").unwrap();
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(
            tail.covers(&at("binlog.000001:900"), (7, 0)),
            "an earlier file"
        );
        assert!(
            tail.covers(&at("binlog.000002:400"), (9, 0)),
            "an earlier event"
        );
        assert!(
            tail.covers(&at("binlog.000002:500"), (2, 0)),
            "the tail itself"
        );
        assert!(
            !tail.covers(&at("binlog.000002:500"), (3, 0)),
            "a later row of the same event"
        );
        assert!(!tail.covers(&at("binlog.000002:501"), (1, 0)));
        assert!(parse("no-index", "binlog.000002:500").is_err());
        assert!(parse("no-index#1", "binlog.000002:500").is_err());
        assert!(parse("x/1", "not a position").is_err());
    }

    #[test]
    fn the_parts_of_one_event_are_told_apart() {
        // A delete (part 0) landed, its tombstone (part 1) did not.
        let at = |p: &str| p.parse::<Position>().unwrap();
        let tail = parse("0-1-9/2", "binlog.000002:500").unwrap();
        assert!(tail.covers(&at("binlog.000002:500"), (2, 0)));
        assert!(
            !tail.covers(&at("binlog.000002:500"), (2, 1)),
            "the tombstone is sent"
        );
        let tail = parse("0-1-9/2#1", "binlog.000002:500").unwrap();
        assert!(tail.covers(&at("binlog.000002:500"), (2, 1)));
        assert!(!tail.covers(&at("binlog.000002:500"), (2, 2)));
        assert!(!tail.covers(&at("binlog.000002:500"), (3, 0)));
    }

    #[test]
    fn a_heartbeat_tail_covers_everything_up_to_its_position() {
        let tail = parse("hb/binlog.000002:500@0-1-9", "binlog.000002:500@0-1-9").unwrap();
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(
            tail.covers(&at("binlog.000002:500"), (0, 0)),
            "a heartbeat again"
        );
        assert!(
            tail.covers(&at("binlog.000002:500"), (7, 0)),
            "the commit before it"
        );
        assert!(tail.covers(&at("binlog.000001:900"), (3, 0)));
        assert!(
            !tail.covers(&at("binlog.000002:501"), (0, 0)),
            "the next event"
        );
    }

    #[test]
    fn a_tail_from_another_server_is_refused() {
        let h = headers("0-1-9/2", "binlog.000002:500", Some("server_id:1"));
        let Err(e) = Tail::parse(&h, "server_id:2") else {
            panic!("a tail of server 1 read by a loop on server 2")
        };
        assert_eq!(e.code(), "topic_tail_source");
        // Records written before Ferry named their source are trusted.
        let old = headers("0-1-9/2", "binlog.000002:500", None);
        assert!(Tail::parse(&old, "server_id:2").is_ok());
    }

    #[test]
    fn a_partition_past_its_tail_stops_checking() {
        let at = |p: &str| p.parse::<Position>().unwrap();
        let mut tails = Tails::new(vec![
            Some(parse("0-1-9/2", "binlog.000002:500").unwrap()),
            None,
        ]);
        assert!(tails.covers(0, &at("binlog.000002:500"), (1, 0)));
        assert!(
            !tails.covers(1, &at("binlog.000001:4"), (1, 0)),
            "an empty partition"
        );
        assert!(!tails.covers(0, &at("binlog.000002:600"), (0, 0)));
        assert!(
            !tails.covers(0, &at("binlog.000002:500"), (1, 0)),
            "once passed, the tail is gone"
        );
        assert!(
            !tails.covers(7, &at("binlog.000001:4"), (0, 0)),
            "no such partition"
        );
    }
}
