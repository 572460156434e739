//! The DTS-style Avro format: each record is one Avro datum (binary encoding, no container
//! header) of the schema in `dts_record.avsc`, the layout cloud DTS change tracking uses
//! (`id, sourceTimestamp, sourcePosition, safeSourcePosition, sourceTxid, operation, objectName,
//! fields, beforeImages, afterImages`), so consumers written for it need few changes.
//!
//! Where DTS loses precision Ferry does not: `Timestamp` and `DateTime` carry microseconds (DTS:
//! milliseconds), integers are decimal strings (so BIGINT UNSIGNED fits), and a `DateTime` says
//! whether a TIME is negative. The schema travels with the consumer (`docs/formats.md` names
//! the file); every record's header `ferry.schema` names its version.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use ferry_domain::change::{ChangeEvent, ChangeKind, Column, Operation, RowChange};
use ferry_domain::task_config::Values;
use ferry_domain::value::Value;

use ferry_domain::selection::ColumnMask;

use super::record::Record;
use super::rows::{carried, is_fixed_binary, key_of, trim_zero_padding};

/// The schema, as shipped.
pub const SCHEMA_TEXT: &str = include_str!("dts_record.avsc");
/// The version written in each record's `version` field and `ferry.schema` header.
pub const SCHEMA_VERSION: i32 = 1;

static SCHEMA: LazyLock<Result<Schema, String>> =
    LazyLock::new(|| Schema::parse_str(SCHEMA_TEXT).map_err(|e| e.to_string()));

/// The parsed schema (an error only if the shipped schema were broken, which a unit test rules
/// out).
pub fn schema() -> Result<&'static Schema, String> {
    SCHEMA.as_ref().map_err(Clone::clone)
}

/// Checks that a datum of the shipped schema is plausible before `apache-avro` decodes it:
/// every length and block count fits in the bytes that are left. `apache-avro` reserves room
/// for whatever count a block claims before it reads a single item, so a few hostile bytes
/// could ask for gigabytes (`fuzz/regressions/record_views`); a well-formed datum of this schema
/// never holds more items than bytes (no item of it is empty). Written here because the library
/// has no such bound.
pub(crate) fn check_datum(payload: &[u8], values: Values) -> Result<(), String> {
    let schema = schema_for(values)?;
    let resolved =
        apache_avro::schema::ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    let mut rest = payload;
    skip(schema, resolved.get_names(), &mut rest, 0)
}

fn varint(rest: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, after) = rest.split_first().ok_or("the datum ends inside a number")?;
        *rest = after;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            // Zig-zag: the sign is the lowest bit.
            let v = i64::try_from(value >> 1).unwrap_or(i64::MAX);
            return Ok(if value & 1 == 0 { v } else { -v - 1 });
        }
    }
    Err("a number longer than 10 bytes".into())
}

fn take(rest: &mut &[u8], n: usize) -> Result<(), String> {
    if n > rest.len() {
        return Err(format!("{n} bytes claimed, {} left", rest.len()));
    }
    *rest = &rest[n..];
    Ok(())
}

/// A length or count that must fit in what is left.
fn length(rest: &mut &[u8]) -> Result<usize, String> {
    let n = varint(rest)?;
    let n = usize::try_from(n).map_err(|_| format!("a negative length {n}"))?;
    if n > rest.len() {
        return Err(format!("a length of {n} with {} bytes left", rest.len()));
    }
    Ok(n)
}

fn skip(
    schema: &Schema,
    names: &apache_avro::schema::NamesRef<'_>,
    rest: &mut &[u8],
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err("the datum nests too deep".into());
    }
    match schema {
        Schema::Null => Ok(()),
        Schema::Boolean => take(rest, 1),
        Schema::Int
        | Schema::Long
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros => varint(rest).map(|_| ()),
        Schema::Float => take(rest, 4),
        Schema::Double => take(rest, 8),
        Schema::Bytes | Schema::String | Schema::Uuid => {
            let n = length(rest)?;
            take(rest, n)
        }
        Schema::Fixed(f) => take(rest, f.size),
        Schema::Enum(e) => {
            let i = varint(rest)?;
            if usize::try_from(i).is_ok_and(|i| i < e.symbols.len()) {
                Ok(())
            } else {
                Err(format!("enum index {i} out of range"))
            }
        }
        Schema::Union(u) => {
            let i = varint(rest)?;
            let variant = usize::try_from(i)
                .ok()
                .and_then(|i| u.variants().get(i))
                .ok_or_else(|| format!("union branch {i} out of range"))?;
            skip(variant, names, rest, depth + 1)
        }
        Schema::Array(a) => blocks(rest, |rest| skip(&a.items, names, rest, depth + 1)),
        Schema::Map(m) => blocks(rest, |rest| {
            let n = length(rest)?;
            take(rest, n)?;
            skip(&m.types, names, rest, depth + 1)
        }),
        Schema::Record(r) => r
            .fields
            .iter()
            .try_for_each(|f| skip(&f.schema, names, rest, depth + 1)),
        Schema::Ref { name } => {
            let named = names
                .get(name)
                .or_else(|| {
                    names
                        .iter()
                        .find(|(n, _)| n.name == name.name)
                        .map(|(_, s)| s)
                })
                .ok_or_else(|| format!("unknown type {}", name.name))?;
            skip(named, names, rest, depth + 1)
        }
        other => Err(format!(
            "the schema has a type the check does not know: {other:?}"
        )),
    }
}

