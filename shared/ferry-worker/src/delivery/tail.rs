//! What a restarted loop finds already delivered, and skips, so the topic holds every change
//! once:
//!
//! - with the checkpoint's topic offsets ([`Found`]): every record of each partition after the
//!   checkpoint, by idempotency key, compared with what the loop re-reads from the binlog — a
//!   record there is skipped, records the binlog does not give at their place are left
//!   (strays), and a record missing before the tail (a broker that lost what it acknowledged)
//!   is sent again with every record after it, so each key's changes stay in order;
//! - without them (checkpoints written before Ferry kept offsets): the last record of each
//!   partition, re-read records at or before it skipped.
//!
//! Whatever kind of record is last (a row, BEGIN, COMMIT, DDL or a heartbeat), it names the
//! position it was read at. Records written from another source server's binlog (before a
//! failover, see `capture::failover`) are compared by GTID: a re-read record is before such a
//! tail when the tail's GTID state holds its transaction; a tail of another server without GTIDs
//! is refused (positions of two servers are not comparable).

use std::collections::{HashSet, VecDeque};

use ferry_domain::backfill::is_backfill_key;
use ferry_domain::change::split_part;
use ferry_domain::gtid::GtidSet;
use ferry_domain::position::Position;
use ferry_kafka::sink::{TailHeaders, Watermarks};

use crate::error::DefiniteError;

/// The last record already in a partition when the loop started.
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) position: Position,
    /// The record's event index in its transaction and its part in the event (see
    /// `ferry_domain::change::split_part`); `(u32::MAX, u8::MAX)` for a heartbeat, which covers
    /// every event at its position.
    index: (u32, u8),
    /// Written from another server's binlog: compared by GTID, not by file and offset.
    foreign: Option<Foreign>,
}

/// A tail written from another server's binlog (the source before a failover).
#[derive(Debug)]
struct Foreign {
    /// The GTID state at the tail's position: every transaction committed before it.
    before: GtidSet,
    /// The tail's own transaction (`None` for a heartbeat, which is between transactions).
    transaction: Option<String>,
}

impl Foreign {
    /// Whether the record `key` (with `index`) read at `position` of this loop's server is at
    /// or before a tail at `tail_index` of its transaction.
    fn covers(
        &self,
        position: &Position,
        (index, tail_index): ((u32, u8), (u32, u8)),
        key: &str,
    ) -> bool {
        if key.starts_with("hb/") || is_backfill_key(key) {
            // Between transactions: before the tail when every transaction it follows is.
            return position.gtid().is_some_and(|g| *g <= self.before);
        }
        let Some((transaction, _)) = split_part(key).0.rsplit_once('/') else {
            return false;
        };
        if self.transaction.as_deref() == Some(transaction) {
            return index <= tail_index;
        }
        // A transaction id is a one-transaction set (MySQL) or a position (MariaDB): before
        // the tail when the tail's state holds it.
        transaction
            .parse::<GtidSet>()
            .is_ok_and(|g| g <= self.before)
    }
}

impl Tail {
    /// The tail from a record's headers, for a loop reading `source`'s binlog.
    pub(crate) fn parse(h: &TailHeaders, source: &str) -> Result<Self, DefiniteError> {
        let bad = || DefiniteError::TopicTail {
            key: h.key.clone(),
            position: h.position.clone(),
        };
        let position: Position = h.position.parse().map_err(|_| bad())?;
        let foreign = match &h.source {
            Some(written) if written != source => {
                // Comparable by GTID only: the tail's position must name its GTID state, and
                // its transaction a GTID.
                let refused = || DefiniteError::TopicTailSource {
                    written: written.clone(),
                    source_server: source.to_owned(),
                };
                let (transaction, flavor) = if h.key.starts_with("hb/") || is_backfill_key(&h.key) {
                    // Between transactions, like a heartbeat.
                    (None, None)
                } else {
                    let (event, _) = split_part(&h.key);
                    let (transaction, _) = event.rsplit_once('/').ok_or_else(bad)?;
                    let id = transaction.parse::<GtidSet>().map_err(|_| refused())?;
                    (Some(transaction.to_owned()), Some(id))
                };
                // A position without a GTID state in a server with GTIDs is before its first
                // transaction: the empty set.
                let before = match (position.gtid(), flavor) {
                    (Some(g), _) => g.clone(),
                    (None, Some(GtidSet::MariaDb(_))) => GtidSet::MariaDb(Default::default()),
                    (None, Some(GtidSet::Mysql(_))) => GtidSet::Mysql(Default::default()),
                    (None, None) => return Err(refused()),
                };
                Some(Foreign {
                    before,
                    transaction,
                })
            }
            _ => None,
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
            position,
            index,
            foreign,
        })
    }

    /// Whether part `index.1` of the event `key` at `position` with row `index.0` is at or
    /// before this tail. Rows of one rows event share its position and are told apart by their
    /// index; a tail of another server is compared by GTID.
    pub(crate) fn covers(&self, position: &Position, index: (u32, u8), key: &str) -> bool {
        if let Some(foreign) = &self.foreign {
            return foreign.covers(position, (index, self.index), key);
        }
        match position.cmp_file_offset(&self.position) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => index <= self.index,
            std::cmp::Ordering::Greater => false,
        }
    }
}

