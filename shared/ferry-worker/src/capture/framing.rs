//! Transaction framing: which records a binlog event becomes, in order, with their
//! transaction id, event index and place in the stream. Pure: no I/O, no clock.
//!
//! # Rules
//!
//! - Every row of a transaction counts toward its event indexes, carried or not, so a record's
//!   index (and idempotency key `{transaction}/{index}`) does not depend on the selection.
//! - BEGIN is written (when the task asks for transaction records) just before the first
//!   carried row of a transaction, and COMMIT only after a BEGIN was written: a transaction
//!   that carries nothing leaves no records.
//! - A DDL statement is a transaction of its own, identified by its position.
//! - A heartbeat record (when asked for) is written only between transactions.
//! - `order` numbers the carried rows and DDL statements of the stream since the loop started
//!   (debezium's `total_order`, canal's `id`); a COMMIT record carries the number of rows its
//!   transaction carried.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_domain::change::{ChangeEvent, ChangeKind, TransactionRef};
use ferry_domain::position::Position;
use ferry_domain::selection::ColumnMask;
use ferry_mysql::binlog::{ReadEvent, SourceEvent};

/// A record to produce: the event, its order in the stream, and the columns a row carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Framed {
    pub(crate) event: ChangeEvent,
    pub(crate) order: u64,
    pub(crate) columns: ColumnMask,
}

/// What the loop does after an event's records are produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// Inside a transaction: nothing to checkpoint yet.
    None,
    /// A transaction (or a DDL statement) ended here: a checkpoint may be written at it once
    /// every record before it is acknowledged.
    Commit(Position, DateTime<Utc>),
    /// The source is idle (a heartbeat): whatever is settled is checkpointed now.
    Idle,
}

/// The framing state of one loop.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    /// Write BEGIN and COMMIT records.
    transaction_records: bool,
    /// Write heartbeat records.
    heartbeat_records: bool,
    /// The open transaction's id (its GTID, or the position of its BEGIN), shared by its
    /// records.
    txid: Arc<str>,
    /// Rows of the open transaction so far, carried or not.
    index: u32,
    /// Records numbered so far (see the module documentation).
    order: u64,
    in_transaction: bool,
    /// The BEGIN record, until the transaction's first carried row needs it.
    pending_begin: Option<ChangeEvent>,
    begin_written: bool,
    /// Rows of the open transaction carried.
    carried: u64,
    /// The open transaction's latest carried row, held until the next one or the commit
    /// says whether it is the last.
    held: Option<Framed>,
}

impl Framing {
    pub(crate) fn new(transaction_records: bool, heartbeat_records: bool) -> Self {
        Self {
            transaction_records,
            heartbeat_records,
            ..Self::default()
        }
    }