/// Array or map blocks: counts (negative with a byte size), each fitting in what is left.
fn blocks(
    rest: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let count = varint(rest)?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            let _size = varint(rest)?;
        }
        let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        if count > rest.len() {
            return Err(format!(
                "a block of {count} items with {} bytes left",
                rest.len()
            ));
        }
        for _ in 0..count {
            item(rest)?;
        }
    }
}

/// Encodes one event in Ferry's readable mapping (`values: readable`); `None` for events the
/// format does not carry.
pub(super) fn record(e: &ChangeEvent, columns: &ColumnMask) -> Result<Option<Record>, String> {
    let key_text = e.idempotency_key();
    let position = e.position.to_string();
    let txid = e
        .source_transaction()
        .map_or_else(|| position.clone(), |t| t.id.to_string());
    let mut tags = std::collections::HashMap::new();
    tags.insert("ferry.key".to_owned(), Avro::String(key_text.clone()));
    if let Some(g) = e.position.gtid() {
        tags.insert("gtid".to_owned(), Avro::String(g.to_string()));
    }
    let null = || Avro::Union(0, Box::new(Avro::Null));
    let (operation, object, fields, before, after, key) = match &e.kind {
        ChangeKind::Row(row) => {
            let table = row.table();
            let selected: Vec<usize> = carried(row, columns).collect();
            let pk: Vec<&str> = table
                .key()
                .iter()
                .filter_map(|i| table.columns().get(*i).map(|c| c.name.as_str()))
                .collect();
            tags.insert("pk".to_owned(), Avro::String(pk.join(",")));
            let fields = fields_of(row, &selected, type_number);
            let image = |values| image_of(values, &selected, |_, v| value(v));
            let operation = match row.operation() {
                // The format has no snapshot read: an INSERT, tagged `snapshot`.
                Operation::Insert | Operation::Read => 0,
                Operation::Update => 1,
                Operation::Delete => 2,
            };
            if e.is_snapshot_read() {
                tags.insert("snapshot".to_owned(), Avro::String("true".into()));
            }
            (
                operation,
                Some(table.name().to_string()),
                Avro::Union(1, Box::new(fields)),
                image(row.before()),
                image(row.after()),
                Some(key_json(row)),
            )
        }
        ChangeKind::Ddl {
            database,
            statement,
        } => (
            3,
            database.clone(),
            null(),
            null(),
            Avro::Union(1, Box::new(Avro::String(statement.clone()))),
            None,
        ),
        ChangeKind::Begin => (4, None, null(), null(), null(), None),
        ChangeKind::Commit { .. } => (5, None, null(), null(), null(), None),
        ChangeKind::Heartbeat => (6, None, null(), null(), null(), None),
    };
    const OPERATIONS: [&str; 7] = [
        "INSERT",
        "UPDATE",
        "DELETE",
        "DDL",
        "BEGIN",
        "COMMIT",
        "HEARTBEAT",
    ];
    let safe = match &e.kind {
        // The transaction's id is the position of its BEGIN when the server has no GTIDs.
        ChangeKind::Row(_) | ChangeKind::Begin if txid.contains(':') && !txid.contains('-') => {
            txid.clone()
        }
        _ => position.clone(),
    };
    let record = Avro::Record(vec![
        ("version".into(), Avro::Int(SCHEMA_VERSION)),
        ("id".into(), Avro::Long(record_id(&key_text))),
        (
            "sourceTimestamp".into(),
            Avro::Long(e.timestamp.timestamp()),
        ),
        ("sourcePosition".into(), Avro::String(position.clone())),
        ("safeSourcePosition".into(), Avro::String(safe)),
        ("sourceTxid".into(), Avro::String(txid)),
        (
            "source".into(),
            Avro::Record(vec![
                ("sourceType".into(), Avro::Enum(0, "MySQL".into())),
                (
                    "version".into(),
                    Avro::String(concat!("ferry-", env!("CARGO_PKG_VERSION")).into()),
                ),
            ]),
        ),
        (
            "operation".into(),
            Avro::Enum(operation, OPERATIONS[operation as usize].into()),
        ),
        (
            "objectName".into(),
            match object {
                Some(o) => Avro::Union(1, Box::new(Avro::String(o))),
                None => null(),
            },
        ),
        ("processTimestamps".into(), null()),
        ("tags".into(), Avro::Map(tags)),
        ("fields".into(), fields),
        ("beforeImages".into(), before),
        ("afterImages".into(), after),
        (
            "bornTimestamp".into(),
            Avro::Long(chrono::Utc::now().timestamp_millis()),
        ),
    ]);
    let payload = apache_avro::to_avro_datum(schema()?, record).map_err(|e| e.to_string())?;
    Ok(Some(Record {
        key,
        tombstone: false,
        payload,
        idempotency_key: key_text,
        position,
    }))
}

