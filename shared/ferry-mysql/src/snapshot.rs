//! Reading a table's rows for a full sync: chunks by primary key, each read in a consistent
//! snapshot whose binlog position is known (the chunk's low and high watermarks).
//!
//! # Watermarks
//!
//! A chunk is read inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`. MariaDB reports that
//! snapshot's exact binlog position (`binlog_snapshot_file` / `binlog_snapshot_position`): the
//! chunk's rows are the table's rows at that position, so its low and high watermarks are the
//! same. MySQL does not report it: the low watermark is the binlog position read just before
//! the snapshot starts and the high watermark the one read just after the rows were read; the
//! rows are as of some point between the two. The sync loop merges a chunk with the binlog at
//! its high watermark, leaving out the rows whose key changed after its low watermark (their
//! newer state comes from the binlog), so either form gives the right rows.
//!
//! # Values
//!
//! Rows are read through the binary protocol, which sends FLOAT and DOUBLE exactly and
//! temporal values field by field, and turned into the same [`Value`]s the binlog decoder
//! gives, so a snapshot row and a binlog row of the same data are equal. The session uses UTC
//! (TIMESTAMP values) and utf8mb4 (text in any charset arrives as UTF-8).

use ferry_domain::change::ObjectName;
use ferry_domain::position::{BinlogFile, Position};
use ferry_domain::schema::{ColumnDef, TableDef};
use ferry_domain::value::{
    Bits, Date, DateTime, Decimal, EnumValue, SetValue, Time, Timestamp, Value,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value as MyValue};

/// Why reading a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Query(#[from] mysql_async::Error),
    #[error("cannot read {table}.{column}: {reason}")]
    Value {
        table: String,
        column: String,
        reason: String,
    },
    #[error("{0}")]
    Position(String),
}

/// Whether `e` says the table does not exist (1146): a table dropped or renamed on the source
/// after the binlog position the loop is at reads as empty; the binlog's DDL follows.
fn is_missing_table(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1146)
}

/// `name` quoted as a MySQL identifier.
fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_ref(name: &ObjectName) -> String {
    format!("{}.{}", q(&name.database), q(&name.table))
}

/// Prepares a connection for snapshot reads: UTC, UTF-8 results, repeatable read.
pub async fn prepare(conn: &mut Conn) -> Result<(), SnapshotError> {
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
        .await?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    Ok(())
}

/// InnoDB's estimate of a table's rows (approximate; 0 when unknown).
pub async fn estimate_rows(conn: &mut Conn, name: &ObjectName) -> Result<u64, SnapshotError> {
    let rows: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&name.database, &name.table),
        )
        .await?;
    Ok(rows.flatten().unwrap_or(0))
}