/// Where the tails a restarted loop found are: the last of this server's positions, and the
/// GTID states the loop must hold to be past the tails of another server's.
#[derive(Debug, Clone, Default)]
pub(crate) struct TailMarks {
    position: Option<Position>,
    gtid: Vec<GtidSet>,
}

impl TailMarks {
    /// Whether the transaction boundary `at` is past every tail.
    pub(crate) fn passed(&self, at: &Position) -> bool {
        let by_position = self
            .position
            .as_ref()
            .is_none_or(|p| at.cmp_file_offset(p).is_gt());
        let by_gtid =
            self.gtid.is_empty() || at.gtid().is_some_and(|g| self.gtid.iter().all(|m| m <= g));
        by_position && by_gtid
    }
}

/// The records of one partition after the checkpoint, as a restarted loop found them: the
/// offset and key hash of each, in topic order, and the last one's tail.
#[derive(Debug)]
pub(crate) struct Found {
    records: VecDeque<HeldRecord>,
    tail: Tail,
    /// The key hashes of the backfilled rows among them.
    backfilled: HashSet<u64>,
    /// Backfilled rows among them held more than once.
    backfill_repeats: usize,
}

/// One record a partition held.
#[derive(Debug)]
pub(crate) struct HeldRecord {
    offset: i64,
    hash: u64,
    heartbeat: bool,
    /// A backfilled row (see `ferry_domain::backfill`): matched by key alone, outside the
    /// binlog's order.
    backfill: bool,
}

impl Found {
    /// A partition's records from `offset`, read in topic order: how each is held
    /// ([`Found::record`]) and the last one's headers (its tail); `None` for none.
    pub(crate) fn new(
        (records, last): (Vec<HeldRecord>, Option<TailHeaders>),
        source: &str,
    ) -> Result<Option<Self>, DefiniteError> {
        let Some(last) = last else {
            return Ok(None);
        };
        let (backfilled, records): (Vec<HeldRecord>, Vec<HeldRecord>) =
            records.into_iter().partition(|r| r.backfill);
        let count = backfilled.len();
        let backfilled: HashSet<u64> = backfilled.into_iter().map(|r| r.hash).collect();
        Ok(Some(Self {
            records: records.into(),
            tail: Tail::parse(&last, source)?,
            // A backfilled row the topic holds twice (the broker doubled a request): a stray.
            backfill_repeats: count - backfilled.len(),
            backfilled,
        }))
    }

    /// How a record read at `offset` is held: its key hashed, not kept.
    pub(crate) fn record(offset: i64, h: &TailHeaders) -> HeldRecord {
        HeldRecord {
            offset,
            hash: key_hash(&h.key),
            heartbeat: h.key.starts_with("hb/"),
            backfill: is_backfill_key(&h.key),
        }
    }
}

/// A 64-bit hash of an idempotency key: what the reconciliation compares (a restart may hold
/// a million keys; two different keys of one partition's unconfirmed range colliding is a
/// 2^-64 chance per comparison).
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a partition held when the loop started, past the checkpoint.
#[derive(Debug)]
enum Held {
    /// Every record after the checkpoint, read from the offsets the checkpoint names: a
    /// re-read record is skipped only if the topic holds it, in the order the binlog gives.
    Records(Found),
    /// Only the last record (a checkpoint without offsets, written before Ferry kept them, or
    /// one whose records the topic's retention deleted): everything up to it is taken as there.
    Tail(Tail),
}

/// A partition as a restarted loop found it: its records after the checkpoint (`Ok`) or its
/// last record (`Err`), and the offset its records after the checkpoint start at (`None`:
/// unknown).
pub(crate) type PartitionFound = (Result<Option<Found>, Option<Tail>>, Option<i64>);