/// The compatible schema: the published `Record.avsc` of cloud DTS change tracking, as
/// `dts_record_compatible.avsc` restates it.
pub const COMPATIBLE_SCHEMA_TEXT: &str = include_str!("dts_record_compatible.avsc");

static COMPATIBLE_SCHEMA: LazyLock<Result<Schema, String>> =
    LazyLock::new(|| Schema::parse_str(COMPATIBLE_SCHEMA_TEXT).map_err(|e| e.to_string()));

/// The schema records of `values` are written in.
pub fn schema_for(values: Values) -> Result<&'static Schema, String> {
    match values {
        Values::Compatible => COMPATIBLE_SCHEMA.as_ref().map_err(Clone::clone),
        Values::Readable => schema(),
    }
}

/// An event as cloud DTS's own Avro record (`values: compatible`); `None` for events the
/// format does not carry. `source_version` is the source server's `VERSION()`.
pub(super) fn compatible(
    e: &ChangeEvent,
    columns: &ColumnMask,
    source_version: &str,
) -> Result<Option<Record>, String> {
    let key_text = e.idempotency_key();
    let file_index = e
        .position
        .file()
        .name()
        .rsplit('.')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let at = |offset: u64| format!("{offset}@{file_index}");
    let mut tags = std::collections::HashMap::new();
    tags.insert("ferry.key".to_owned(), Avro::String(key_text.clone()));
    tags.insert(
        "readerThroughoutTime".to_owned(),
        Avro::String(chrono::Utc::now().timestamp_millis().to_string()),
    );
    tags.insert(
        "server_id".to_owned(),
        Avro::String(e.server_id.to_string()),
    );
    let transaction = e.source_transaction();
    if e.position.gtid().is_some()
        && let Some(t) = transaction
    {
        tags.insert("GTID".to_owned(), Avro::String(t.id.to_string()));
    }
    let null = || Avro::Union(0, Box::new(Avro::Null));
    let (operation, object, fields, before, after, key) = match &e.kind {
        ChangeKind::Row(row) => {
            let table = row.table();
            let selected: Vec<usize> = carried(row, columns).collect();
            if !table.key().is_empty() {
                let pk: Vec<&str> = table
                    .key()
                    .iter()
                    .map(|i| table.columns()[*i].name.as_str())
                    .collect();
                tags.insert(
                    "pk_uk_info".to_owned(),
                    Avro::String(serde_json::json!({ "PRIMARY": pk }).to_string()),
                );
            }
            let fields = fields_of(row, &selected, client_type_number);
            let image = |values| {
                image_of(values, &selected, |i, v| {
                    compatible_value(&table.columns()[i], v)
                })
            };
            let operation = match row.operation() {
                // The format has no snapshot read: an INSERT, tagged `snapshot`.
                Operation::Insert | Operation::Read => 0,
                Operation::Update => 1,
                Operation::Delete => 2,
            };
            if e.is_snapshot_read() {
                tags.insert("snapshot".to_owned(), Avro::String("true".into()));
            }
            let name = table.name();
            (
                operation,
                Some(format!(
                    "{}.{}",
                    escape_dots(&name.database),
                    escape_dots(&name.table)
                )),
                Avro::Union(2, Box::new(fields)),
                image(row.before()),
                image(row.after()),
                Some(key_json(row)),
            )
        }
        ChangeKind::Ddl {
            database,
            statement,
        } => (
            3,
            database.as_deref().map(escape_dots),
            null(),
            null(),
            Avro::Union(1, Box::new(Avro::String(statement.clone()))),
            None,
        ),
        ChangeKind::Begin => (4, None, null(), null(), null(), None),
        ChangeKind::Commit { .. } => (5, None, null(), null(), null(), None),
        ChangeKind::Heartbeat => (8, None, null(), null(), null(), None),
    };
    const OPERATIONS: [&str; 9] = [
        "INSERT",
        "UPDATE",
        "DELETE",
        "DDL",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "ABORT",
        "HEARTBEAT",
    ];
    // Where to resume without missing the record: the transaction's BEGIN when Ferry knows its
    // offset (no GTIDs), else where the record's event starts.
    let safe = match transaction.map(|t| &*t.id) {
        Some(id)
            if matches!(e.kind, ChangeKind::Row(_) | ChangeKind::Begin)
                && id.contains(':')
                && !id.contains('-') =>
        {
            id.rsplit(':')
                .next()
                .and_then(|o| o.parse::<u64>().ok())
                .map_or_else(|| at(e.event_offset), at)
        }
        _ if matches!(e.kind, ChangeKind::Row(_)) => at(e.event_offset),
        _ => at(e.position.offset()),
    };
    let seconds = e.timestamp.timestamp();
    let record = Avro::Record(vec![
        ("version".into(), Avro::Int(0)),
        ("id".into(), Avro::Long(record_id(&key_text))),
        ("sourceTimestamp".into(), Avro::Long(seconds)),
        (
            "sourcePosition".into(),
            Avro::String(at(e.position.offset())),
        ),
        ("safeSourcePosition".into(), Avro::String(safe)),
        ("sourceTxid".into(), Avro::String("0".into())),
        (
            "source".into(),
            Avro::Record(vec![
                ("sourceType".into(), Avro::Enum(0, "MySQL".into())),
                ("version".into(), Avro::String(source_version.to_owned())),
            ]),
        ),
        (
            "operation".into(),
            Avro::Enum(operation, OPERATIONS[operation as usize].into()),
        ),
        (
            "objectName".into(),
            match object {
                Some(o) => Avro::Union(1, Box::new(Avro::String(o))),
                None => null(),
            },
        ),
        ("processTimestamps".into(), null()),
        ("tags".into(), Avro::Map(tags)),
        ("fields".into(), fields),
        ("beforeImages".into(), before),
        ("afterImages".into(), after),
        ("bornTimestamp".into(), Avro::Long(seconds)),
    ]);
    let payload = apache_avro::to_avro_datum(schema_for(Values::Compatible)?, record)
        .map_err(|e| e.to_string())?;
    Ok(Some(Record {
        key,
        tombstone: false,
        payload,
        idempotency_key: key_text,
        position: e.position.to_string(),
    }))
}

