//! Record formats: how a change event becomes a record's key and payload. One file per format
//! (`debezium-json`, the default; `canal-json`; `maxwell-json`; `dts-avro`), the row helpers
//! they share ([`rows`]: carried columns, keys, images) and the one JSON writer of a value
//! ([`json`], with the table of how each value is written).
//!
//! Every format takes the task's column mask for the row's table map
//! (`ferry_domain::selection::ColumnMask`, prepared once per table map); key columns are always
//! carried.

pub mod dts_avro;
pub mod json;

mod canal;
mod debezium;
mod debezium_connect;
mod java;
mod maxwell;
mod record;
mod rows;
mod temporal;
mod wkt;

use ferry_domain::change::{ChangeEvent, ChangeKind, Operation, RowChange};
use ferry_domain::selection::ColumnMask;
use ferry_domain::task_config::{DebeziumOptions, Delivery, Format, MaxwellOptions, Values};

pub use record::{Record, UnsupportedFormat};

/// How a task's records are written: the format, its value mapping and the format's options
/// (from the task's `delivery`). A bare [`Format`] is its readable mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    pub format: Format,
    pub values: Values,
    pub maxwell: MaxwellOptions,
    /// The source server's version (`SELECT VERSION()`), which `dts-avro` records carry.
    pub source_version: Option<std::sync::Arc<str>>,
    pub debezium: DebeziumOptions,
    /// Whether Debezium's `transaction` block is filled (the task's `transaction_records`,
    /// Debezium's `provide.transaction.metadata`).
    pub transaction_metadata: bool,
}

impl Style {
    /// The style a task's `delivery` asks for.
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            format: delivery.format,
            values: delivery.values(),
            maxwell: delivery.maxwell,
            source_version: None,
            debezium: delivery.debezium,
            transaction_metadata: delivery.transaction_records,
        }
    }

    /// Whether records carry the source server's version (set it with `source_version`).
    pub fn needs_source_version(&self) -> bool {
        self.format == Format::DtsAvro && self.values == Values::Compatible
    }

    /// `format` with the tool-compatible mapping and the tool's default options.
    pub fn compatible(format: Format) -> Self {
        Self {
            format,
            values: Values::Compatible,
            maxwell: MaxwellOptions::default(),
            source_version: None,
            debezium: DebeziumOptions::default(),
            transaction_metadata: false,
        }
    }
}

impl From<Format> for Style {
    fn from(format: Format) -> Self {
        Self {
            format,
            values: Values::Readable,
            maxwell: MaxwellOptions::default(),
            source_version: None,
            debezium: DebeziumOptions::default(),
            transaction_metadata: false,
        }
    }
}

/// One of the records an event is written as. Most events are one record ([`Part::Whole`]).
/// Debezium (compatible values) follows a delete with a tombstone, and writes an update that
/// changes the primary key as a delete of the old key, its tombstone and a create of the new
/// key, as its MySQL connector does. A record's part is its index in [`Style::parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The event as one record.
    Whole,
    /// The previous record's key with no value (it must follow the record it ends).
    Tombstone,
    /// An update's before image as a delete (its key changed).
    Delete,
    /// An update's after image as a create (its key changed).
    Create,
}

impl Style {
    /// The records `event` is written as, in order.
    pub fn parts(&self, event: &ChangeEvent) -> &'static [Part] {
        let ChangeKind::Row(row) = &event.kind else {
            return &[Part::Whole];
        };
        if self.format != Format::DebeziumJson || self.values != Values::Compatible {
            return &[Part::Whole];
        }
        let tombstones = self.debezium.tombstones_on_delete;
        match row.operation() {
            Operation::Delete if tombstones => &[Part::Whole, Part::Tombstone],
            Operation::Update if row.key_changed() => {
                if tombstones {
                    &[Part::Delete, Part::Tombstone, Part::Create]
                } else {
                    &[Part::Delete, Part::Create]
                }
            }
            _ => &[Part::Whole],
        }
    }
}