/// Whether a re-read record is already in the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Already {
    /// Not there: send it.
    No,
    /// There, at this offset (`None`: on the tail's word, offset unknown).
    There(Option<i64>),
    /// A heartbeat the previous loop did not write: not sent, its position is covered by the
    /// records around it.
    Dropped,
    /// A backfilled row the topic holds somewhere after the checkpoint, out of the binlog's
    /// order: not sent, and no offset is known from it.
    Elsewhere,
}

/// What a restarted loop must know when the topic and the binlog disagree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repairs {
    /// Records in the topic that the binlog does not give at their place (written twice by
    /// the broker, or by a loop with another selection): left there, counted.
    pub(crate) strays: u64,
    /// Records the binlog gives that the topic lacks (acknowledged and lost by the broker):
    /// sent again, with every record after them, so each key's changes stay in order.
    pub(crate) missing: u64,
    /// Records after a missing one, sent again to keep the order: duplicates in the topic.
    pub(crate) resent: u64,
}

impl Repairs {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    #[cfg(test)]
    fn add(&mut self, other: &Self) {
        self.strays += other.strays;
        self.missing += other.missing;
        self.resent += other.resent;
    }

    fn stray(&mut self, partition: usize, strays: usize) {
        if strays > 0 {
            self.strays += strays as u64;
            tracing::warn!(
                partition,
                strays,
                "the topic holds records the binlog does not give at their place (written twice by the broker, or under another selection): left in place"
            );
        }
    }
}

/// What a topic's partitions held when the loop started, each dropped once the loop passed it.
#[derive(Debug, Default)]
pub(crate) struct Tails {
    held: Vec<Option<Held>>,
    /// Per partition, the offset the records after the checkpoint start at (`None`: unknown).
    start: Vec<Option<i64>>,
    /// Per partition, the offset the loop's first record must land at: the high watermark.
    high: Vec<i64>,
    /// Per partition, what the reconciliation found while it lasts.
    repairs: Vec<Repairs>,
    /// Partitions whose reconciliation ended with something found, to report.
    found: Vec<(usize, Repairs)>,
    /// Per partition, the backfilled rows the topic holds after the checkpoint, by key hash:
    /// kept after the loop passed the partition's tail, as a chunk read again writes its rows
    /// later in the stream.
    backfilled: Vec<HashSet<u64>>,
}

impl Tails {
    /// Partitions known by their last record only (tests).
    #[cfg(test)]
    pub(crate) fn new(tails: Vec<Option<Tail>>) -> Self {
        Self {
            repairs: vec![Repairs::default(); tails.len()],
            held: tails.into_iter().map(|t| t.map(Held::Tail)).collect(),
            ..Self::default()
        }
    }

    /// Partitions known record by record (`Ok`) or by their last record (`Err`), with the
    /// offset their records after the checkpoint start at, and their watermarks.
    pub(crate) fn reconciling(partitions: Vec<PartitionFound>, marks: &[Watermarks]) -> Self {
        let mut backfilled = Vec::with_capacity(partitions.len());
        let (held, start): (Vec<Option<Held>>, Vec<Option<i64>>) = partitions
            .into_iter()
            .map(|(p, start)| {
                let held = match p {
                    Ok(mut found) => {
                        backfilled.push(
                            found
                                .as_mut()
                                .map(|f| std::mem::take(&mut f.backfilled))
                                .unwrap_or_default(),
                        );
                        found.map(Held::Records)
                    }
                    Err(tail) => {
                        backfilled.push(HashSet::new());
                        tail.map(Held::Tail)
                    }
                };
                (held, start)
            })
            .unzip();
        let mut repairs = vec![Repairs::default(); marks.len()];
        for (partition, (slot, r)) in held.iter().zip(repairs.iter_mut()).enumerate() {
            if let Some(Held::Records(found)) = slot {
                r.stray(partition, found.backfill_repeats);
            }
        }
        Self {
            held,
            start,
            high: marks.iter().map(|w| w.high).collect(),
            repairs,
            found: Vec::new(),
            backfilled,
        }
    }

    /// Per partition, where the records after the checkpoint start (`None`: unknown).
    pub(crate) fn start_offsets(&self) -> Vec<Option<i64>> {
        self.start.clone()
    }

    /// Per partition, the offset the loop's first record must land at.
    pub(crate) fn high_watermarks(&self) -> Vec<i64> {
        self.high.clone()
    }