/// A name with its dots written as the six characters `\u002E`, as DTS writes them in
/// `objectName` (whose parts are split at dots).
fn escape_dots(name: &str) -> String {
    name.replace('.', "\\u002E")
}

/// The type number DTS gives a column: MySQL's client-protocol type (`VARCHAR` 253, `DATETIME`
/// 12, `DECIMAL` 246), not the binlog's (15, 18, …), which DTS's Java converter does not know.
fn client_type_number(source_type: &str) -> i32 {
    match type_number(source_type) {
        15 => 253,
        n => n,
    }
}

/// A record of the value union: branch `index` (both schemas number their branches the same
/// way for the records they share: Integer 1, Character 2, Decimal 3, Float 4, Timestamp 5,
/// DateTime 6).
fn branch(index: u32, fields: Vec<(&str, Avro)>) -> Avro {
    Avro::Union(
        index,
        Box::new(Avro::Record(
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        )),
    )
}

/// `Integer{precision, value}`.
fn integer(precision: i32, text: String) -> Avro {
    branch(
        1,
        vec![
            ("precision", Avro::Int(precision)),
            ("value", Avro::String(text)),
        ],
    )
}

/// `{type, value}` at branch `index` (the object and geometry records).
fn object(index: u32, kind: &str, value: Avro) -> Avro {
    branch(
        index,
        vec![("type", Avro::String(kind.into())), ("value", value)],
    )
}