/// Encodes part number `n` of `event` (see [`Style::parts`]) into `record`, which holds the
/// previous part for a [`Part::Tombstone`]; `false` when the format does not carry the event.
pub fn encode_part_into(
    style: &Style,
    topic: &str,
    event: &ChangeEvent,
    total_order: u64,
    columns: &ColumnMask,
    (n, part): (usize, Part),
    record: &mut Record,
) -> Result<bool, UnsupportedFormat> {
    // One image of an update as a row of its own (an update's key changed: rare, so copied).
    let half = |row: &RowChange, op: Operation| {
        let table = row.table().clone();
        let image = match op {
            Operation::Delete => row.before(),
            _ => row.after(),
        }
        .map(<[_]>::to_vec)
        .unwrap_or_default();
        match op {
            Operation::Delete => RowChange::delete(table, image),
            _ => RowChange::insert(table, image),
        }
        .map_err(|e| UnsupportedFormat {
            format: style.format,
            reason: e.to_string(),
        })
    };
    let made = match (part, &event.kind) {
        (Part::Whole, _) => encode_into(style, topic, event, total_order, columns, record)?,
        (Part::Tombstone, _) => {
            record.payload.clear();
            record.tombstone = true;
            true
        }
        (Part::Delete, ChangeKind::Row(row)) => {
            let delete = half(row, Operation::Delete)?;
            debezium_row(style, topic, event, &delete, total_order, columns, record);
            true
        }
        (Part::Create, ChangeKind::Row(row)) => {
            let create = half(row, Operation::Insert)?;
            debezium_row(style, topic, event, &create, total_order, columns, record);
            true
        }
        _ => false,
    };
    if made && n > 0 {
        use std::fmt::Write;
        record.idempotency_key.clear();
        event.write_idempotency_key(&mut record.idempotency_key);
        let _ = write!(record.idempotency_key, "#{n}");
    }
    Ok(made)
}

/// A Debezium (compatible) row record of `row`, one of `event`'s.
fn debezium_row(
    style: &Style,
    topic: &str,
    event: &ChangeEvent,
    row: &RowChange,
    total_order: u64,
    columns: &ColumnMask,
    record: &mut Record,
) {
    let (key, payload) = debezium_connect::row_record(
        topic,
        event,
        row,
        total_order,
        columns,
        &style.debezium,
        style.transaction_metadata,
    );
    record.key = key;
    record.payload = payload;
    record.tombstone = false;
    record.idempotency_key.clear();
    event.write_idempotency_key(&mut record.idempotency_key);
    record.position.clear();
    let _ = std::fmt::Write::write_fmt(&mut record.position, format_args!("{}", event.position));
}

/// Encodes an event; `columns` is the column mask of a row's table map (ignored for other
/// events). Returns `None` for events the format does not carry.
pub fn encode(
    style: impl Into<Style>,
    topic: &str,
    event: &ChangeEvent,
    total_order: u64,
    columns: &ColumnMask,
) -> Result<Option<Record>, UnsupportedFormat> {
    let mut record = Record::default();
    Ok(encode_into(
        &style.into(),
        topic,
        event,
        total_order,
        columns,
        &mut record,
    )?
    .then_some(record))
}