    /// Whether record `key` at `position` with `index` (see [`Tail::covers`]), going to
    /// `partition`, is already there.
    pub(crate) fn covers(
        &mut self,
        partition: usize,
        position: &Position,
        index: (u32, u8),
        key: &str,
    ) -> Already {
        if is_backfill_key(key) {
            // A backfilled row: in the topic or not, by its key alone (a chunk read again after
            // a restart writes its rows at another place in the stream).
            let there = self
                .backfilled
                .get_mut(partition)
                .is_some_and(|keys| keys.remove(&key_hash(key)));
            return if there {
                Already::Elsewhere
            } else {
                Already::No
            };
        }
        let (Some(slot), Some(repairs)) = (
            self.held.get_mut(partition),
            self.repairs.get_mut(partition),
        ) else {
            return Already::No;
        };
        let answer = match slot {
            None => return Already::No,
            Some(Held::Tail(tail)) => {
                if tail.covers(position, index, key) {
                    return Already::There(None);
                }
                Already::No
            }
            Some(Held::Records(found)) => {
                let hash = key_hash(key);
                if let Some(at) = found.records.iter().position(|r| r.hash == hash) {
                    // Records before it that the binlog did not give here: strays.
                    let strays = found.records.drain(..at).filter(|r| !r.heartbeat).count();
                    repairs.stray(partition, strays);
                    let offset = found.records.pop_front().map(|r| r.offset);
                    if !found.records.is_empty() {
                        return Already::There(offset);
                    }
                    // The last record the partition held: the loop is past it now.
                    Already::There(offset)
                } else if !found.tail.covers(position, index, key) {
                    // Past the last record the partition held: what is left was not given
                    // by the binlog at all.
                    let strays = found.records.iter().filter(|r| !r.heartbeat).count();
                    repairs.stray(partition, strays);
                    Already::No
                } else if key.starts_with("hb/") {
                    return Already::Dropped;
                } else {
                    let after = found.records.len() as u64;
                    repairs.missing += 1;
                    repairs.resent += after;
                    tracing::warn!(
                        partition,
                        key,
                        position = %position,
                        "the topic lacks a record before its tail (the broker acknowledged it and lost it): sending it again, with the {after} records after it, in order"
                    );
                    Already::No
                }
            }
        };
        // Past what the partition held: every later record of it is new.
        *slot = None;
        if !repairs.is_empty() {
            self.found.push((partition, std::mem::take(repairs)));
        }
        answer
    }

    /// The partitions whose reconciliation ended since the last call with something found.
    pub(crate) fn take_found(&mut self) -> Vec<(usize, Repairs)> {
        std::mem::take(&mut self.found)
    }

    /// Where the tails are (a reselection switches only past them, see `capture`).
    pub(crate) fn marks(&self) -> TailMarks {
        let mut marks = TailMarks::default();
        for tail in self.held.iter().flatten().map(|h| match h {
            Held::Tail(t) | Held::Records(Found { tail: t, .. }) => t,
        }) {
            match &tail.foreign {
                None => {
                    if marks
                        .position
                        .as_ref()
                        .is_none_or(|m| m.cmp_file_offset(&tail.position).is_lt())
                    {
                        marks.position = Some(tail.position.clone());
                    }
                }
                Some(f) => {
                    marks.gtid.push(f.before.clone());
                    if let Some(t) = f.transaction.as_deref().and_then(|t| t.parse().ok()) {
                        marks.gtid.push(t);
                    }
                }
            }
        }
        marks
    }