    /// Whether a transaction is open: the loop stops, checkpoints and switches selections only
    /// between transactions.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn in_tx(&self, index: u32) -> Option<TransactionRef> {
        Some(TransactionRef {
            id: Arc::clone(&self.txid),
            event_index: index,
            carried_index: 0,
            last: false,
            event_row: 0,
        })
    }

    /// Frames one event: appends its records to `out`, and says whether a boundary follows.
    /// `deliver_ddl` says whether a DDL event is delivered (the loop decides it from the
    /// statement's subject and the selection); it is ignored for other events.
    pub(crate) fn on_event(
        &mut self,
        e: ReadEvent,
        deliver_ddl: bool,
        out: &mut Vec<Framed>,
    ) -> Boundary {
        let ReadEvent {
            position,
            event_offset,
            server_id,
            timestamp,
            event,
            ..
        } = e;
        // One binlog event's records share its position.
        let position = Arc::new(position);
        let at = |position: &Arc<Position>, transaction, kind| ChangeEvent {
            position: Arc::clone(position),
            event_offset,
            server_id,
            timestamp,
            transaction,
            kind,
        };
        match event {
            SourceEvent::Begin { gtid } => {
                // A transaction that never committed in the stream (cut off by a restart)
                // leaves nothing held into the next.
                self.held = None;
                self.txid = gtid.map_or_else(|| position.to_string().into(), Into::into);
                self.index = 0;
                self.in_transaction = true;
                self.begin_written = false;
                self.carried = 0;
                self.pending_begin = self
                    .transaction_records
                    .then(|| at(&position, self.in_tx(0), ChangeKind::Begin));
                Boundary::None
            }
            SourceEvent::Rows(rows) => {
                let Some(carried) = rows.carried else {
                    self.index = self.index.saturating_add(rows.count);
                    return Boundary::None;
                };
                for (event_row, change) in rows.changes.into_iter().enumerate() {
                    self.index = self.index.saturating_add(1);
                    // Outside the row filter: not delivered, but counted like every row.
                    let Some(change) = carried.admit(change) else {
                        continue;
                    };
                    if let Some(begin) = self.pending_begin.take() {
                        out.push(Framed {
                            event: begin,
                            order: self.order,
                            columns: ColumnMask::All,
                        });
                        self.begin_written = true;
                    }
                    let mut transaction = self.in_tx(self.index);
                    if let Some(t) = &mut transaction {
                        t.carried_index = u32::try_from(self.carried).unwrap_or(u32::MAX);
                        t.event_row = u32::try_from(event_row).unwrap_or(u32::MAX);
                    }
                    self.carried += 1;
                    self.order += 1;
                    let row = Framed {
                        event: at(&position, transaction, ChangeKind::Row(change)),
                        order: self.order,
                        columns: carried.columns().clone(),
                    };
                    out.extend(self.held.replace(row));
                }
                Boundary::None
            }
            SourceEvent::Ddl {
                database,
                statement,
                ..
            } => {
                if deliver_ddl {
                    self.order += 1;
                    let id = Some(TransactionRef {
                        id: position.to_string().into(),
                        event_index: 0,
                        carried_index: 0,
                        last: false,
                        event_row: 0,
                    });
                    out.push(Framed {
                        event: at(
                            &position,
                            id,
                            ChangeKind::Ddl {
                                database,
                                statement,
                            },
                        ),
                        order: self.order,
                        columns: ColumnMask::All,
                    });
                }
                Boundary::Commit(Arc::unwrap_or_clone(position), timestamp)
            }
            SourceEvent::Commit { xid } => {
                self.in_transaction = false;
                self.pending_begin = None;
                if let Some(mut last) = self.held.take() {
                    if let Some(t) = &mut last.event.transaction {
                        t.last = true;
                    }
                    out.push(last);
                }
                if std::mem::take(&mut self.begin_written) {
                    let index = self.index.saturating_add(1);
                    out.push(Framed {
                        event: at(&position, self.in_tx(index), ChangeKind::Commit { xid }),
                        order: self.carried,
                        columns: ColumnMask::All,
                    });
                }
                Boundary::Commit(Arc::unwrap_or_clone(position), timestamp)
            }
            SourceEvent::Heartbeat => {
                if self.heartbeat_records && !self.in_transaction {
                    out.push(Framed {
                        event: at(&position, None, ChangeKind::Heartbeat),
                        order: self.order,
                        columns: ColumnMask::All,
                    });
                }
                Boundary::Idle
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_domain::change::{Column, ObjectName, RowChange, TableSchema};
    use ferry_domain::selection::PreparedTable;
    use ferry_domain::value::Value;
    use ferry_mysql::binlog::RowsEvent;

    use super::*;

    fn read(offset: u64, event: SourceEvent) -> ReadEvent {
        ReadEvent {
            position: format!("binlog.000001:{offset}").parse().unwrap(),
            event_offset: offset - 40,
            group_start: offset - 40,
            server_id: 1,
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            event,
        }
    }

    fn rows(n: i64, carried: bool) -> SourceEvent {
        let table = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![Column {
                    name: "id".into(),
                    source_type: "int".into(),
                    nullable: false,
                }],
                vec![0],
            )
            .unwrap(),
        );
        SourceEvent::Rows(RowsEvent {
            changes: if carried {
                (0..n)
                    .map(|i| RowChange::insert(Arc::clone(&table), vec![Value::Int(i)]).unwrap())
                    .collect()
            } else {
                Vec::new()
            },
            count: u32::try_from(n).unwrap(),
            carried: carried.then(|| Arc::new(PreparedTable::everything())),
        })
    }

    fn begin() -> SourceEvent {
        SourceEvent::Begin {
            gtid: Some("0-1-7".into()),
        }
    }

    fn commit() -> SourceEvent {
        SourceEvent::Commit { xid: Some(9) }
    }

    /// (kind, idempotency key, order) of each record.
    fn summary(out: &[Framed]) -> Vec<(&'static str, String, u64)> {
        out.iter()
            .map(|f| {
                let kind = match f.event.kind {
                    ChangeKind::Begin => "begin",
                    ChangeKind::Row(_) => "row",
                    ChangeKind::Ddl { .. } => "ddl",
                    ChangeKind::Commit { .. } => "commit",
                    ChangeKind::Heartbeat => "heartbeat",
                };
                (kind, f.event.idempotency_key(), f.order)
            })
            .collect()
    }

    #[test]
    fn a_transaction_is_framed_by_begin_and_commit_around_its_carried_rows() {
        let mut f = Framing::new(true, false);
        let mut out = Vec::new();
        assert_eq!(
            f.on_event(read(100, begin()), false, &mut out),
            Boundary::None
        );
        assert!(f.in_transaction());
        assert!(out.is_empty(), "BEGIN waits for a carried row");
        f.on_event(read(200, rows(2, false)), false, &mut out);
        f.on_event(read(300, rows(2, true)), false, &mut out);
        let end = f.on_event(read(400, commit()), false, &mut out);
        assert_eq!(
            end,
            Boundary::Commit(
                "binlog.000001:400".parse().unwrap(),
                DateTime::from_timestamp(1_700_000_000, 0).unwrap()
            )
        );
        assert!(!f.in_transaction());
        assert_eq!(
            summary(&out),
            [
                ("begin", "0-1-7/0".to_owned(), 0),
                ("row", "0-1-7/3".to_owned(), 1),
                ("row", "0-1-7/4".to_owned(), 2),
                ("commit", "0-1-7/5".to_owned(), 2),
            ],
            "uncarried rows count toward the indexes; COMMIT carries the carried row count"
        );
    }

    #[test]
    fn a_row_is_held_until_the_next_says_whether_it_is_the_transactions_last() {
        let mut f = Framing::new(false, false);
        let mut out = Vec::new();
        f.on_event(read(100, begin()), false, &mut out);
        f.on_event(read(200, rows(2, true)), false, &mut out);
        assert_eq!(out.len(), 1, "the second row waits");
        f.on_event(read(300, rows(1, false)), false, &mut out);
        f.on_event(read(400, rows(1, true)), false, &mut out);
        assert_eq!(out.len(), 2);
        f.on_event(read(500, commit()), false, &mut out);
        let rows: Vec<(String, u32, bool, u64)> = out
            .iter()
            .map(|r| {
                let t = r.event.transaction.as_ref().unwrap();
                (
                    r.event.idempotency_key(),
                    t.carried_index,
                    t.last,
                    r.event.event_offset,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("0-1-7/1".to_owned(), 0, false, 160),
                ("0-1-7/2".to_owned(), 1, false, 160),
                ("0-1-7/4".to_owned(), 2, true, 360),
            ],
            "carried rows numbered from 0 (uncarried ones skipped); the last one marked"
        );
    }

    #[test]
    fn a_transaction_carrying_nothing_leaves_no_records() {
        let mut f = Framing::new(true, true);
        let mut out = Vec::new();
        f.on_event(read(100, begin()), false, &mut out);
        f.on_event(read(200, rows(3, false)), false, &mut out);
        f.on_event(read(250, SourceEvent::Heartbeat), false, &mut out);
        assert!(out.is_empty(), "no heartbeat record inside a transaction");
        assert!(matches!(
            f.on_event(read(300, commit()), false, &mut out),
            Boundary::Commit(..)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn without_transaction_records_only_rows_are_written() {
        let mut f = Framing::new(false, false);
        let mut out = Vec::new();
        for (offset, event) in [(100, begin()), (200, rows(1, true)), (300, commit())] {
            f.on_event(read(offset, event), false, &mut out);
        }
        f.on_event(
            read(400, SourceEvent::Begin { gtid: None }),
            false,
            &mut out,
        );
        f.on_event(read(500, rows(1, true)), false, &mut out);
        f.on_event(read(600, commit()), false, &mut out);
        assert_eq!(
            summary(&out),
            [
                ("row", "0-1-7/1".to_owned(), 1),
                ("row", "binlog.000001:400/1".to_owned(), 2),
            ],
            "without a GTID the transaction is named by its BEGIN's position"
        );
    }

    #[test]
    fn ddl_is_a_transaction_of_its_own() {
        let mut f = Framing::new(true, false);
        let mut out = Vec::new();
        let ddl = |statement: &str| SourceEvent::Ddl {
            database: Some("shop".into()),
            statement: statement.into(),
            schema: Vec::new(),
            subject: ferry_mysql::statement::subject(Some("shop"), statement),
        };
        let end = f.on_event(
            read(100, ddl("ALTER TABLE orders ADD c INT")),
            true,
            &mut out,
        );
        assert!(
            matches!(end, Boundary::Commit(..)),
            "a boundary to checkpoint at"
        );
        let skipped = f.on_event(read(200, ddl("CREATE USER u")), false, &mut out);
        assert!(
            matches!(skipped, Boundary::Commit(..)),
            "a boundary, though not delivered"
        );
        assert_eq!(
            summary(&out),
            [("ddl", "binlog.000001:100/0".to_owned(), 1)]
        );
    }

    #[test]
    fn heartbeats_are_idle_boundaries() {
        let mut f = Framing::new(false, true);
        let mut out = Vec::new();
        assert_eq!(
            f.on_event(read(100, SourceEvent::Heartbeat), false, &mut out),
            Boundary::Idle
        );
        assert_eq!(
            summary(&out),
            [("heartbeat", "hb/binlog.000001:100".to_owned(), 0)]
        );
        let mut quiet = Framing::new(false, false);
        out.clear();
        quiet.on_event(read(100, SourceEvent::Heartbeat), false, &mut out);
        assert!(out.is_empty());
    }
}