/// [`encode`] into `record`, whose buffers are reused (the capture loop keeps one): `false`
/// for events the format does not carry (`record` is then left as it was). Debezium rows, the
/// hot path, allocate nothing once the buffers have grown.
pub fn encode_into(
    style: &Style,
    topic: &str,
    event: &ChangeEvent,
    total_order: u64,
    columns: &ColumnMask,
    record: &mut Record,
) -> Result<bool, UnsupportedFormat> {
    let format = style.format;
    let made = match format {
        Format::DebeziumJson => match &event.kind {
            ChangeKind::Row(row) if style.values == Values::Compatible => {
                debezium_row(style, topic, event, row, total_order, columns, record);
                return Ok(true);
            }
            ChangeKind::Row(row) => {
                record.tombstone = false;
                debezium::row(topic, event, row, total_order, columns, record);
                return Ok(true);
            }
            ChangeKind::Ddl {
                database,
                statement,
            } if style.values == Values::Compatible => Some(Record {
                key: None,
                payload: debezium_connect::ddl_record(
                    topic,
                    event,
                    database.as_deref(),
                    statement,
                    &style.debezium,
                ),
                tombstone: false,
                idempotency_key: event.idempotency_key(),
                position: event.position.to_string(),
            }),
            _ => debezium::record(topic, event, total_order, columns),
        },
        Format::CanalJson => match style.values {
            Values::Compatible => canal::compatible(event, total_order, columns),
            Values::Readable => canal::readable(event, total_order, columns),
        },
        Format::MaxwellJson => match style.values {
            Values::Compatible => maxwell::compatible(event, columns, &style.maxwell),
            Values::Readable => maxwell::readable(event, columns),
        },
        Format::DtsAvro => match style.values {
            Values::Compatible => dts_avro::compatible(
                event,
                columns,
                style.source_version.as_deref().unwrap_or_default(),
            ),
            Values::Readable => dts_avro::record(event, columns),
        }
        .map_err(|reason| UnsupportedFormat {
            format: Format::DtsAvro,
            reason,
        })?,
    };
    Ok(match made {
        Some(r) => {
            *record = r;
            true
        }
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_domain::change::{Column, ObjectName, TableSchema, TransactionRef};
    use ferry_domain::value::{Bits, Date, Decimal, SetValue, Timestamp};

    use super::*;
    use crate::format::json::value;
    use ferry_domain::change::RowChange;
    use ferry_domain::value::Value;
    use serde_json::{Value as Json, json};

    /// The column mask of `names` (all when `None`) for `e`'s row.
    fn mask(e: &ChangeEvent, names: Option<&[String]>) -> ColumnMask {
        match &e.kind {
            ChangeKind::Row(row) => ColumnMask::of(row.table(), names),
            _ => ColumnMask::All,
        }
    }

    fn encode(
        format: Format,
        topic: &str,
        e: &ChangeEvent,
        order: u64,
        names: Option<&[String]>,
    ) -> Result<Option<Record>, UnsupportedFormat> {
        super::encode(format, topic, e, order, &mask(e, names))
    }

    fn debezium(
        topic: &str,
        e: &ChangeEvent,
        order: u64,
        names: Option<&[String]>,
    ) -> Option<Record> {
        super::debezium::record(topic, e, order, &mask(e, names))
    }

    fn table() -> Arc<TableSchema> {
        let col = |n: &str| Column {
            name: n.into(),
            source_type: "int".into(),
            nullable: true,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![col("id"), col("total"), col("note")],
                vec![0],
            )
            .unwrap(),
        )
    }

    fn event(kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            position: std::sync::Arc::new("binlog.000001:900@0-1-7".parse().unwrap()),
            event_offset: 0,
            server_id: 1,
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-7".into(),
                event_index: 2,
                carried_index: 0,
                last: false,
                event_row: 0,
            }),
            kind,
        }
    }

    /// Every record `style` writes for `e`, as `Delivery` makes them: (idempotency key, key,
    /// payload JSON or `None` for a tombstone).
    fn parts_of(style: &Style, e: &ChangeEvent) -> Vec<(String, Option<Json>, Option<Json>)> {
        let mut record = Record::default();
        let mut out = Vec::new();
        for (n, part) in style.parts(e).iter().enumerate() {
            assert!(
                encode_part_into(style, "t", e, 1, &ColumnMask::All, (n, *part), &mut record)
                    .unwrap()
            );
            let key = record
                .key
                .as_ref()
                .map(|k| serde_json::from_slice::<Json>(k).unwrap()["payload"].clone());
            let payload = (!record.tombstone).then(|| {
                serde_json::from_slice::<Json>(&record.payload).unwrap()["payload"].clone()
            });
            out.push((record.idempotency_key.clone(), key, payload));
        }
        out
    }

    #[test]
    fn debezium_deletes_are_followed_by_a_tombstone_and_key_changes_split() {
        let style = Style::compatible(Format::DebeziumJson);
        let row = |id: i64| vec![Value::Int(id), Value::Int(5), Value::String("a".into())];
        let delete = event(ChangeKind::Row(RowChange::delete(table(), row(7)).unwrap()));
        let parts = parts_of(&style, &delete);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "0-1-7/2");
        assert_eq!(parts[0].2.as_ref().unwrap()["op"], "d");
        assert_eq!(
            parts[1],
            ("0-1-7/2#1".to_owned(), Some(json!({"id": 7})), None),
            "the tombstone: the delete's key, no value"
        );

        let key_change = event(ChangeKind::Row(
            RowChange::update(table(), row(7), row(8)).unwrap(),
        ));
        let parts = parts_of(&style, &key_change);
        let summary: Vec<_> = parts
            .iter()
            .map(|(k, key, p)| (k.as_str(), key.clone(), p.as_ref().map(|p| p["op"].clone())))
            .collect();
        assert_eq!(
            summary,
            [
                ("0-1-7/2", Some(json!({"id": 7})), Some(json!("d"))),
                ("0-1-7/2#1", Some(json!({"id": 7})), None),
                ("0-1-7/2#2", Some(json!({"id": 8})), Some(json!("c"))),
            ]
        );
        assert_eq!(parts[0].2.as_ref().unwrap()["after"], Json::Null);
        assert_eq!(parts[2].2.as_ref().unwrap()["before"], Json::Null);
        assert_eq!(parts[2].2.as_ref().unwrap()["after"]["id"], 8);

        // Without tombstones; and an update that keeps its key is one record.
        let mut quiet = Style::compatible(Format::DebeziumJson);
        quiet.debezium.tombstones_on_delete = false;
        assert_eq!(quiet.parts(&delete), [Part::Whole]);
        assert_eq!(quiet.parts(&key_change), [Part::Delete, Part::Create]);
        assert_eq!(style.parts(&update()), [Part::Whole]);
        // Ferry's readable mapping and the other formats write one record per change.
        assert_eq!(
            Style::from(Format::DebeziumJson).parts(&delete),
            [Part::Whole]
        );
        assert_eq!(
            Style::compatible(Format::MaxwellJson).parts(&key_change),
            [Part::Whole]
        );
    }

    /// A row a backfill read is marked as each tool marks a snapshot read, carries no
    /// transaction, and reads back as an insert of its image.
    #[test]
    fn snapshot_reads_are_marked_in_every_format() {
        let mut read = event(ChangeKind::Row(
            RowChange::read(
                table(),
                vec![Value::Int(7), Value::Int(5), Value::String("a".into())],
            )
            .unwrap(),
        ));
        read.transaction = Some(TransactionRef {
            id: "bf/1/shop.orders/7".into(),
            event_index: 0,
            carried_index: 0,
            last: true,
            event_row: 0,
        });
        for format in [
            Format::DebeziumJson,
            Format::CanalJson,
            Format::MaxwellJson,
            Format::DtsAvro,
        ] {
            for style in [Style::from(format), Style::compatible(format)] {
                let mut record = Record::default();
                assert_eq!(style.parts(&read), &[Part::Whole]);
                assert!(
                    encode_part_into(
                        &style,
                        "t",
                        &read,
                        1,
                        &ColumnMask::All,
                        (0, Part::Whole),
                        &mut record
                    )
                    .unwrap()
                );
                assert_eq!(record.idempotency_key, "bf/1/shop.orders/7/0");
                let raw = crate::view::RawRecord {
                    partition: 0,
                    offset: 0,
                    timestamp_ms: None,
                    key: record.key.as_deref(),
                    payload: &record.payload,
                    idempotency_key: &record.idempotency_key,
                    position: &record.position,
                };
                let seen = crate::view::view_with(format, style.values, &raw).unwrap();
                assert_eq!(seen.operation, "read", "{format:?} {:?}", style.values);
                let id = &seen.after.as_ref().unwrap()["id"];
                assert!(id == 7 || id == "7", "{format:?}: {id}");
                let text = String::from_utf8_lossy(&record.payload).into_owned();
                match format {
                    Format::DebeziumJson => {
                        let json: Json = serde_json::from_slice(&record.payload).unwrap();
                        let payload = json.get("payload").unwrap_or(&json);
                        assert_eq!(payload["op"], "r", "{text}");
                        assert_eq!(payload["source"]["snapshot"], "incremental", "{text}");
                        assert_eq!(payload["transaction"], Json::Null, "{text}");
                    }
                    Format::CanalJson => {
                        let json: Json = serde_json::from_slice(&record.payload).unwrap();
                        assert_eq!(json["type"], "INSERT", "{text}");
                        assert_eq!(json["isSnapshot"], true, "{text}");
                    }
                    Format::MaxwellJson => {
                        let json: Json = serde_json::from_slice(&record.payload).unwrap();
                        assert_eq!(json["type"], "bootstrap-insert", "{text}");
                        assert!(json.get("xid").is_none(), "{text}");
                    }
                    Format::DtsAvro => assert!(text.contains("snapshot"), "the snapshot tag"),
                }
            }
        }
    }

    #[test]
    fn debezium_ddl_is_a_schema_change_event() {
        let ddl = event(ChangeKind::Ddl {
            database: Some("shop".into()),
            statement: "ALTER TABLE orders ADD note TEXT".into(),
        });
        let r = super::encode(
            Style::compatible(Format::DebeziumJson),
            "t",
            &ddl,
            1,
            &ColumnMask::All,
        )
        .unwrap()
        .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            j["schema"]["name"],
            "io.debezium.connector.mysql.SchemaChangeValue"
        );
        let names: Vec<&str> = j["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "source",
                "ts_ms",
                "databaseName",
                "schemaName",
                "ddl",
                "tableChanges"
            ]
        );
        let p = &j["payload"];
        assert_eq!(p["ddl"], "ALTER TABLE orders ADD note TEXT");
        assert_eq!(p["databaseName"], "shop");
        assert_eq!(p["source"]["db"], "shop");
        assert_eq!(p["source"]["gtid"], "0-1-7");
        assert_eq!(p["tableChanges"], json!([]));
        assert!(p.get("op").is_none());
        assert_eq!(r.idempotency_key, "0-1-7/2");
    }

    #[test]
    fn debezium_update_envelope() {
        let row = RowChange::update(
            table(),
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("1.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("2.50".to_owned()).unwrap()),
                Value::Null,
            ],
        )
        .unwrap();
        let cols = vec!["total".to_owned()];
        let r = encode(
            Format::DebeziumJson,
            "ferry.ins_x",
            &event(ChangeKind::Row(row)),
            5,
            Some(&cols),
        )
        .unwrap()
        .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["op"], "u");
        assert_eq!(
            j["before"],
            json!({"id": 7, "total": "1.50"}),
            "selected columns plus the key"
        );
        assert_eq!(j["after"], json!({"id": 7, "total": "2.50"}));
        assert_eq!(j["source"]["db"], "shop");
        assert_eq!(j["source"]["table"], "orders");
        assert_eq!(j["source"]["file"], "binlog.000001");
        assert_eq!(j["source"]["pos"], 900);
        assert_eq!(j["source"]["gtid"], "0-1-7");
        assert_eq!(j["source"]["ts_ms"], 1_700_000_000_000i64);
        assert_eq!(
            j["transaction"],
            json!({"id": "0-1-7", "total_order": 5, "data_collection_order": 2})
        );
        assert_eq!(r.key.as_deref(), Some(&b"{\"id\":7}"[..]));
        assert_eq!(r.idempotency_key, "0-1-7/2");
        assert_eq!(r.position, "binlog.000001:900@0-1-7");
    }

    #[test]
    fn exact_values() {
        assert_eq!(
            value(&Value::UInt(u64::MAX)).to_string(),
            "18446744073709551615"
        );
        assert_eq!(
            value(&Value::Date(Date {
                year: 0,
                month: 0,
                day: 0
            })),
            json!("0000-00-00")
        );
        assert_eq!(
            value(&Value::Timestamp(Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000
            })),
            json!("2024-02-29T13:14:15.678Z")
        );
        assert_eq!(
            value(&Value::Timestamp(Timestamp {
                seconds: 0,
                micros: 0
            })),
            json!("0000-00-00T00:00:00Z")
        );
        assert_eq!(
            value(&Value::Bit(Bits {
                width: 1,
                bytes: vec![1]
            })),
            json!(true)
        );
        assert_eq!(
            value(&Value::Bit(Bits {
                width: 12,
                bytes: vec![0x0a, 0xaa]
            })),
            json!("Cqo=")
        );
        assert_eq!(value(&Value::Bytes(vec![0, 255])), json!("AP8="));
        assert_eq!(
            value(&Value::Set(SetValue {
                mask: 5,
                names: vec!["a".into(), "c".into()]
            })),
            json!("a,c")
        );
    }

    fn update() -> ChangeEvent {
        let row = RowChange::update(
            table(),
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("1.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("2.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
        )
        .unwrap();
        event(ChangeKind::Row(row))
    }

    /// The fast row writer and the serde_json one agree on every kind of value.
    #[test]
    fn fast_rows_equal_the_reference() {
        use ferry_domain::value::{DateTime, EnumValue, Time};
        let col = |n: &str| Column {
            name: n.into(),
            source_type: "x".into(),
            nullable: true,
        };
        let names = [
            "id", "i", "u", "f", "d", "dec", "s", "q\"uote", "b", "date", "dt", "ts", "zero_ts",
            "t", "y", "bit1", "bit12", "e", "set", "json", "null",
        ];
        let t = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "db\"x".into(),
                    table: "t".into(),
                },
                names.iter().map(|n| col(n)).collect(),
                vec![0, 6],
            )
            .unwrap(),
        );
        let values = vec![
            Value::Int(-7),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Double(-0.1),
            Value::Decimal(Decimal::try_from("-12.30".to_owned()).unwrap()),
            Value::String("tab\t \"quoted\" ünï 🚀 \u{1}".into()),
            Value::String("x".into()),
            Value::Bytes(vec![0, 255, 16]),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                },
                hour: 1,
                minute: 2,
                second: 3,
                micros: 450_000,
            }),
            Value::Timestamp(Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000,
            }),
            Value::Timestamp(Timestamp {
                seconds: 0,
                micros: 0,
            }),
            Value::Time(Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0,
            }),
            Value::Year(2155),
            Value::Bit(Bits {
                width: 1,
                bytes: vec![0],
            }),
            Value::Bit(Bits {
                width: 12,
                bytes: vec![0x0a, 0xaa],
            }),
            Value::Enum(EnumValue {
                index: 1,
                name: "a,b".into(),
            }),
            Value::Set(SetValue {
                mask: 3,
                names: vec!["x".into(), "y".into()],
            }),
            Value::Json("{\"a\": 1}".into()),
            Value::Null,
        ];
        let rows = [
            RowChange::insert(t.clone(), values.clone()).unwrap(),
            RowChange::update(
                t.clone(),
                values.clone(),
                values.iter().rev().cloned().collect(),
            )
            .unwrap(),
            RowChange::delete(t.clone(), values.clone()).unwrap(),
        ];
        let cols = ["s".to_owned(), "json".to_owned()];
        for row in rows {
            for columns in [None, Some(&cols[..])] {
                let e = event(ChangeKind::Row(row.clone()));
                let fast = encode(Format::DebeziumJson, "topic\"", &e, 3, columns)
                    .unwrap()
                    .unwrap();
                let reference = debezium("topic\"", &e, 3, columns).unwrap();
                let mut a: Json = serde_json::from_slice(&fast.payload).unwrap();
                let mut b: Json = serde_json::from_slice(&reference.payload).unwrap();
                a["ts_ms"] = Json::Null;
                b["ts_ms"] = Json::Null;
                assert_eq!(a, b);
                let ka: Json = serde_json::from_slice(fast.key.as_deref().unwrap()).unwrap();
                let kb: Json = serde_json::from_slice(reference.key.as_deref().unwrap()).unwrap();
                assert_eq!(ka, kb);
                assert_eq!(
                    (fast.idempotency_key, fast.position),
                    (reference.idempotency_key, reference.position)
                );
            }
        }
    }

    #[test]
    fn canal_flat_message() {
        let r = encode(Format::CanalJson, "t", &update(), 9, None)
            .unwrap()
            .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["type"], "UPDATE");
        assert_eq!(
            j["data"],
            json!([{"id": "7", "total": "2.50", "note": "a"}])
        );
        assert_eq!(
            j["old"],
            json!([{"total": "1.50"}]),
            "only the changed columns"
        );
        assert_eq!(j["pkNames"], json!(["id"]));
        assert_eq!(j["database"], "shop");
        assert_eq!(j["isDdl"], false);
        assert_eq!(j["es"], 1_700_000_000_000i64);
        assert_eq!(j["mysqlType"]["total"], "int");
        assert_eq!(j["id"], 9);
    }

    #[test]
    fn maxwell_row() {
        let r = encode(Format::MaxwellJson, "t", &update(), 9, None)
            .unwrap()
            .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["type"], "update");
        assert_eq!(j["data"], json!({"id": 7, "total": "2.50", "note": "a"}));
        assert_eq!(j["old"], json!({"total": "1.50"}));
        assert_eq!(j["ts"], 1_700_000_000);
        assert_eq!(j["position"], "binlog.000001:900");
        assert_eq!(j["xoffset"], 2);
        assert!(
            encode(
                Format::MaxwellJson,
                "t",
                &event(ChangeKind::Heartbeat),
                0,
                None
            )
            .unwrap()
            .is_none()
        );
    }
}