    /// What the reconciliation found so far, in all partitions.
    #[cfg(test)]
    fn repairs(&self) -> Repairs {
        let mut all = Repairs::default();
        for r in self.repairs.iter().chain(self.found.iter().map(|(_, r)| r)) {
            all.add(r);
        }
        all
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
            tail.covers(&at("binlog.000001:900"), (7, 0), ""),
            "an earlier file"
        );
        assert!(
            tail.covers(&at("binlog.000002:400"), (9, 0), ""),
            "an earlier event"
        );
        assert!(
            tail.covers(&at("binlog.000002:500"), (2, 0), ""),
            "the tail itself"
        );
        assert!(
            !tail.covers(&at("binlog.000002:500"), (3, 0), ""),
            "a later row of the same event"
        );
        assert!(!tail.covers(&at("binlog.000002:501"), (1, 0), ""));
        assert!(parse("no-index", "binlog.000002:500").is_err());
        assert!(parse("no-index#1", "binlog.000002:500").is_err());
        assert!(parse("x/1", "not a position").is_err());
    }

    #[test]
    fn the_parts_of_one_event_are_told_apart() {
        // A delete (part 0) landed, its tombstone (part 1) did not.
        let at = |p: &str| p.parse::<Position>().unwrap();
        let tail = parse("0-1-9/2", "binlog.000002:500").unwrap();
        assert!(tail.covers(&at("binlog.000002:500"), (2, 0), ""));
        assert!(
            !tail.covers(&at("binlog.000002:500"), (2, 1), ""),
            "the tombstone is sent"
        );
        let tail = parse("0-1-9/2#1", "binlog.000002:500").unwrap();
        assert!(tail.covers(&at("binlog.000002:500"), (2, 1), ""));
        assert!(!tail.covers(&at("binlog.000002:500"), (2, 2), ""));
        assert!(!tail.covers(&at("binlog.000002:500"), (3, 0), ""));
    }

    #[test]
    fn a_heartbeat_tail_covers_everything_up_to_its_position() {
        let tail = parse("hb/binlog.000002:500@0-1-9", "binlog.000002:500@0-1-9").unwrap();
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(
            tail.covers(&at("binlog.000002:500"), (0, 0), ""),
            "a heartbeat again"
        );
        assert!(
            tail.covers(&at("binlog.000002:500"), (7, 0), ""),
            "the commit before it"
        );
        assert!(tail.covers(&at("binlog.000001:900"), (3, 0), ""));
        assert!(
            !tail.covers(&at("binlog.000002:501"), (0, 0), ""),
            "the next event"
        );
    }

    #[test]
    fn a_tail_from_another_server_without_gtids_is_refused() {
        // A server without GTIDs: its transactions are named by position.
        let h = headers(
            "binlog.000002:400/2",
            "binlog.000002:500",
            Some("server_id:1"),
        );
        let Err(e) = Tail::parse(&h, "server_id:2") else {
            panic!("a tail of server 1 read by a loop on server 2")
        };
        assert_eq!(e.code(), "topic_tail_source");
        // Records written before Ferry named their source are trusted.
        let old = headers("0-1-9/2", "binlog.000002:500", None);
        assert!(Tail::parse(&old, "server_id:2").is_ok());
    }

    #[test]
    fn a_tail_of_the_server_before_a_failover_is_compared_by_gtid() {
        // Written from server 1's binlog: row 2 of transaction 0-1-10, after 0-1-9.
        let h = headers("0-1-10/2", "binlog.000007:9000@0-1-9", Some("server_id:1"));
        let tail = Tail::parse(&h, "server_id:2").unwrap();
        // The same transactions in server 2's binlog, at other files and offsets.
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(tail.covers(&at("binlog.000002:300@0-1-8"), (4, 0), "0-1-9/4"));
        assert!(tail.covers(&at("binlog.000002:700@0-1-9"), (1, 0), "0-1-10/1"));
        assert!(tail.covers(&at("binlog.000002:700@0-1-9"), (2, 0), "0-1-10/2"));
        assert!(
            !tail.covers(&at("binlog.000002:700@0-1-9"), (2, 1), "0-1-10/2#1"),
            "a part after the tail"
        );
        assert!(!tail.covers(&at("binlog.000002:700@0-1-9"), (3, 0), "0-1-10/3"));
        assert!(!tail.covers(&at("binlog.000001:4@0-1-10"), (0, 0), "0-1-11/0"));
        // The new primary's own transaction with the sequence the lost one had: not before.
        assert!(!tail.covers(&at("binlog.000002:900@0-1-10"), (0, 0), "0-2-11/0"));
        // Heartbeats: before the tail's transaction, or after it.
        assert!(tail.covers(
            &at("binlog.000002:650@0-1-9"),
            (u32::MAX, u8::MAX),
            "hb/binlog.000002:650@0-1-9"
        ));
        assert!(!tail.covers(
            &at("binlog.000002:990@0-1-10"),
            (u32::MAX, u8::MAX),
            "hb/binlog.000002:990@0-1-10"
        ));

        // A heartbeat tail covers every transaction its state holds.
        let hb = headers(
            "hb/binlog.000007:9100@0-1-10",
            "binlog.000007:9100@0-1-10",
            Some("server_id:1"),
        );
        let tail = Tail::parse(&hb, "server_id:2").unwrap();
        assert!(tail.covers(&at("binlog.000002:700@0-1-9"), (3, 0), "0-1-10/3"));
        assert!(!tail.covers(&at("binlog.000002:990@0-1-10"), (0, 0), "0-1-11/0"));

        // MySQL: a transaction is before the tail when the tail's set holds it.
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let h = headers(
            &format!("{uuid}:8/0"),
            &format!("binlog.000003:400@{uuid}:1-7"),
            Some(uuid),
        );
        let tail = Tail::parse(&h, "4e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        assert!(tail.covers(
            &at(&format!("binlog.000009:4@{uuid}:1-6")),
            (0, 0),
            &format!("{uuid}:7/0")
        ));
        assert!(!tail.covers(
            &at(&format!("binlog.000009:4@{uuid}:1-8")),
            (0, 0),
            &format!("{uuid}:9/0")
        ));

        // Without a GTID state, a heartbeat or a position-keyed record has nothing to compare:
        // refused; a GTID-keyed record there is in its server's first transaction.
        let bare = headers(
            "hb/binlog.000007:9000",
            "binlog.000007:9000",
            Some("server_id:1"),
        );
        assert_eq!(
            Tail::parse(&bare, "server_id:2").unwrap_err().code(),
            "topic_tail_source"
        );
        let first = headers("0-1-1/2", "binlog.000001:900", Some("server_id:1"));
        let tail = Tail::parse(&first, "server_id:2").unwrap();
        assert!(tail.covers(&at("binlog.000002:300"), (1, 0), "0-1-1/1"));
        assert!(!tail.covers(&at("binlog.000002:300@0-1-1"), (0, 0), "0-1-2/0"));
        let by_position = headers(
            "binlog.000007:8000/2",
            "binlog.000007:9000@0-1-9",
            Some("server_id:1"),
        );
        assert_eq!(
            Tail::parse(&by_position, "server_id:2").unwrap_err().code(),
            "topic_tail_source"
        );
    }

    /// `shared/fixtures/mysql-binlogs` of the workplace (`FERRY_FIXTURES`, or beside a parent
    /// of this crate), as `ferry-mysql`'s fixture tests find it.
    fn mysql_fixture(name: &str) -> std::path::PathBuf {
        if let Ok(dir) = std::env::var("FERRY_FIXTURES") {
            return std::path::PathBuf::from(dir)
                .join("mysql-binlogs")
                .join(name);
        }
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/fixtures/mysql-binlogs"))
            .find(|p| p.is_dir())
            .expect(
                "the MySQL binlog fixtures are beside a parent of this crate; set FERRY_FIXTURES",
            )
            .join(name)
    }

    /// MySQL's own binlogs (every fixture with GTID transactions of rows: tags and no tags):
    /// every row record, written from another server's binlog before a failover, is a tail
    /// that covers exactly the rows before it and itself, compared by the GTID states the
    /// reader gives.
    #[test]
    fn mysql_binlogs_order_by_gtid_as_by_position() {
        use ferry_mysql::binlog::SourceEvent;
        let dir = mysql_fixture("");
        let (mut files, mut compared) = (Vec::new(), 0);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Ok(events) = ferry_mysql::file::read_file(&path) else {
                continue; // refused files: mysql_fixtures.rs checks why
            };
            let mut rows: Vec<(Position, String)> = Vec::new();
            let (mut transaction, mut index) = (None::<String>, 0u32);
            for e in &events {
                match &e.event {
                    SourceEvent::Begin { gtid } => (transaction, index) = (gtid.clone(), 0),
                    SourceEvent::Rows(r) => {
                        for _ in r.iter() {
                            if let Some(t) = &transaction {
                                rows.push((e.position.clone(), format!("{t}/{index}")));
                            }
                            index += 1;
                        }
                    }
                    _ => {}
                }
            }
            rows.truncate(200);
            if rows.is_empty() {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for (i, (position, key)) in rows.iter().enumerate() {
                let h = headers(key, &position.to_string(), Some("old-server"));
                let tail = Tail::parse(&h, "new-server").unwrap();
                for (j, (p, k)) in rows.iter().enumerate() {
                    let (event, part) = split_part(k);
                    let idx: u32 = event.rsplit_once('/').unwrap().1.parse().unwrap();
                    assert_eq!(
                        tail.covers(p, (idx, part), k),
                        j <= i,
                        "{name}: tail {key} at {position}, record {k} at {p}"
                    );
                    compared += 1;
                }
            }
            files.push(name);
        }
        assert!(
            files.iter().any(|f| f.contains("GTID_TAG")) && files.len() >= 2,
            "MySQL fixtures with GTID rows: {files:?}"
        );
        assert!(compared >= 4, "{compared} comparisons");
    }

    #[test]
    fn a_switch_waits_for_the_loop_to_pass_every_tail() {
        let at = |p: &str| p.parse::<Position>().unwrap();
        let same = Tail::parse(
            &headers("0-2-3/0", "binlog.000002:500@0-2-2", Some("s2")),
            "s2",
        )
        .unwrap();
        let foreign = Tail::parse(
            &headers("0-1-10/2", "binlog.000007:9000@0-1-9", Some("s1")),
            "s2",
        )
        .unwrap();
        let tails = Tails::new(vec![Some(same), Some(foreign)]);
        let marks = tails.marks();
        assert!(
            !marks.passed(&at("binlog.000002:400@0-1-10")),
            "before this server's tail"
        );
        assert!(
            !marks.passed(&at("binlog.000002:600@0-1-9")),
            "before the other server's transaction ends"
        );
        assert!(marks.passed(&at("binlog.000002:600@0-1-10")));
        assert!(Tails::default().marks().passed(&at("binlog.000001:4")));
    }

    #[test]
    fn a_partition_past_its_tail_stops_checking() {
        let at = |p: &str| p.parse::<Position>().unwrap();
        let mut tails = Tails::new(vec![
            Some(parse("0-1-9/2", "binlog.000002:500").unwrap()),
            None,
        ]);
        let there = Already::There(None);
        assert_eq!(
            tails.covers(0, &at("binlog.000002:500"), (1, 0), "k"),
            there
        );
        assert_eq!(
            tails.covers(1, &at("binlog.000001:4"), (1, 0), "k"),
            Already::No,
            "an empty partition"
        );
        assert_eq!(
            tails.covers(0, &at("binlog.000002:600"), (0, 0), "k"),
            Already::No
        );
        assert_eq!(
            tails.covers(0, &at("binlog.000002:500"), (1, 0), "k"),
            Already::No,
            "once passed, the tail is gone"
        );
        assert_eq!(
            tails.covers(7, &at("binlog.000001:4"), (0, 0), "k"),
            Already::No,
            "no such partition"
        );
    }

    /// A partition that held `records` (key, position) from offset 100.
    fn holding(records: &[(&str, &str)]) -> Tails {
        let read = records
            .iter()
            .enumerate()
            .map(|(i, (k, p))| {
                let h = headers(k, p, Some("server_id:1"));
                (Found::record(100 + i as i64, &h), h)
            })
            .collect::<Vec<_>>();
        let high = 100 + read.len() as i64;
        let last = read.last().map(|(_, h)| h.clone());
        let records = read.into_iter().map(|(r, _)| r).collect();
        let found = Found::new((records, last), "server_id:1").unwrap();
        Tails::reconciling(vec![(Ok(found), Some(100))], &[Watermarks { low: 0, high }])
    }

    /// The binlog's records, in order, and whether each is already there.
    fn replay(tails: &mut Tails, records: &[(&str, &str)]) -> Vec<Already> {
        records
            .iter()
            .map(|(k, p)| {
                let index = k
                    .rsplit_once('/')
                    .and_then(|(_, i)| i.parse().ok())
                    .unwrap_or(u32::MAX);
                tails.covers(0, &p.parse().unwrap(), (index, 0), k)
            })
            .collect()
    }

    const A: (&str, &str) = ("g-1/0", "binlog.000001:100");
    const B: (&str, &str) = ("g-2/0", "binlog.000001:200");
    const C: (&str, &str) = ("g-3/0", "binlog.000001:300");
    const D: (&str, &str) = ("g-4/0", "binlog.000001:400");

    #[test]
    fn what_the_topic_holds_after_the_checkpoint_is_skipped_record_by_record() {
        let mut tails = holding(&[A, B, C]);
        assert_eq!(tails.start_offsets(), [Some(100)]);
        assert_eq!(tails.high_watermarks(), [103]);
        assert_eq!(
            replay(&mut tails, &[A, B, C, D]),
            [
                Already::There(Some(100)),
                Already::There(Some(101)),
                Already::There(Some(102)),
                Already::No
            ]
        );
        assert_eq!(tails.repairs(), Repairs::default());
    }

    #[test]
    fn backfilled_rows_are_matched_by_key_wherever_they_come_again() {
        // A chunk's rows X and Y were written after B; the loop restarted before the chunk
        // was marked done, reads it again and writes it later, after C, with a new row Z.
        const X: (&str, &str) = ("bf/bf_1/shop.t/01/0", "binlog.000001:200");
        const Y: (&str, &str) = ("bf/bf_1/shop.t/02/0", "binlog.000001:200");
        const Z: (&str, &str) = ("bf/bf_1/shop.t/03/0", "binlog.000001:300");
        let mut tails = holding(&[A, B, X, Y, C]);
        assert_eq!(
            replay(&mut tails, &[A, B, C, X, Y, Z, D]),
            [
                Already::There(Some(100)),
                Already::There(Some(101)),
                Already::There(Some(104)),
                Already::Elsewhere,
                Already::Elsewhere,
                Already::No,
                Already::No,
            ]
        );
        assert_eq!(
            tails.repairs(),
            Repairs::default(),
            "nothing stray or missing"
        );
        // A backfilled row the broker doubled: one stray, the row itself there.
        let mut tails = holding(&[A, X, X, C]);
        assert_eq!(
            replay(&mut tails, &[A, C, X]),
            [
                Already::There(Some(100)),
                Already::There(Some(103)),
                Already::Elsewhere
            ]
        );
        assert_eq!(tails.repairs().strays, 1, "{:?}", tails.repairs());
        // A backfilled row as the tail of a partition.
        let mut tails = holding(&[A, X]);
        assert_eq!(
            replay(&mut tails, &[A, B, X]),
            [Already::There(Some(100)), Already::No, Already::Elsewhere]
        );
    }

    #[test]
    fn a_record_the_broker_lost_is_sent_again_with_everything_after_it() {
        // B was acknowledged and lost: the topic holds A, C.
        let mut tails = holding(&[A, C]);
        assert_eq!(
            replay(&mut tails, &[A, B, C, D]),
            [
                Already::There(Some(100)),
                Already::No,
                Already::No,
                Already::No
            ],
            "C again after B: each key's changes stay in order"
        );
        assert_eq!(
            tails.repairs(),
            Repairs {
                strays: 0,
                missing: 1,
                resent: 1
            }
        );
    }

    #[test]
    fn records_written_twice_are_left_and_not_written_again() {
        // A stalled request of the previous loop landed late: B, C twice.
        let mut tails = holding(&[A, B, C, B, C]);
        assert_eq!(
            replay(&mut tails, &[A, B, C, D]),
            [
                Already::There(Some(100)),
                Already::There(Some(101)),
                Already::There(Some(102)),
                Already::No
            ]
        );
        assert_eq!(tails.repairs().strays, 2);
        assert_eq!(tails.repairs().missing, 0);
        // Doubled in the middle: A, B, A, B, C.
        let mut tails = holding(&[A, B, A, B, C]);
        assert_eq!(
            replay(&mut tails, &[A, B, C]),
            [
                Already::There(Some(100)),
                Already::There(Some(101)),
                Already::There(Some(104))
            ]
        );
        assert_eq!(tails.repairs().strays, 2);
    }

    #[test]
    fn heartbeats_are_neither_strays_nor_missing() {
        let hb1 = ("hb/binlog.000001:150", "binlog.000001:150");
        let hb2 = ("hb/binlog.000001:160", "binlog.000001:160");
        let hb3 = ("hb/binlog.000001:250", "binlog.000001:250");
        let mut tails = holding(&[A, hb1, B, hb3]);
        assert_eq!(
            replay(&mut tails, &[A, hb2, B, C]),
            [
                Already::There(Some(100)),
                Already::Dropped,
                Already::There(Some(102)),
                Already::No
            ],
            "a heartbeat the topic lacks is not written in the middle of what it holds"
        );
        assert_eq!(tails.repairs(), Repairs::default());
    }

    #[test]
    fn a_partition_that_held_nothing_after_the_checkpoint_starts_there() {
        let marks = [
            Watermarks { low: 0, high: 40 },
            Watermarks { low: 0, high: 0 },
        ];
        let mut tails = Tails::reconciling(vec![(Ok(None), Some(40)), (Ok(None), Some(0))], &marks);
        assert_eq!(tails.start_offsets(), [Some(40), Some(0)]);
        assert_eq!(tails.high_watermarks(), [40, 0]);
        assert_eq!(replay(&mut tails, &[A]), [Already::No]);
    }
}