/// The condition `(k1, k2, …) > (?, ?, …)` (or `<=` for `upper`), spelt out column by column so
/// MySQL and MariaDB use the key's index for it; with its parameters.
fn key_condition(keys: &[String], bound: &[Value], upper: bool) -> (String, Vec<MyValue>) {
    let mut ors = Vec::new();
    let mut params = Vec::new();
    for i in 0..keys.len() {
        let mut ands = Vec::new();
        for (k, b) in keys.iter().zip(bound).take(i) {
            ands.push(format!("{} = ?", q(k)));
            params.push(to_param(b));
        }
        let last = i + 1 == keys.len();
        let op = match (upper, last) {
            (false, _) => ">",
            (true, false) => "<",
            (true, true) => "<=",
        };
        ands.push(format!("{} {op} ?", q(&keys[i])));
        params.push(to_param(&bound[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    (format!("({})", ors.join(" OR ")), params)
}

/// A key value as a statement parameter.
fn to_param(v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Float(*f),
        Value::Double(f) => MyValue::Double(*f),
        Value::Year(y) => MyValue::UInt(u64::from(*y)),
        Value::Bit(b) => MyValue::UInt(b.to_u64()),
        Value::Set(s) => MyValue::UInt(s.mask),
        Value::Bytes(b) | Value::Geometry(b) => MyValue::Bytes(b.clone()),
        Value::Timestamp(t) => MyValue::Bytes(
            t.to_utc()
                .map(|d| d.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                .unwrap_or_else(|| "0000-00-00 00:00:00".into())
                .into_bytes(),
        ),
        Value::Enum(e) => MyValue::Bytes(e.name.clone().into_bytes()),
        Value::Decimal(d) => MyValue::Bytes(d.as_str().as_bytes().to_vec()),
        Value::String(s) | Value::Json(s) => MyValue::Bytes(s.clone().into_bytes()),
        Value::Date(d) => MyValue::Bytes(d.to_string().into_bytes()),
        Value::Time(t) => MyValue::Bytes(t.to_string().into_bytes()),
        Value::DateTime(d) => MyValue::Bytes(d.to_string().into_bytes()),
    }
}

/// The chunks' upper bounds (inclusive), in key order: chunk `i` holds the keys after bound
/// `i - 1` (or from the first key) up to bound `i`; one more chunk holds the keys after the last
/// bound. Read from the key's index only, `chunk_rows` keys at a time.
pub async fn plan_chunks(
    conn: &mut Conn,
    name: &ObjectName,
    def: &TableDef,
    chunk_rows: u32,
) -> Result<Vec<Vec<Value>>, SnapshotError> {
    let keys = &def.primary_key;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let key_defs: Vec<&ColumnDef> = keys
        .iter()
        .filter_map(|k| def.column_index(k).map(|i| &def.columns[i]))
        .collect();
    let list = keys.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ");
    let mut bounds: Vec<Vec<Value>> = Vec::new();
    loop {
        let (condition, params) = match bounds.last() {
            Some(b) => {
                let (c, p) = key_condition(keys, b, false);
                (format!("WHERE {c}"), p)
            }
            None => (String::new(), Vec::new()),
        };
        let sql = format!(
            "SELECT {list} FROM {} {condition} ORDER BY {list} LIMIT 1 OFFSET {}",
            table_ref(name),
            chunk_rows.saturating_sub(1)
        );
        let row: Option<Row> = match conn.exec_first(sql, Params::Positional(params)).await {
            Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
            other => other?,
        };
        let Some(row) = row else { break };
        let values = row.unwrap();
        let mut bound = Vec::with_capacity(values.len());
        for (v, c) in values.into_iter().zip(&key_defs) {
            bound.push(from_result(v, c).map_err(|reason| SnapshotError::Value {
                table: name.to_string(),
                column: c.name.clone(),
                reason,
            })?);
        }
        bounds.push(bound);
    }
    Ok(bounds)
}

/// A chunk's rows and where in the binlog they stand.
#[derive(Debug)]
pub struct ChunkRows {
    /// The binlog position before which every change is in the rows.
    pub low: Position,
    /// The binlog position after which no change is in the rows.
    pub high: Position,
    /// Full rows, in the table's column order.
    pub rows: Vec<Vec<Value>>,
}

/// The binlog position now (`SHOW MASTER STATUS`).
pub async fn master_position(conn: &mut Conn) -> Result<Position, SnapshotError> {
    let row: Option<Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let (file, offset) = row
        .and_then(|r| Some((r.get::<String, _>("File")?, r.get::<u64, _>("Position")?)))
        .ok_or_else(|| SnapshotError::Position("the source shows no binlog position".into()))?;
    let file: BinlogFile = file
        .parse()
        .map_err(|e| SnapshotError::Position(format!("{e}")))?;
    Ok(Position::new(file, offset, None))
}

/// The identity of the server `conn` is on, as the records of a topic name it (the
/// `ferry.source` header): its `server_uuid` on MySQL, `server_id:<n>` on MariaDB, which has no
/// UUID (servers of one replication topology must have distinct ids). Binlog positions are
/// positions in one server's binlog: a checkpoint or a topic tail written with another server's
/// is not comparable.
pub async fn server_identity(conn: &mut Conn) -> Result<String, SnapshotError> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW VARIABLES WHERE Variable_name IN ('server_uuid', 'server_id')")
        .await?;
    let get = |n: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match (get("server_uuid"), get("server_id")) {
        (Some(uuid), _) => Ok(uuid),
        (None, Some(id)) => Ok(format!("server_id:{id}")),
        (None, None) => Err(SnapshotError::Position(
            "the source shows neither server_uuid nor server_id".into(),
        )),
    }
}

/// MariaDB's position of the open consistent snapshot; `None` on MySQL.
async fn snapshot_position(conn: &mut Conn) -> Result<Option<Position>, SnapshotError> {
    let rows: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let get = |n: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(offset)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Ok(None);
    };
    if file.is_empty() {
        return Ok(None);
    }
    let file: BinlogFile = file
        .parse()
        .map_err(|e| SnapshotError::Position(format!("{e}")))?;
    let offset: u64 = offset
        .parse()
        .map_err(|_| SnapshotError::Position(format!("binlog_snapshot_position `{offset}`")))?;
    Ok(Some(Position::new(file, offset, None)))
}

/// Reads the rows of `name` with keys after `lower` and up to `upper` (either open) that pass
/// `filter` (a condition Ferry rendered from the table's row filter), in a consistent snapshot
/// (see the module's `# Watermarks`).
pub async fn read_chunk(
    conn: &mut Conn,
    name: &ObjectName,
    def: &TableDef,
    (lower, upper): (Option<&[Value]>, Option<&[Value]>),
    filter: Option<&str>,
) -> Result<ChunkRows, SnapshotError> {
    let before = master_position(conn).await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await?;
    let result = read_in_snapshot(conn, name, def, (lower, upper), filter).await;
    let exact = match &result {
        Ok(_) => snapshot_position(conn).await,
        Err(_) => Ok(None),
    };
    conn.query_drop("COMMIT").await?;
    let rows = result?;
    let (low, high) = match exact? {
        Some(p) => (p.clone(), p),
        None => (before, master_position(conn).await?),
    };
    Ok(ChunkRows { low, high, rows })
}

async fn read_in_snapshot(
    conn: &mut Conn,
    name: &ObjectName,
    def: &TableDef,
    (lower, upper): (Option<&[Value]>, Option<&[Value]>),
    filter: Option<&str>,
) -> Result<Vec<Vec<Value>>, SnapshotError> {
    let mut conditions: Vec<String> = filter.map(|f| format!("({f})")).into_iter().collect();
    let mut params = Vec::new();
    for (bound, is_upper) in [(lower, false), (upper, true)] {
        if let Some(b) = bound {
            let (c, p) = key_condition(&def.primary_key, b, is_upper);
            conditions.push(c);
            params.extend(p);
        }
    }
    // The definition is the schema history's at the stream's position; the table may have
    // changed since (a column dropped before the stream reached the `DROP`). Its columns
    // that are gone read as NULL: such a chunk's high watermark is after the DDL, and the loop
    // copies the table again when it reaches it, so these rows are never loaded.
    let present = current_columns(conn, name).await?;
    if present.is_empty() {
        return Ok(Vec::new()); // dropped or renamed since: the stream's DDL says what became of it
    }
    let exists = |c: &str| present.iter().any(|p| p.eq_ignore_ascii_case(c));
    if !def.primary_key.iter().all(|k| exists(k)) {
        return Ok(Vec::new()); // its key changed since: likewise copied again at the DDL
    }
    let list = def
        .columns
        .iter()
        .map(|c| {
            if exists(&c.name) {
                q(&c.name)
            } else {
                format!("NULL AS {}", q(&c.name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("SELECT {list} FROM {}", table_ref(name));
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    let mut result = match conn.exec_iter(sql, Params::Positional(params)).await {
        // Dropped or renamed since: the stream's DDL says what became of it.
        Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
        other => other?,
    };
    let mut rows = Vec::new();
    let mut failure = None;
    result
        .for_each(|row| {
            if failure.is_some() {
                return;
            }
            let values = row.unwrap();
            let mut out = Vec::with_capacity(values.len());
            for (v, c) in values.into_iter().zip(&def.columns) {
                match from_result(v, c) {
                    Ok(v) => out.push(v),
                    Err(reason) => {
                        failure = Some(SnapshotError::Value {
                            table: name.to_string(),
                            column: c.name.clone(),
                            reason,
                        });
                        return;
                    }
                }
            }
            rows.push(out);
        })
        .await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// The columns `name` has now (none when it does not exist).
async fn current_columns(conn: &mut Conn, name: &ObjectName) -> Result<Vec<String>, SnapshotError> {
    let columns: Vec<Option<String>> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&name.database, &name.table),
        )
        .await?;
    Ok(columns.into_iter().flatten().collect())
}

/// The base type of a declared column type (`int(10) unsigned` → `int`).
fn base_type(column_type: &str) -> &str {
    let t = column_type.trim_start();
    let end = t
        .find(|c: char| c == '(' || c.is_whitespace())
        .unwrap_or(t.len());
    &t[..end]
}

fn utf8(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))
}

/// A value of the binary protocol as the [`Value`] the binlog decoder gives for the same data.
pub fn from_result(v: MyValue, column: &ColumnDef) -> Result<Value, String> {
    if v == MyValue::NULL {
        return Ok(Value::Null);
    }
    let base = base_type(&column.column_type).to_ascii_lowercase();
    let unsigned = column.column_type.contains("unsigned");
    let bytes = |v: MyValue| match v {
        MyValue::Bytes(b) => Ok(b),
        other => Err(format!("expected bytes, got {other:?}")),
    };
    let int = |v: MyValue| -> Result<i128, String> {
        match v {
            MyValue::Int(i) => Ok(i128::from(i)),
            MyValue::UInt(u) => Ok(i128::from(u)),
            MyValue::Bytes(b) => utf8(b)?.parse().map_err(|e| format!("{e}")),
            other => Err(format!("expected an integer, got {other:?}")),
        }
    };
    Ok(match base.as_str() {
        "tinyint" | "bool" | "boolean" | "smallint" | "mediumint" | "int" | "integer"
        | "bigint" => {
            let i = int(v)?;
            if unsigned {
                Value::UInt(u64::try_from(i).map_err(|e| e.to_string())?)
            } else {
                Value::Int(i64::try_from(i).map_err(|e| e.to_string())?)
            }
        }
        "float" => match v {
            MyValue::Float(f) => Value::Float(f),
            #[allow(clippy::cast_possible_truncation)] // FLOAT columns hold f32 values
            MyValue::Double(f) => Value::Float(f as f32),
            other => return Err(format!("expected a float, got {other:?}")),
        },
        "double" | "real" => match v {
            MyValue::Double(f) => Value::Double(f),
            MyValue::Float(f) => Value::Double(f64::from(f)),
            other => return Err(format!("expected a double, got {other:?}")),
        },
        "decimal" | "numeric" | "dec" | "fixed" => {
            Value::Decimal(Decimal::try_from(utf8(bytes(v)?)?).map_err(|e| e.to_string())?)
        }
        "date" => match v {
            MyValue::Date(year, month, day, ..) => Value::Date(Date { year, month, day }),
            other => return Err(format!("expected a date, got {other:?}")),
        },
        "datetime" => match v {
            MyValue::Date(year, month, day, hour, minute, second, micros) => {
                Value::DateTime(DateTime {
                    date: Date { year, month, day },
                    hour,
                    minute,
                    second,
                    micros,
                })
            }
            other => return Err(format!("expected a datetime, got {other:?}")),
        },
        "timestamp" => match v {
            MyValue::Date(0, 0, 0, 0, 0, 0, 0) => Value::Timestamp(Timestamp {
                seconds: 0,
                micros: 0,
            }),
            MyValue::Date(year, month, day, hour, minute, second, micros) => {
                let at = chrono::NaiveDate::from_ymd_opt(year.into(), month.into(), day.into())
                    .and_then(|d| d.and_hms_opt(hour.into(), minute.into(), second.into()))
                    .ok_or_else(|| format!("timestamp {year}-{month}-{day} is not a date"))?;
                Value::Timestamp(Timestamp {
                    seconds: at.and_utc().timestamp(),
                    micros,
                })
            }
            other => return Err(format!("expected a timestamp, got {other:?}")),
        },
        "time" => match v {
            MyValue::Time(negative, days, h, minutes, seconds, micros) => Value::Time(Time {
                negative,
                hours: u16::try_from(days * 24 + u32::from(h)).map_err(|e| e.to_string())?,
                minutes,
                seconds,
                micros,
            }),
            other => return Err(format!("expected a time, got {other:?}")),
        },
        "year" => Value::Year(u16::try_from(int(v)?).map_err(|e| e.to_string())?),
        "bit" => {
            let width: u8 = column
                .column_type
                .split(['(', ')'])
                .nth(1)
                .and_then(|w| w.trim().parse().ok())
                .unwrap_or(1);
            let mut raw = bytes(v)?;
            let len = usize::from(width).div_ceil(8);
            while raw.len() > len && raw.first() == Some(&0) {
                raw.remove(0);
            }
            while raw.len() < len {
                raw.insert(0, 0);
            }
            Value::Bit(Bits { width, bytes: raw })
        }
        "enum" => {
            let name = utf8(bytes(v)?)?;
            let index = match name.as_str() {
                "" => 0,
                n => column
                    .members
                    .iter()
                    .position(|m| m == n)
                    .and_then(|i| u16::try_from(i + 1).ok())
                    .ok_or_else(|| format!("`{n}` is not a member"))?,
            };
            Value::Enum(EnumValue { index, name })
        }
        "set" => {
            let text = utf8(bytes(v)?)?;
            let mut mask = 0u64;
            let mut names = Vec::new();
            for n in text.split(',').filter(|n| !n.is_empty()) {
                let bit = column
                    .members
                    .iter()
                    .position(|m| m == n)
                    .ok_or_else(|| format!("`{n}` is not a member"))?;
                mask |= 1u64
                    .checked_shl(u32::try_from(bit).unwrap_or(64))
                    .unwrap_or(0);
                names.push(n.to_owned());
            }
            Value::Set(SetValue { mask, names })
        }
        "json" => Value::Json(utf8(bytes(v)?)?),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => Value::Geometry(bytes(v)?),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Value::Bytes(bytes(v)?)
        }
        _ => match String::from_utf8(bytes(v)?) {
            Ok(s) => Value::String(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_conditions_are_spelt_out() {
        let keys = vec!["a".to_owned(), "b".to_owned()];
        let (c, p) = key_condition(&keys, &[Value::Int(1), Value::String("x".into())], false);
        assert_eq!(c, "((`a` > ?) OR (`a` = ? AND `b` > ?))");
        assert_eq!(p.len(), 3);
        let (c, _) = key_condition(&keys[..1], &[Value::Int(1)], true);
        assert_eq!(c, "((`a` <= ?))");
        let (c, _) = key_condition(&keys, &[Value::Int(1), Value::Int(2)], true);
        assert_eq!(c, "((`a` < ?) OR (`a` = ? AND `b` <= ?))");
    }

    #[test]
    fn values_read_like_the_binlog_gives_them() {
        let col = |t: &str, members: &[&str]| ColumnDef {
            name: "c".into(),
            column_type: t.into(),
            nullable: true,
            charset: None,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            collation: None,
        };
        assert_eq!(
            from_result(MyValue::Int(200), &col("tinyint(3) unsigned", &[])).unwrap(),
            Value::UInt(200)
        );
        assert_eq!(
            from_result(
                MyValue::Bytes(b"b,c".to_vec()),
                &col("set('a','b','c')", &["a", "b", "c"])
            )
            .unwrap(),
            Value::Set(SetValue {
                mask: 6,
                names: vec!["b".into(), "c".into()]
            })
        );
        assert_eq!(
            from_result(MyValue::Bytes(vec![0x0a, 0xbc]), &col("bit(12)", &[])).unwrap(),
            Value::Bit(Bits {
                width: 12,
                bytes: vec![0x0a, 0xbc]
            })
        );
        assert_eq!(
            from_result(
                MyValue::Date(2024, 2, 29, 13, 14, 15, 678_000),
                &col("timestamp(3)", &[])
            )
            .unwrap(),
            Value::Timestamp(Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000
            })
        );
        assert!(from_result(MyValue::Bytes(b"z".to_vec()), &col("enum('a')", &["a"])).is_err());
    }
}