/// An optional int (`[null, int]`).
fn opt(v: Option<i32>) -> Avro {
    match v {
        Some(n) => Avro::Union(1, Box::new(Avro::Int(n))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

/// One value as a member of the compatible image union (indexes follow the published schema:
/// null 0, Integer 1, Character 2, Decimal 3, Float 4, Timestamp 5, DateTime 6, …,
/// BinaryGeometry 8, BinaryObject 10, TextObject 11), chosen by the column's type as DTS's
/// converters expect (`docs/formats.md`).
fn compatible_value(col: &Column, v: &Value) -> Avro {
    let datetime = |parts: [Option<i32>; 7]| {
        let names = ["year", "month", "day", "hour", "minute", "second", "millis"];
        branch(6, names.iter().copied().zip(parts.map(opt)).collect())
    };
    let code = client_type_number(&col.source_type);
    // TEXT and BLOB columns (249–252) are BinaryObjects; (VAR)CHAR and (VAR)BINARY Characters.
    let large = (249..=252).contains(&code);
    let text_kind = if col.source_type.to_ascii_lowercase().contains("text") {
        "TEXT"
    } else {
        "BLOB"
    };
    let n = |x: u32| i32::try_from(x).unwrap_or(i32::MAX);
    match v {
        Value::Null => Avro::Union(0, Box::new(Avro::Null)),
        Value::Int(i) => integer(storage_bytes(code), i.to_string()),
        Value::UInt(u) => integer(storage_bytes(code), u.to_string()),
        Value::Bit(b) => integer(i32::from(b.width.div_ceil(8)), b.to_u64().to_string()),
        Value::Year(y) => datetime([Some(i32::from(*y)), None, None, None, None, None, None]),
        Value::Float(f) => branch(
            4,
            vec![
                ("value", Avro::Double(f64::from(*f))),
                ("precision", Avro::Int(0)),
                ("scale", Avro::Int(0)),
            ],
        ),
        Value::Double(f) => branch(
            4,
            vec![
                ("value", Avro::Double(*f)),
                ("precision", Avro::Int(0)),
                ("scale", Avro::Int(0)),
            ],
        ),
        Value::Decimal(d) => {
            // Java's BigDecimal precision and scale of the value written (DTS's).
            let digits = d.as_str().trim_start_matches('-');
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let unscaled = format!("{whole}{frac}");
            let significant = unscaled.trim_start_matches('0').len().max(1);
            branch(
                3,
                vec![
                    ("value", Avro::String(d.as_str().to_owned())),
                    (
                        "precision",
                        Avro::Int(i32::try_from(significant).unwrap_or(i32::MAX)),
                    ),
                    (
                        "scale",
                        Avro::Int(i32::try_from(frac.len()).unwrap_or(i32::MAX)),
                    ),
                ],
            )
        }
        Value::String(s) if large => object(10, text_kind, Avro::Bytes(s.as_bytes().to_vec())),
        Value::Bytes(b) if large => object(10, text_kind, Avro::Bytes(b.clone())),
        Value::String(s) => branch(
            2,
            vec![
                ("charset", Avro::String("utf8mb4".into())),
                ("value", Avro::Bytes(s.as_bytes().to_vec())),
            ],
        ),
        // BINARY(n) as the binlog carries it, without its zero padding.
        Value::Bytes(b) => branch(
            2,
            vec![
                ("charset", Avro::String("binary".into())),
                (
                    "value",
                    Avro::Bytes(if is_fixed_binary(&col.source_type) {
                        trim_zero_padding(b).to_vec()
                    } else {
                        b.clone()
                    }),
                ),
            ],
        ),
        Value::Enum(e) => object(11, "ENUM", Avro::String(e.name.clone())),
        Value::Set(s) => object(11, "SET", Avro::String(s.names.join(","))),
        Value::Json(j) => object(11, "JSON", Avro::String(j.clone())),
        Value::Geometry(g) => object(8, "GEOMETRY", Avro::Bytes(g.clone())),
        Value::Timestamp(t) => branch(
            5,
            vec![
                ("timestamp", Avro::Long(t.seconds)),
                ("millis", Avro::Int(n(t.micros))),
            ],
        ),
        Value::Date(d) => datetime([
            Some(i32::from(d.year)),
            Some(i32::from(d.month)),
            Some(i32::from(d.day)),
            None,
            None,
            None,
            None,
        ]),
        Value::DateTime(dt) => datetime([
            Some(i32::from(dt.date.year)),
            Some(i32::from(dt.date.month)),
            Some(i32::from(dt.date.day)),
            Some(i32::from(dt.hour)),
            Some(i32::from(dt.minute)),
            Some(i32::from(dt.second)),
            Some(n(dt.micros)),
        ]),
        Value::Time(t) => {
            // A negative TIME has every part negative, as DTS's converters read it.
            let sign = if t.negative { -1 } else { 1 };
            datetime([
                None,
                None,
                None,
                Some(sign * i32::from(t.hours)),
                Some(sign * i32::from(t.minutes)),
                Some(sign * i32::from(t.seconds)),
                Some(sign * n(t.micros)),
            ])
        }
    }
}

/// The storage width in bytes of an integer column, DTS's `Integer.precision`.
fn storage_bytes(code: i32) -> i32 {
    match code {
        1 => 1,
        2 => 2,
        9 => 3,
        3 => 4,
        _ => 8,
    }
}

/// The `fields` array of the carried columns: name and type number (`number` of the declared
/// type).
fn fields_of(row: &RowChange, selected: &[usize], number: fn(&str) -> i32) -> Avro {
    let columns = row.table().columns();
    Avro::Array(
        selected
            .iter()
            .map(|i| {
                let c = &columns[*i];
                Avro::Record(vec![
                    ("name".into(), Avro::String(c.name.clone())),
                    ("dataTypeNumber".into(), Avro::Int(number(&c.source_type))),
                ])
            })
            .collect(),
    )
}

/// An image as the array branch of its union (null without one): `value` of each carried
/// column (its index and value).
fn image_of(
    values: Option<&[Value]>,
    selected: &[usize],
    value: impl Fn(usize, &Value) -> Avro,
) -> Avro {
    match values {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(v) => Avro::Union(
            2,
            Box::new(Avro::Array(
                selected.iter().map(|i| value(*i, &v[*i])).collect(),
            )),
        ),
    }
}

/// A stable 63-bit id from the idempotency key (FNV-1a 64), so a re-read record has the same id.
fn record_id(key: &str) -> i64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

fn key_json(row: &RowChange) -> Vec<u8> {
    key_of(row).to_string().into_bytes()
}

/// One value as a member of the image union (indexes follow `dts_record.avsc`).
fn value(v: &Value) -> Avro {
    let text = |charset: &str, s: &str| {
        branch(
            2,
            vec![
                ("charset", Avro::String(charset.into())),
                ("value", Avro::Bytes(s.as_bytes().to_vec())),
            ],
        )
    };
    let datetime = |date: Option<(u16, u8, u8)>, time: Option<(u32, u8, u8, u32)>, negative| {
        let (y, mo, d) = date.map_or((None, None, None), |(y, m, d)| {
            (Some(i32::from(y)), Some(i32::from(m)), Some(i32::from(d)))
        });
        let (h, mi, s, us) = time.map_or((None, None, None, None), |(h, m, s, us)| {
            (
                Some(i32::try_from(h).unwrap_or(i32::MAX)),
                Some(i32::from(m)),
                Some(i32::from(s)),
                Some(i32::try_from(us).unwrap_or(i32::MAX)),
            )
        });
        branch(
            6,
            vec![
                ("year", opt(y)),
                ("month", opt(mo)),
                ("day", opt(d)),
                ("hour", opt(h)),
                ("minute", opt(mi)),
                ("second", opt(s)),
                ("micros", opt(us)),
                ("negative", Avro::Boolean(negative)),
            ],
        )
    };
    match v {
        Value::Null => Avro::Union(0, Box::new(Avro::Null)),
        Value::Int(i) => integer(64, i.to_string()),
        Value::UInt(u) => integer(64, u.to_string()),
        Value::Year(y) => integer(16, y.to_string()),
        Value::Bit(b) => integer(i32::from(b.width), b.to_u64().to_string()),
        Value::Float(f) => branch(
            4,
            vec![
                ("value", Avro::Double(f64::from(*f))),
                ("precision", Avro::Int(24)),
                ("scale", Avro::Int(0)),
            ],
        ),
        Value::Double(f) => branch(
            4,
            vec![
                ("value", Avro::Double(*f)),
                ("precision", Avro::Int(53)),
                ("scale", Avro::Int(0)),
            ],
        ),
        Value::Decimal(d) => {
            let digits = d.as_str().trim_start_matches('-');
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let count = |s: &str| i32::try_from(s.len()).unwrap_or(i32::MAX);
            branch(
                3,
                vec![
                    ("value", Avro::String(d.as_str().to_owned())),
                    ("precision", Avro::Int(count(whole) + count(frac))),
                    ("scale", Avro::Int(count(frac))),
                ],
            )
        }
        Value::String(s) => text("utf8mb4", s),
        Value::Enum(e) => text("utf8mb4", &e.name),
        Value::Set(s) => text("utf8mb4", &s.names.join(",")),
        Value::Bytes(b) => object(8, "BINARY", Avro::Bytes(b.clone())),
        Value::Json(j) => object(9, "JSON", Avro::String(j.clone())),
        Value::Geometry(g) => object(7, "GEOMETRY", Avro::Bytes(g.clone())),
        Value::Timestamp(t) => branch(
            5,
            vec![
                ("timestamp", Avro::Long(t.seconds)),
                ("micros", Avro::Int(i32::try_from(t.micros).unwrap_or(0))),
            ],
        ),
        Value::Date(d) => datetime(Some((d.year, d.month, d.day)), None, false),
        Value::DateTime(dt) => datetime(
            Some((dt.date.year, dt.date.month, dt.date.day)),
            Some((u32::from(dt.hour), dt.minute, dt.second, dt.micros)),
            false,
        ),
        Value::Time(t) => datetime(
            None,
            Some((u32::from(t.hours), t.minutes, t.seconds, t.micros)),
            t.negative,
        ),
    }
}

/// MySQL's type number for a declared column type (`MYSQL_TYPE_*`).
fn type_number(source_type: &str) -> i32 {
    let t = source_type.trim_start().to_ascii_lowercase();
    let word: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    match word.as_str() {
        "tinyint" | "bool" | "boolean" => 1,
        "smallint" => 2,
        "int" | "integer" => 3,
        "float" => 4,
        "double" | "real" => 5,
        "timestamp" => 7,
        "bigint" => 8,
        "mediumint" => 9,
        "date" => 10,
        "time" => 11,
        "datetime" => 12,
        "year" => 13,
        "varchar" | "varbinary" => 15,
        "bit" => 16,
        "json" => 245,
        "decimal" | "numeric" => 246,
        "enum" => 247,
        "set" => 248,
        "tinyblob" | "tinytext" => 249,
        "mediumblob" | "mediumtext" => 250,
        "longblob" | "longtext" => 251,
        "blob" | "text" => 252,
        "char" | "binary" => 254,
        "geometry" | "point" | "linestring" | "polygon" => 255,
        _ => 253,
    }
}

#[cfg(test)]
mod tests {
    use ferry_domain::task_config::Values;

    #[test]
    fn a_datum_claiming_more_than_it_holds_is_refused_before_decoding() {
        // version 1, id 2, then a string of 2^40 bytes in a 12-byte payload.
        let hostile = [2u8, 4, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, b'x'];
        for values in [Values::Readable, Values::Compatible] {
            let e = check_datum(&hostile, values).unwrap_err();
            assert!(e.contains("length"), "{e}");
            assert!(check_datum(&[], values).is_err());
            assert!(check_datum(&[0xff; 12], values).is_err());
        }
    }

    use std::sync::Arc;

    use super::*;
    use ferry_domain::change::{Column, ObjectName, TableSchema, TransactionRef};
    use ferry_domain::position::Position;
    use ferry_domain::value::{Decimal, Time};

    fn event(kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            position: std::sync::Arc::new(Position::new("bin.000003".parse().unwrap(), 1234, None)),
            event_offset: 0,
            server_id: 1,
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-9".into(),
                event_index: 2,
                carried_index: 0,
                last: false,
                event_row: 0,
            }),
            kind,
        }
    }

    /// Encodes `e` carrying the columns `names` (all when `None`), key columns always.
    fn dts_avro(e: &ChangeEvent, names: Option<&[String]>) -> Result<Option<Record>, String> {
        let columns = match &e.kind {
            ChangeKind::Row(row) => ColumnMask::of(row.table(), names),
            _ => ColumnMask::All,
        };
        record(e, &columns)
    }

    fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
        let Avro::Record(fields) = record else {
            panic!("not a record: {record:?}")
        };
        &fields.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn decode(payload: &[u8]) -> Avro {
        apache_avro::from_avro_datum(schema().unwrap(), &mut &payload[..], None).unwrap()
    }

    #[test]
    fn a_row_change_round_trips_through_the_shipped_schema_exactly() {
        let table = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                [
                    "id bigint unsigned",
                    "total decimal(10,2)",
                    "late time",
                    "note varchar(10)",
                ]
                .iter()
                .map(|c| {
                    let (name, ty) = c.split_once(' ').unwrap();
                    Column {
                        name: name.into(),
                        source_type: ty.into(),
                        nullable: true,
                    }
                })
                .collect(),
                vec![0],
            )
            .unwrap(),
        );
        let before = vec![
            Value::UInt(u64::MAX),
            Value::Decimal(Decimal::try_from("-12.50".to_owned()).unwrap()),
            Value::Time(Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 1,
            }),
            Value::Null,
        ];
        let mut after = before.clone();
        after[3] = Value::String("Zoë".into());
        let row = RowChange::update(table, before, after).unwrap();
        let e = event(ChangeKind::Row(row));
        let record = dts_avro(&e, Some(&["total".to_owned()])).unwrap().unwrap();
        let datum = decode(&record.payload);
        assert_eq!(field(&datum, "operation"), &Avro::Enum(1, "UPDATE".into()));
        assert_eq!(
            field(&datum, "objectName"),
            &Avro::Union(1, Box::new(Avro::String("shop.orders".into())))
        );
        assert_eq!(field(&datum, "sourceTxid"), &Avro::String("0-1-9".into()));
        assert_eq!(field(&datum, "sourceTimestamp"), &Avro::Long(1_700_000_000));
        // Selected columns only, with the key always kept.
        let Avro::Union(1, fields) = field(&datum, "fields") else {
            panic!("fields")
        };
        let Avro::Array(fields) = fields.as_ref() else {
            panic!("fields array")
        };
        assert_eq!(fields.len(), 2);
        assert_eq!(field(&fields[0], "dataTypeNumber"), &Avro::Int(8));
        assert_eq!(field(&fields[1], "dataTypeNumber"), &Avro::Int(246));
        let Avro::Union(2, images) = field(&datum, "beforeImages") else {
            panic!("before")
        };
        let Avro::Array(images) = images.as_ref() else {
            panic!("images")
        };
        let Avro::Union(1, id) = &images[0] else {
            panic!("integer")
        };
        assert_eq!(field(id, "value"), &Avro::String(u64::MAX.to_string()));
        let Avro::Union(3, total) = &images[1] else {
            panic!("decimal")
        };
        assert_eq!(field(total, "value"), &Avro::String("-12.50".into()));
        assert_eq!(field(total, "precision"), &Avro::Int(4));
        assert_eq!(field(total, "scale"), &Avro::Int(2));
        assert_eq!(record.idempotency_key, "0-1-9/2");
        assert_eq!(field(&datum, "id"), &Avro::Long(record_id("0-1-9/2")));
    }

    #[test]
    fn ddl_and_transaction_records_have_their_operation() {
        let ddl = dts_avro(
            &event(ChangeKind::Ddl {
                database: Some("shop".into()),
                statement: "ALTER TABLE orders ADD x INT".into(),
            }),
            None,
        )
        .unwrap()
        .unwrap();
        let datum = decode(&ddl.payload);
        assert_eq!(field(&datum, "operation"), &Avro::Enum(3, "DDL".into()));
        assert_eq!(
            field(&datum, "afterImages"),
            &Avro::Union(
                1,
                Box::new(Avro::String("ALTER TABLE orders ADD x INT".into()))
            )
        );
        for (kind, op) in [
            (ChangeKind::Begin, "BEGIN"),
            (ChangeKind::Commit { xid: Some(3) }, "COMMIT"),
            (ChangeKind::Heartbeat, "HEARTBEAT"),
        ] {
            let r = dts_avro(&event(kind), None).unwrap().unwrap();
            let Avro::Enum(_, got) = field(&decode(&r.payload), "operation").clone() else {
                panic!("an enum")
            };
            assert_eq!(got, op);
        }
    }

    #[test]
    fn every_value_kind_encodes_against_the_schema() {
        use ferry_domain::value::{Bits, Date, DateTime, EnumValue, SetValue, Timestamp};
        let values = vec![
            Value::Null,
            Value::Int(-1),
            Value::Float(1.5),
            Value::Double(-2.25),
            Value::Bytes(vec![0, 255]),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2026,
                    month: 11,
                    day: 22,
                },
                hour: 3,
                minute: 4,
                second: 5,
                micros: 678_000,
            }),
            Value::Timestamp(Timestamp {
                seconds: 1,
                micros: 999_999,
            }),
            Value::Year(2026),
            Value::Bit(Bits {
                width: 3,
                bytes: vec![5],
            }),
            Value::Enum(EnumValue {
                index: 1,
                name: "new".into(),
            }),
            Value::Set(SetValue {
                mask: 3,
                names: vec!["a".into(), "b".into()],
            }),
            Value::Json("{\"a\":1}".into()),
            Value::Geometry(vec![1, 2, 3]),
        ];
        let table = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "every".into(),
                },
                (0..values.len())
                    .map(|i| Column {
                        name: format!("c{i}"),
                        source_type: "whatever".into(),
                        nullable: true,
                    })
                    .collect(),
                Vec::new(),
            )
            .unwrap(),
        );
        let count = values.len();
        let row = RowChange::insert(table, values).unwrap();
        let record = dts_avro(&event(ChangeKind::Row(row)), None)
            .unwrap()
            .unwrap();
        let datum = decode(&record.payload);
        let Avro::Union(2, images) = field(&datum, "afterImages") else {
            panic!("after")
        };
        let Avro::Array(images) = images.as_ref() else {
            panic!("images")
        };
        assert_eq!(images.len(), count);
        let Avro::Union(6, time) = &images[6] else {
            panic!("a DateTime: {:?}", images[6])
        };
        assert_eq!(
            field(time, "micros"),
            &Avro::Union(1, Box::new(Avro::Int(678_000)))
        );
    }

    #[test]
    fn type_numbers_follow_mysql() {
        assert_eq!(type_number("int(11) unsigned"), 3);
        assert_eq!(type_number("varchar(20)"), 15);
        assert_eq!(type_number("enum('a')"), 247);
        assert_eq!(type_number("something_new"), 253);
    }

    #[test]
    fn compatible_values_take_the_branches_dts_converters_expect() {
        let col = |t: &str| Column {
            name: "c".into(),
            source_type: t.into(),
            nullable: true,
        };
        let branch = |c: &Column, v: &Value| match compatible_value(c, v) {
            Avro::Union(i, inner) => (i, *inner),
            other => panic!("{other:?}"),
        };
        let field = |v: &Avro, name: &str| match v {
            Avro::Record(f) => f.iter().find(|(k, _)| k == name).unwrap().1.clone(),
            other => panic!("{other:?}"),
        };
        let (i, int) = branch(&col("smallint(6)"), &Value::Int(-7));
        assert_eq!((i, field(&int, "precision")), (1, Avro::Int(2)));
        let (i, dec) = branch(
            &col("decimal(8,2)"),
            &Value::Decimal(Decimal::try_from("348.00".to_owned()).unwrap()),
        );
        assert_eq!(
            (i, field(&dec, "precision"), field(&dec, "scale")),
            (3, Avro::Int(5), Avro::Int(2)),
            "the value's precision and scale, as DTS writes them"
        );
        let (i, text) = branch(&col("mediumtext"), &Value::String("x".into()));
        assert_eq!((i, field(&text, "type")), (10, Avro::String("TEXT".into())));
        let (i, chars) = branch(&col("varchar(10)"), &Value::String("x".into()));
        assert_eq!(
            (i, field(&chars, "charset")),
            (2, Avro::String("utf8mb4".into()))
        );
        let (i, t) = branch(
            &col("time"),
            &Value::Time(Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 58,
                micros: 0,
            }),
        );
        assert_eq!(i, 6);
        assert_eq!(field(&t, "hour"), Avro::Union(1, Box::new(Avro::Int(-838))));
        assert_eq!(field(&t, "year"), Avro::Union(0, Box::new(Avro::Null)));
        let (i, _) = branch(&col("json"), &Value::Json("{}".into()));
        assert_eq!(i, 11);
        assert_eq!(client_type_number("varchar(20)"), 253);
        assert_eq!(escape_dots("a.b"), "a\\u002Eb");
        assert!(schema_for(Values::Compatible).is_ok());
    }
}
