//! Exact row decoding: binlog row images into Ferry's [`Value`]s.
//!
//! `mysql_common` parses the rows events; this module turns its values into exact ones and
//! closes its known gaps (measured on MariaDB 10.11, see the field notes):
//!
//! | column type | `mysql_common` gives | Ferry gives |
//! |---|---|---|
//! | TINYINT…BIGINT | `Int` / `UInt` by the signedness metadata | `Int` / `UInt` |
//! | MEDIUMINT signed | not sign-extended (-1 as 16777215) | sign-extended `Int` |
//! | FLOAT, DOUBLE | `Float`, `Double` | the same |
//! | DECIMAL | its digits as bytes | `Decimal` (exact text, scale kept) |
//! | DATE | `Date(y, m, d, 0…)` | `Date`, zero parts kept |
//! | DATETIME(n) | `Date(…, µs)` | `DateTime`, zero dates kept |
//! | TIMESTAMP(n) | epoch text ("1709212455.678000", or "1") | `Timestamp { seconds, micros }` |
//! | TIME(n) | `Time(neg, days, h, m, s, µs)` | `Time` with hours = days × 24 + h |
//! | YEAR | "1900 + n" as text (0 as "1900") | `Year` (0 stays 0) |
//! | BIT(n) | big-endian bytes | `Bit { width, bytes }` |
//! | ENUM | 1-based index | `Enum { index, name }` from the ENUM_STR_VALUE metadata |
//! | SET | little-endian bitmask bytes | `Set { mask, names }` from the SET_STR_VALUE metadata |
//! | CHAR/VARCHAR/TEXT | raw bytes | `String`, converted from the column's charset (by the server's collation table); `Bytes` for `binary` |
//! | BINARY/VARBINARY/BLOB | raw bytes | `Bytes` |
//! | JSON (MySQL binary JSON) | `Jsonb` | `Json` text; MariaDB's JSON is LONGTEXT and arrives as `String` |
//! | GEOMETRY | raw bytes | `Geometry` |
//!
//! Charsets Ferry cannot convert keep their raw bytes (`Bytes`), never a lossy string.

use std::collections::HashMap;
use std::sync::Arc;

use encoding_rs::Encoding;
use ferry_domain::change::{Column, ObjectName, TableSchema};
use ferry_domain::schema::TableDef;
use ferry_domain::value::{
    Bits, Date, DateTime, Decimal, EnumValue, SetValue, Time, Timestamp, Value,
};
use mysql_async::Value as MyValue;
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_common::io::ParseBuf;

use crate::json_diff;
use mysql_async::consts::{ColumnFlags, ColumnType};

/// A row that cannot be decoded: which table and column, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {table}.{column}: {reason}")]
pub struct DecodeError {
    pub table: String,
    pub column: String,
    pub reason: String,
}

/// How the text of a collation is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// `binary`: not text.
    Binary,
    Utf8,
    Other(&'static Encoding),
    /// `utf32`: big-endian code points, four bytes each (no WHATWG encoding has it).
    Utf32,
    /// A charset Ferry has no converter for: the bytes are kept.
    Unknown,
}

/// Collation id → encoding, read once from the source's `information_schema.COLLATIONS`.
#[derive(Debug, Clone, Default)]
pub struct Charsets(HashMap<u16, TextEncoding>);

impl Charsets {
    /// Builds the table from (collation id, charset name) pairs.
    pub fn from_collations(rows: impl IntoIterator<Item = (u16, String)>) -> Self {
        Self(
            rows.into_iter()
                .map(|(id, name)| (id, encoding_of(&name)))
                .collect(),
        )
    }

    /// The standard collation ids of MySQL 8 and MariaDB, for reading binlog files without a
    /// server to ask.
    pub fn builtin() -> Self {
        let mut rows: Vec<(u16, String)> = Vec::new();
        let mut add =
            |ids: &[u16], name: &str| rows.extend(ids.iter().map(|i| (*i, name.to_owned())));
        add(&[33, 83, 223], "utf8mb3");
        add(&(192..=215).collect::<Vec<u16>>(), "utf8mb3");
        add(&[45, 46], "utf8mb4");
        add(&(224..=247).collect::<Vec<u16>>(), "utf8mb4");
        add(&(255..=323).collect::<Vec<u16>>(), "utf8mb4");
        add(&[5, 8, 15, 31, 47, 48, 49, 94], "latin1");
        add(&[11, 65], "ascii");
        add(&[35, 90], "ucs2");
        add(&(128..=151).collect::<Vec<u16>>(), "ucs2");
        add(&[54, 55], "utf16");
        add(&(101..=124).collect::<Vec<u16>>(), "utf16");
        add(&[56, 62], "utf16le");
        add(&[60, 61], "utf32");
        add(&(160..=183).collect::<Vec<u16>>(), "utf32");
        Self::from_collations(rows)
    }

    fn get(&self, id: u16) -> TextEncoding {
        match id {
            63 => TextEncoding::Binary,
            _ => self.0.get(&id).copied().unwrap_or(TextEncoding::Unknown),
        }
    }
}

/// MySQL charset names → converters (WHATWG labels, as `encoding_rs` knows them).
fn encoding_of(charset: &str) -> TextEncoding {
    let label = match charset {
        "binary" => return TextEncoding::Binary,
        "utf8" | "utf8mb3" | "utf8mb4" | "ascii" => return TextEncoding::Utf8,
        // MySQL's latin1 is cp1252, as WHATWG's "latin1" label is.
        "latin1" => "windows-1252",
        "latin2" => "iso-8859-2",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "latin7" => "iso-8859-13",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "cp866" => "ibm866",
        "macroman" => "macintosh",
        "gbk" | "gb2312" => "gbk",
        "gb18030" => "gb18030",
        "big5" => "big5",
        "sjis" | "cp932" => "shift_jis",
        "ujis" | "eucjpms" => "euc-jp",
        "euckr" => "euc-kr",
        // UCS-2 is UTF-16 without surrogates: the same bytes for every character it has.
        "ucs2" | "utf16" => "utf-16be",
        "utf16le" => "utf-16le",
        "utf32" => return TextEncoding::Utf32,
        _ => return TextEncoding::Unknown,
    };
    Encoding::for_label(label.as_bytes()).map_or(TextEncoding::Unknown, TextEncoding::Other)
}

/// What decoding needs to know about one column, worked out once per table map.
#[derive(Debug, Clone)]
struct ColumnPlan {
    column_type: ColumnType,
    /// BIT width in bits.
    bit_width: u8,
    enum_values: Vec<String>,
    set_values: Vec<String>,
    /// Unsigned per the schema history (a MINIMAL table map does not say).
    unsigned: bool,
    /// How to read the column's text when the table map names no character set (MINIMAL
    /// metadata): from the history's declared type and character set.
    text: Option<TextEncoding>,
    /// The width of a fixed-width binary column (BINARY(n), MariaDB's UUID and INET6/INET4):
    /// the binlog leaves out trailing zero bytes, which are part of the value.
    pad_to: Option<usize>,
    /// The table map's metadata of the column (its length, precision, fraction digits…),
    /// copied once so a row reads it without walking the table map.
    meta: Vec<u8>,
    /// Unsigned per the table map's signedness metadata.
    meta_unsigned: bool,
    /// The column's collation id per the table map (0 when it names none).
    charset: u16,
}

/// The width of a fixed-width binary column type, from its declaration.
fn fixed_binary_width(column_type: &str) -> Option<usize> {
    let t = column_type.trim().to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    match base {
        "binary" => t
            .split(['(', ')'])
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .or(Some(1)),
        "uuid" | "inet6" => Some(16),
        "inet4" => Some(4),
        _ => None,
    }
}

/// What the schema history says about a table map's table.
#[derive(Debug, Clone, Copy)]
pub enum Known<'a> {
    /// Inspecting a binlog file: the definition (from DDL seen in the file) is used when it
    /// matches; columns nothing names are called `@1`, `@2`, ….
    Lenient(Option<&'a TableDef>),
    /// The history's definition of the table (if it has one), and why the history may be out
    /// of step (if it may). Without logged names and a matching definition, the table cannot
    /// be decoded.
    History {
        def: Option<&'a TableDef>,
        stale: Option<&'a str>,
    },
}

/// The text encoding of a declared column type: binary types are bytes, text types use their
/// declared character set (UTF-8 when none is declared; bytes that are not UTF-8 stay bytes).
fn declared_text(column_type: &str, charset: Option<&str>) -> Option<TextEncoding> {
    let t = column_type.trim_start().to_ascii_lowercase();
    if [
        "binary",
        "varbinary",
        "tinyblob",
        "blob",
        "mediumblob",
        "longblob",
    ]
    .iter()
    .any(|b| t.starts_with(b))
    {
        return Some(TextEncoding::Binary);
    }
    if [
        "char",
        "varchar",
        "tinytext",
        "text",
        "mediumtext",
        "longtext",
        "enum",
        "set",
        "national",
        // MariaDB's JSON is LONGTEXT (MySQL's binary JSON has a type of its own in the binlog).
        "json",
    ]
    .iter()
    .any(|p| t.starts_with(p))
    {
        return Some(charset.map_or(TextEncoding::Utf8, encoding_of));
    }
    None
}

/// A table map turned into what decoding its rows needs: the schema and one plan per column.
#[derive(Debug, Clone)]
pub struct TablePlan {
    schema: Arc<TableSchema>,
    columns: Vec<ColumnPlan>,
    /// Whether rows can be read with the prepared per-column plans ([`TablePlan::read_image`]);
    /// `false` when the table map's optional metadata did not parse (rows then go through
    /// `mysql_common`'s row parser, which reports the problem).
    prepared: bool,
}

impl TablePlan {
    /// Reads a table map event. Column names, ENUM/SET members, signedness and the key come
    /// from the FULL row metadata when the server logs it, else from the schema history
    /// (`known`); the history also gives the declared column types.
    pub fn from_table_map<'k>(
        tme: &TableMapEvent<'_>,
        known: Known<'k>,
    ) -> Result<Self, DecodeError> {
        let table = format!("{}.{}", tme.database_name(), tme.table_name());
        let err = |column: String, reason: String| DecodeError {
            table: table.clone(),
            column,
            reason,
        };
        let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        let mut names: Vec<String> = Vec::new();
        let mut enums: Vec<Vec<String>> = Vec::new();
        let mut sets: Vec<Vec<String>> = Vec::new();
        let mut key: Vec<usize> = Vec::new();
        for field in tme.iter_optional_meta() {
            let field = field.map_err(|e| err("(metadata)".into(), e.to_string()))?;
            match field {
                OptionalMetadataField::ColumnName(n) => {
                    for name in n.iter_names() {
                        let name = name.map_err(|e| err("(names)".into(), e.to_string()))?;
                        names.push(name.name().into_owned());
                    }
                }
                OptionalMetadataField::EnumStrValue(v) => {
                    check_value_lists(&v).map_err(|e| err("(enum values)".into(), e))?;
                    for e in v.iter_values() {
                        let e = e.map_err(|e| err("(enum values)".into(), e.to_string()))?;
                        enums.push(e.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SetStrValue(v) => {
                    check_value_lists(&v).map_err(|e| err("(set values)".into(), e))?;
                    for e in v.iter_values() {
                        let e = e.map_err(|e| err("(set values)".into(), e.to_string()))?;
                        sets.push(e.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SimplePrimaryKey(pk) => {
                    for k in pk.iter_indexes() {
                        let k = k.map_err(|e| err("(primary key)".into(), e.to_string()))?;
                        key.push(usize::try_from(k).unwrap_or(usize::MAX));
                    }
                }
                OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                    for k in pk.iter_keys() {
                        let k = k.map_err(|e| err("(primary key)".into(), e.to_string()))?;
                        key.push(usize::try_from(k.column_index()).unwrap_or(usize::MAX));
                    }
                }
                _ => {}
            }
        }
        let logged_names = names.len() == count;
        // The history's definition, when it describes this table map: same column count, and
        // the same names where the server logs them.
        let aligned = |def: Option<&'k TableDef>| {
            def.filter(|d| {
                d.columns.len() == count
                    && (!logged_names
                        || d.columns
                            .iter()
                            .zip(&names)
                            .all(|(c, n)| c.name.eq_ignore_ascii_case(n)))
            })
        };
        let def = match known {
            Known::Lenient(def) => aligned(def),
            Known::History { def, stale } => {
                let matching = aligned(def);
                if !logged_names && (matching.is_none() || stale.is_some()) {
                    let why = match (def, stale) {
                        (_, Some(stale)) => {
                            format!("the schema history may be out of step ({stale})")
                        }
                        (None, None) => "the schema history has no definition of it".to_owned(),
                        (Some(d), None) => format!(
                            "the schema history gives it {} columns but the binlog has {count}",
                            d.columns.len()
                        ),
                    };
                    return Err(err(
                        "(names)".into(),
                        format!(
                            "the source logs no column names (binlog_row_metadata = MINIMAL) and {why}"
                        ),
                    ));
                }
                matching
            }
        };
        if !logged_names {
            names = match def {
                Some(d) => d.columns.iter().map(|c| c.name.clone()).collect(),
                None => (1..=count).map(|i| format!("@{i}")).collect(),
            };
        }
        if key.is_empty()
            && let Some(d) = def
        {
            key = d.key_indexes();
        }
        let (mut enum_iter, mut set_iter) = (enums.into_iter(), sets.into_iter());
        let nulls = tme.null_bitmask();
        let (meta_flags, prepared) = match column_flags(tme, count) {
            Ok(flags) => (flags, true),
            Err(_) => (vec![(false, 0); count], false),
        };
        let mut columns = Vec::with_capacity(count);
        let mut schema_columns = Vec::with_capacity(count);
        for (i, name) in names.into_iter().enumerate() {
            let declared = def.and_then(|d| d.columns.get(i));
            let column_type = tme
                .get_column_type(i)
                .map_err(|e| err(name.clone(), e.to_string()))?
                .ok_or_else(|| err(name.clone(), "the table map has no type for it".into()))?;
            let meta = tme.get_column_metadata(i).unwrap_or_default();
            check_metadata(column_type, meta).map_err(|reason| err(name.clone(), reason))?;
            let bit_width = match column_type {
                ColumnType::MYSQL_TYPE_BIT if meta.len() >= 2 => {
                    meta[1].saturating_mul(8).saturating_add(meta[0])
                }
                _ => 0,
            };
            let members = |logged: Option<Vec<String>>| {
                logged
                    .or_else(|| declared.map(|c| c.members.clone()))
                    .unwrap_or_default()
            };
            let plan = ColumnPlan {
                column_type,
                bit_width,
                enum_values: if column_type == ColumnType::MYSQL_TYPE_ENUM {
                    members(enum_iter.next())
                } else {
                    Vec::new()
                },
                set_values: if column_type == ColumnType::MYSQL_TYPE_SET {
                    members(set_iter.next())
                } else {
                    Vec::new()
                },
                unsigned: def.is_some_and(|d| d.is_unsigned(i)),
                text: declared.and_then(|c| declared_text(&c.column_type, c.charset.as_deref())),
                pad_to: declared.and_then(|c| fixed_binary_width(&c.column_type)),
                meta: meta.to_vec(),
                meta_unsigned: meta_flags.get(i).is_some_and(|f| f.0),
                charset: meta_flags.get(i).map_or(0, |f| f.1),
            };
            schema_columns.push(Column {
                source_type: declared.map_or_else(
                    || type_name(column_type).to_owned(),
                    |c| c.column_type.clone(),
                ),
                name,
                nullable: nulls.get(i).as_deref().copied().unwrap_or(true),
            });
            columns.push(plan);
        }
        key.retain(|k| *k < count);
        let schema = TableSchema::new(
            ObjectName {
                database: tme.database_name().into_owned(),
                table: tme.table_name().into_owned(),
            },
            schema_columns,
            key,
        )
        .map_err(|e| err("(schema)".into(), e.to_string()))?;
        Ok(Self {
            schema: Arc::new(schema),
            columns,
            prepared,
        })
    }

    /// Reads past one row image without parsing its values (a row the task does not carry,
    /// counted for its transaction's indexes): each value's width comes from the table map's
    /// metadata and, for variable-length values, the value's own length prefix. A value whose
    /// width this does not know is parsed to find its end.
    pub fn skip_image<'a>(
        &'a self,
        buf: &mut ParseBuf<'a>,
        present: &[bool],
    ) -> Result<(), DecodeError> {
        self.walk_image(buf, present, None).map(drop)
    }

    /// Whether rows can be read with [`TablePlan::read_image`].
    pub fn is_prepared(&self) -> bool {
        self.prepared
    }

    /// Reads one row image from `buf` with the prepared column plans: `present` says which
    /// columns the image holds (the rows event's column bitmap). The same values, byte for
    /// byte, as `mysql_common`'s row parser followed by [`TablePlan::decode_row`] — each value
    /// is parsed by `mysql_common`'s own value parser — without rebuilding the table map's
    /// column descriptions (names, flags, metadata offsets) for every row, which is most of
    /// that parser's cost. Not for partial JSON updates (their after images carry diffs).
    pub fn read_image<'a>(
        &'a self,
        buf: &mut ParseBuf<'a>,
        present: &[bool],
        charsets: &Charsets,
    ) -> Result<Vec<Value>, DecodeError> {
        self.walk_image(buf, present, Some(charsets))
    }

    /// One row image: its null bitmap, then each present value parsed, and converted when
    /// `charsets` is given (else skipped: the values come back empty).
    fn walk_image<'a>(
        &'a self,
        buf: &mut ParseBuf<'a>,
        present: &[bool],
        charsets: Option<&Charsets>,
    ) -> Result<Vec<Value>, DecodeError> {
        let width = self.columns.len();
        let err = |index: usize, reason: String| DecodeError {
            table: self.schema.name().to_string(),
            column: self
                .schema
                .columns()
                .get(index)
                .map_or_else(|| format!("@{}", index + 1), |c| c.name.clone()),
            reason,
        };
        let bit = |i: usize| present.get(i).copied().unwrap_or(false);
        let count = (0..width).filter(|i| bit(*i)).count();
        let nulls: &[u8] = buf
            .checked_eat(count.div_ceil(8))
            .ok_or_else(|| err(0, "the row ends before its null bitmap".into()))?;
        let mut values = if charsets.is_some() {
            vec![Value::Null; width]
        } else {
            Vec::new()
        };
        let mut image_index = 0usize;
        for (index, plan) in self.columns.iter().enumerate() {
            if !bit(index) {
                continue;
            }
            let null = nulls
                .get(image_index / 8)
                .is_none_or(|b| b & (1 << (image_index % 8)) != 0);
            image_index += 1;
            if null {
                continue;
            }
            if charsets.is_none()
                && let Some(width) = value_width(plan.column_type, &plan.meta, buf.0)
            {
                buf.checked_eat(width).ok_or_else(|| {
                    err(
                        index,
                        format!(
                            "the row ends inside this value (binlog type {:?})",
                            plan.column_type
                        ),
                    )
                })?;
                continue;
            }
            let ctx = (
                plan.column_type,
                plan.meta.as_slice(),
                plan.meta_unsigned,
                false,
            );
            let value: BinlogValue<'_> = buf
                .parse(ctx)
                .map_err(|e| err(index, format!("{e} (binlog type {:?})", plan.column_type)))?;
            let Some(charsets) = charsets else {
                continue;
            };
            let unsigned = plan.unsigned || plan.meta_unsigned;
            let encoding = match (plan.charset, plan.text) {
                (0, Some(declared)) => declared,
                (id, _) => charsets.get(id),
            };
            values[index] = decode_value(plan, unsigned, encoding, value).map_err(|reason| {
                err(
                    index,
                    format!("{reason} (binlog type {:?})", plan.column_type),
                )
            })?;
        }
        Ok(values)
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Decodes one row image into values in column order (columns absent from the image, with
    /// a minimal row image, are `Null`).
    /// `present` lists the table's column indexes the image holds, in order (the rows event's
    /// column bitmap): all of them with a FULL row image.
    /// `before` is the row's before image when decoding an update's after image: partial
    /// JSON updates are applied to it.
    pub fn decode_row(
        &self,
        row: BinlogRow,
        present: &[usize],
        charsets: &Charsets,
        before: Option<&[Value]>,
    ) -> Result<Vec<Value>, DecodeError> {
        let mut values = vec![Value::Null; self.columns.len()];
        let columns = row.columns();
        for (i, value) in row.unwrap().into_iter().enumerate() {
            let (Some(column), Some(&index)) = (columns.get(i), present.get(i)) else {
                break;
            };
            let Some(plan) = self.columns.get(index) else {
                break;
            };
            if let BinlogValue::JsonDiff(diffs) = value {
                let base = before.and_then(|b| b.get(index));
                values[index] = apply_json_diffs(base, &diffs).map_err(|reason| DecodeError {
                    table: self.schema.name().to_string(),
                    column: self.schema.columns()[index].name.clone(),
                    reason,
                })?;
                continue;
            }
            let unsigned = plan.unsigned || column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
            let encoding = match (column.character_set(), plan.text) {
                (0, Some(declared)) => declared,
                (id, _) => charsets.get(id),
            };
            values[index] =
                decode_value(plan, unsigned, encoding, value).map_err(|reason| DecodeError {
                    table: self.schema.name().to_string(),
                    column: self.schema.columns()[index].name.clone(),
                    reason: format!("{reason} (binlog type {:?})", plan.column_type),
                })?;
        }
        Ok(values)
    }
}

/// Each column's signedness and collation id as the table map's optional metadata gives them,
/// in the order `mysql_common`'s row parser assigns them (signedness to numeric columns,
/// collations to character columns, then to ENUM and SET columns).
fn column_flags(tme: &TableMapEvent<'_>, count: usize) -> std::io::Result<Vec<(bool, u16)>> {
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    let mut signedness = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut enum_and_set = meta.iter_enum_and_set_charset();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(Some(column_type)) = tme.get_column_type(i) else {
            return Err(std::io::Error::other("no column type"));
        };
        let unsigned = column_type
            .is_numeric_type()
            .then(|| signedness.next())
            .flatten()
            .unwrap_or_default();
        let charset = if column_type.is_character_type() {
            charsets.next().transpose()?.unwrap_or_default()
        } else if column_type.is_enum_or_set_type() {
            enum_and_set.next().transpose()?.unwrap_or_default()
        } else {
            0
        };
        out.push((unsigned, charset));
    }
    Ok(out)
}

/// MySQL's binary JSON as JSON. The direct conversion refuses opaque values (MySQL's DECIMAL,
/// DATE, TIME, DATETIME inside JSON); the structured parse renders them as MySQL prints them
/// (dates and times as strings, decimals as exact strings, anything else as
/// `base64:type<N>:…`).
fn jsonb_to_json(j: mysql_common::binlog::jsonb::Value<'_>) -> Result<serde_json::Value, String> {
    match serde_json::Value::try_from(j.clone()) {
        Ok(json) => Ok(json),
        Err(_) => {
            opaque_decimals_fit(&j, 0)?;
            Ok(serde_json::Value::from(
                j.parse().map_err(|e| format!("binary JSON: {e}"))?,
            ))
        }
    }
}

/// Refuses a DECIMAL inside binary JSON whose scale exceeds its precision (or over MySQL's 65
/// digits) before `mysql_common` parses it: its size computation underflows there and the
/// allocation it asks for aborts the process (found by the fuzzer). Walks arrays and objects
/// down to MySQL's nesting limit.
fn opaque_decimals_fit(
    j: &mysql_common::binlog::jsonb::Value<'_>,
    depth: u32,
) -> Result<(), String> {
    use mysql_common::binlog::jsonb::Value as J;
    const NEWDECIMAL: u8 = 246;
    if depth > 100 {
        return Err("binary JSON nested deeper than MySQL allows".into());
    }
    let bad = |e: std::io::Error| format!("binary JSON: {e}");
    match j {
        J::Opaque(o) if o.value_type() as u8 == NEWDECIMAL => match o.data_raw() {
            [precision, scale, ..] if scale <= precision && *precision <= 65 => Ok(()),
            [precision, scale, ..] => Err(format!(
                "binary JSON holds a DECIMAL of precision {precision} and scale {scale}, which no server writes"
            )),
            _ => Err("binary JSON holds a truncated DECIMAL".into()),
        },
        J::SmallArray(a) => a
            .iter()
            .try_for_each(|v| opaque_decimals_fit(&v.map_err(bad)?, depth + 1)),
        J::LargeArray(a) => a
            .iter()
            .try_for_each(|v| opaque_decimals_fit(&v.map_err(bad)?, depth + 1)),
        J::SmallObject(o) => o
            .iter()
            .try_for_each(|v| opaque_decimals_fit(&v.map_err(bad)?.1, depth + 1)),
        J::LargeObject(o) => o
            .iter()
            .try_for_each(|v| opaque_decimals_fit(&v.map_err(bad)?.1, depth + 1)),
        _ => Ok(()),
    }
}

/// The whole new document of a partial JSON update: the diffs applied to the before image's.
fn apply_json_diffs(
    before: Option<&Value>,
    diffs: &[mysql_common::binlog::jsondiff::JsonDiff<'_>],
) -> Result<Value, String> {
    use mysql_common::binlog::jsondiff::JsonDiffOperation as Op;
    let Some(Value::Json(text)) = before else {
        // Only when inspecting a file with partial row images (live capture refuses those
        // first): without the old document, show the changes themselves.
        let changes = diffs
            .iter()
            .map(|d| {
                let value = d.value().cloned().map(jsonb_to_json).transpose()?;
                Ok(serde_json::json!({
                    "op": format!("{:?}", d.operation()).to_ascii_lowercase(),
                    "path": d.path_str(),
                    "value": value,
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(Value::Json(
            serde_json::json!({ "partial_json_changes": changes }).to_string(),
        ));
    };
    let mut doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the before image's JSON: {e}"))?;
    for d in diffs {
        let op = match d.operation() {
            Op::REPLACE => json_diff::DiffOp::Replace,
            Op::INSERT => json_diff::DiffOp::Insert,
            Op::REMOVE => json_diff::DiffOp::Remove,
        };
        let value = d.value().cloned().map(jsonb_to_json).transpose()?;
        json_diff::apply(&mut doc, &d.path_str(), op, value)?;
    }
    Ok(Value::Json(doc.to_string()))
}

fn decode_value(
    plan: &ColumnPlan,
    unsigned: bool,
    encoding: TextEncoding,
    value: BinlogValue<'_>,
) -> Result<Value, String> {
    use ColumnType as T;
    let v = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => return Ok(Value::Json(jsonb_to_json(j)?.to_string())),
        BinlogValue::JsonDiff(_) => {
            return Err("a partial JSON update outside an update's after image".into());
        }
    };
    if v == MyValue::NULL {
        return Ok(Value::Null);
    }
    let bytes = |v: MyValue| match v {
        MyValue::Bytes(b) => Ok(b),
        other => Err(format!("expected bytes, got {other:?}")),
    };
    Ok(match plan.column_type {
        T::MYSQL_TYPE_TINY => integer(v, 8, unsigned)?,
        T::MYSQL_TYPE_SHORT => integer(v, 16, unsigned)?,
        T::MYSQL_TYPE_INT24 => integer(v, 24, unsigned)?,
        T::MYSQL_TYPE_LONG => integer(v, 32, unsigned)?,
        T::MYSQL_TYPE_LONGLONG => integer(v, 64, unsigned)?,
        T::MYSQL_TYPE_FLOAT => match v {
            MyValue::Float(f) => Value::Float(f),
            other => return Err(format!("expected a float, got {other:?}")),
        },
        T::MYSQL_TYPE_DOUBLE => match v {
            MyValue::Double(f) => Value::Double(f),
            other => return Err(format!("expected a double, got {other:?}")),
        },
        T::MYSQL_TYPE_NEWDECIMAL | T::MYSQL_TYPE_DECIMAL => {
            let text = String::from_utf8(bytes(v)?).map_err(|e| e.to_string())?;
            Value::Decimal(Decimal::try_from(text).map_err(|e| e.to_string())?)
        }
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => match v {
            MyValue::Date(year, month, day, ..) => Value::Date(Date { year, month, day }),
            other => return Err(format!("expected a date, got {other:?}")),
        },
        T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_DATETIME2 => match v {
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
        T::MYSQL_TYPE_TIMESTAMP => match v {
            MyValue::Int(seconds) => Value::Timestamp(Timestamp { seconds, micros: 0 }),
            other => return Err(format!("expected epoch seconds, got {other:?}")),
        },
        T::MYSQL_TYPE_TIMESTAMP2 => {
            let text = String::from_utf8(bytes(v)?).map_err(|e| e.to_string())?;
            Value::Timestamp(parse_epoch(&text)?)
        }
        T::MYSQL_TYPE_TIME | T::MYSQL_TYPE_TIME2 => match v {
            MyValue::Time(negative, days, h, minutes, seconds, micros) => {
                let hours =
                    u16::try_from(days * 24 + u32::from(h)).map_err(|_| "TIME out of range")?;
                Value::Time(Time {
                    negative,
                    hours,
                    minutes,
                    seconds,
                    micros,
                })
            }
            other => return Err(format!("expected a time, got {other:?}")),
        },
        T::MYSQL_TYPE_YEAR => {
            let text = String::from_utf8(bytes(v)?).map_err(|e| e.to_string())?;
            let y: u16 = text.parse().map_err(|_| format!("YEAR `{text}`"))?;
            // mysql_common adds 1900 to the stored byte; 0 is MySQL's zero year.
            Value::Year(if y == 1900 { 0 } else { y })
        }
        T::MYSQL_TYPE_BIT => Value::Bit(Bits {
            width: plan.bit_width,
            bytes: bytes(v)?,
        }),
        T::MYSQL_TYPE_ENUM => match v {
            MyValue::Int(i) => {
                let index = u16::try_from(i).map_err(|_| format!("ENUM index {i}"))?;
                let name = match index {
                    0 => String::new(),
                    n => plan.enum_values.get(usize::from(n) - 1).cloned().ok_or_else(|| {
                        format!("ENUM index {n} has no name: the server logs no ENUM_STR_VALUE metadata (set binlog_row_metadata = FULL)")
                    })?,
                };
                Value::Enum(EnumValue { index, name })
            }
            other => return Err(format!("expected an ENUM index, got {other:?}")),
        },
        T::MYSQL_TYPE_SET => {
            let raw = bytes(v)?;
            let mask = raw
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            if plan.set_values.is_empty() && mask != 0 {
                return Err("SET members have no names: the server logs no SET_STR_VALUE metadata (set binlog_row_metadata = FULL)".into());
            }
            let names = plan
                .set_values
                .iter()
                .enumerate()
                .filter(|(bit, _)| *bit < 64 && mask & (1 << bit) != 0)
                .map(|(_, n)| n.clone())
                .collect();
            Value::Set(SetValue { mask, names })
        }
        T::MYSQL_TYPE_GEOMETRY => Value::Geometry(bytes(v)?),
        T::MYSQL_TYPE_JSON => Value::Json(String::from_utf8(bytes(v)?).map_err(|e| e.to_string())?),
        T::MYSQL_TYPE_STRING
        | T::MYSQL_TYPE_VAR_STRING
        | T::MYSQL_TYPE_VARCHAR
        | T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB => match (text(bytes(v)?, encoding), plan.pad_to) {
            (Value::Bytes(mut b), Some(n)) if b.len() < n => {
                b.resize(n, 0);
                Value::Bytes(b)
            }
            (v, _) => v,
        },
        // MySQL 9 VECTOR: little-endian 32-bit floats, kept as bytes.
        T::MYSQL_TYPE_VECTOR => Value::Bytes(bytes(v)?),
        other => return Err(format!("column type {other:?} is not supported")),
    })
}

/// An integer of `bits` bits as the column declares it. `mysql_common` reports some values in
/// the other signedness (unsigned TINYINT 255 as `Int(255)`; signed MEDIUMINT -1 as
/// `Int(16777215)`): reinterpret the same bits.
fn integer(v: MyValue, bits: u32, unsigned: bool) -> Result<Value, String> {
    let raw: i128 = match v {
        MyValue::Int(i) => i128::from(i),
        MyValue::UInt(u) => i128::from(u),
        other => return Err(format!("expected an integer, got {other:?}")),
    };
    let modulus = 1i128 << bits;
    let half = 1i128 << (bits - 1);
    if unsigned {
        let u = if raw < 0 { raw + modulus } else { raw };
        u64::try_from(u)
            .map(Value::UInt)
            .map_err(|_| format!("{raw} does not fit {bits} unsigned bits"))
    } else {
        let i = if raw >= half { raw - modulus } else { raw };
        i64::try_from(i)
            .map(Value::Int)
            .map_err(|_| format!("{raw} does not fit {bits} signed bits"))
    }
}

fn text(raw: Vec<u8>, encoding: TextEncoding) -> Value {
    match encoding {
        TextEncoding::Binary | TextEncoding::Unknown => Value::Bytes(raw),
        TextEncoding::Utf8 => match String::from_utf8(raw) {
            Ok(s) => Value::String(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        TextEncoding::Other(enc) => {
            match enc.decode_without_bom_handling_and_without_replacement(&raw) {
                Some(s) => Value::String(s.into_owned()),
                None => Value::Bytes(raw),
            }
        }
        TextEncoding::Utf32 => {
            let chars: Option<String> = raw
                .len()
                .is_multiple_of(4)
                .then(|| {
                    raw.chunks_exact(4)
                        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                        .collect()
                })
                .flatten();
            chars.map_or(Value::Bytes(raw), Value::String)
        }
    }
}

/// "1709212455.678000" or "1709212455" → seconds and microseconds.
fn parse_epoch(text: &str) -> Result<Timestamp, String> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = secs.parse().map_err(|_| format!("TIMESTAMP `{text}`"))?;
    let micros = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<6}");
        padded[..6]
            .parse()
            .map_err(|_| format!("TIMESTAMP `{text}`"))?
    };
    Ok(Timestamp { seconds, micros })
}

/// The SQL name of a binlog column type (the binlog does not say length, precision or
/// signedness; the catalog does).
/// Checks the ENUM or SET member lists of a table map before `mysql_common` reads them: it
/// reserves memory for the member count a list claims before reading the members, and a damaged
/// count makes that allocation abort the process (no panic to catch). A list of N members takes
/// at least N bytes, so a count beyond the bytes left is refused. Found by the fuzzer.
fn check_value_lists(lists: &impl mysql_common::proto::MySerialize) -> Result<(), String> {
    let mut raw = Vec::new();
    lists.serialize(&mut raw);
    check_value_list_bytes(&raw)
}

fn check_value_list_bytes(raw: &[u8]) -> Result<(), String> {
    let mut buf = raw;
    let bad = |what: &str| Err(format!("the table map's member lists are damaged ({what})"));
    while !buf.is_empty() {
        let Some(count) = lenenc(&mut buf) else {
            return bad("a member count");
        };
        if count > buf.len() as u64 {
            return bad("more members than bytes");
        }
        for _ in 0..count {
            match lenenc(&mut buf) {
                Some(len) if len <= buf.len() as u64 => buf = &buf[len as usize..],
                _ => return bad("a member's length"),
            }
        }
    }
    Ok(())
}

/// A length-encoded integer of the MySQL protocol.
fn lenenc(buf: &mut &[u8]) -> Option<u64> {
    let (&first, rest) = buf.split_first()?;
    let width = match first {
        0..=0xfa => {
            *buf = rest;
            return Some(u64::from(first));
        }
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    *buf = &rest[width..];
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(bytes);
    Some(u64::from_le_bytes(v))
}

/// Refuses column metadata no server writes where `mysql_common` would trust it blindly: a
/// DECIMAL whose scale exceeds its precision makes its row parser compute a buffer size that
/// wraps around, and the allocation aborts the process (no panic to catch). MySQL allows
/// DECIMAL(65,30), MariaDB DECIMAL(65,38). Found by the fuzzer.
/// The bytes one non-null value of a column takes in a row image (length prefix included),
/// from the column's binlog type, its table-map metadata and, for variable-length values, the
/// prefix at the start of `rest`; `None` where the width is not known this way (an unusual
/// type or metadata, or a prefix cut short), and the value is then parsed instead. The widths
/// are the ones `mysql_common`'s value parser consumes (its `BinlogValue` deserializer); the
/// differential tests check skipping against reading on every fixture and fuzz input.
/// Written here because the parser has no size-only mode: it copies every string value.
fn value_width(column_type: ColumnType, meta: &[u8], rest: &[u8]) -> Option<usize> {
    use ColumnType as T;
    // Fractional-second bytes of TIME2/DATETIME2/TIMESTAMP2 for a precision.
    let fraction = |dec: u8| match dec {
        1 | 2 => 1,
        3 | 4 => 2,
        5 | 6 => 3,
        _ => 0,
    };
    // A little-endian length prefix of `n` bytes, then that many bytes.
    let prefixed = |n: usize| {
        let prefix = rest.get(..n)?;
        let len = prefix
            .iter()
            .rev()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        n.checked_add(len)
    };
    match column_type {
        T::MYSQL_TYPE_TINY | T::MYSQL_TYPE_YEAR => Some(1),
        T::MYSQL_TYPE_SHORT => Some(2),
        T::MYSQL_TYPE_INT24 | T::MYSQL_TYPE_NEWDATE | T::MYSQL_TYPE_TIME => Some(3),
        T::MYSQL_TYPE_LONG | T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_TIMESTAMP => Some(4),
        T::MYSQL_TYPE_LONGLONG | T::MYSQL_TYPE_DOUBLE | T::MYSQL_TYPE_DATETIME => Some(8),
        T::MYSQL_TYPE_TIMESTAMP2 => Some(4 + fraction(*meta.first()?)),
        T::MYSQL_TYPE_DATETIME2 => Some(5 + fraction(*meta.first()?)),
        T::MYSQL_TYPE_TIME2 => Some(3 + fraction(*meta.first()?)),
        T::MYSQL_TYPE_NEWDECIMAL => {
            let (precision, scale) = (usize::from(*meta.first()?), usize::from(*meta.get(1)?));
            (scale <= precision)
                .then(|| mysql_common::binlog::decimal::decimal_bin_size(precision, scale))
        }
        T::MYSQL_TYPE_BIT => {
            let bits = usize::from(*meta.get(1)?) * 8 + usize::from(*meta.first()?);
            Some(bits.div_ceil(8))
        }
        T::MYSQL_TYPE_ENUM => match meta.get(1)? {
            n @ (1 | 2) => Some(usize::from(*n)),
            _ => None,
        },
        T::MYSQL_TYPE_SET => Some(usize::from(*meta.get(1)?)),
        T::MYSQL_TYPE_JSON => prefixed(4),
        T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB
        | T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_GEOMETRY
        | T::MYSQL_TYPE_VECTOR => match meta.first()? {
            n @ 1..=4 => prefixed(usize::from(*n)),
            _ => None,
        },
        T::MYSQL_TYPE_VARCHAR | T::MYSQL_TYPE_VAR_STRING => {
            let max = usize::from(*meta.first()?) | (usize::from(*meta.get(1)?) << 8);
            prefixed(if max < 256 { 1 } else { 2 })
        }
        T::MYSQL_TYPE_STRING => {
            let (byte0, byte1) = (usize::from(*meta.first()?), usize::from(*meta.get(1)?));
            let max = match byte0 {
                0 => byte0 | (byte1 << 8),
                _ if byte0 & 0x30 != 0x30 => byte1 | (((byte0 & 0x30) ^ 0x30) << 4),
                _ => byte1,
            };
            prefixed(if max < 256 { 1 } else { 2 })
        }
        _ => None,
    }
}

fn check_metadata(column_type: ColumnType, meta: &[u8]) -> Result<(), String> {
    if let ColumnType::MYSQL_TYPE_NEWDECIMAL = column_type {
        let (precision, scale) = match meta {
            [p, s, ..] => (*p, *s),
            _ => return Err("the table map gives a DECIMAL no precision and scale".into()),
        };
        if precision == 0 || precision > 65 || scale > 38 || scale > precision {
            return Err(format!(
                "the table map gives a DECIMAL precision {precision} and scale {scale}, which no server writes (the event is damaged)"
            ));
        }
    }
    Ok(())
}

fn type_name(t: ColumnType) -> &'static str {
    use ColumnType as T;
    match t {
        T::MYSQL_TYPE_TINY => "tinyint",
        T::MYSQL_TYPE_SHORT => "smallint",
        T::MYSQL_TYPE_INT24 => "mediumint",
        T::MYSQL_TYPE_LONG => "int",
        T::MYSQL_TYPE_LONGLONG => "bigint",
        T::MYSQL_TYPE_FLOAT => "float",
        T::MYSQL_TYPE_DOUBLE => "double",
        T::MYSQL_TYPE_NEWDECIMAL | T::MYSQL_TYPE_DECIMAL => "decimal",
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => "date",
        T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_DATETIME2 => "datetime",
        T::MYSQL_TYPE_TIMESTAMP | T::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        T::MYSQL_TYPE_TIME | T::MYSQL_TYPE_TIME2 => "time",
        T::MYSQL_TYPE_YEAR => "year",
        T::MYSQL_TYPE_BIT => "bit",
        T::MYSQL_TYPE_ENUM => "enum",
        T::MYSQL_TYPE_SET => "set",
        T::MYSQL_TYPE_JSON => "json",
        T::MYSQL_TYPE_GEOMETRY => "geometry",
        T::MYSQL_TYPE_STRING => "char",
        T::MYSQL_TYPE_VAR_STRING | T::MYSQL_TYPE_VARCHAR => "varchar",
        T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB => "blob",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_claiming_more_members_than_bytes_are_refused() {
        let check = |raw: &[u8]| check_value_list_bytes(raw).is_ok();
        // Two columns: ('a','bc') and ('x').
        assert!(check(&[2, 1, b'a', 2, b'b', b'c', 1, 1, b'x']));
        // A count of 2^40 members in a few bytes.
        assert!(!check(&[0xfe, 0, 0, 0, 0, 0, 1, 0, 0, 1, b'a']));
        assert!(!check(&[1, 5, b'a']));
        assert!(!check(&[0xfb]));
        let mut b: &[u8] = &[0xfc, 0x34, 0x12, 9];
        assert_eq!(lenenc(&mut b), Some(0x1234));
        assert_eq!(b, &[9]);
    }

    #[test]
    fn decimal_metadata_no_server_writes_is_refused() {
        let t = ColumnType::MYSQL_TYPE_NEWDECIMAL;
        assert!(check_metadata(t, &[65, 30]).is_ok());
        assert!(check_metadata(t, &[10, 0]).is_ok());
        for bad in [&[2u8, 5][..], &[0, 0], &[66, 2], &[65, 39], &[10]] {
            let e = check_metadata(t, bad).unwrap_err();
            assert!(e.contains("DECIMAL"), "{e}");
        }
        assert!(check_metadata(ColumnType::MYSQL_TYPE_LONG, &[]).is_ok());
    }

    #[test]
    fn integers_take_the_declared_signedness() {
        assert_eq!(
            integer(MyValue::Int(255), 8, true).unwrap(),
            Value::UInt(255)
        );
        assert_eq!(
            integer(MyValue::Int(-1), 8, true).unwrap(),
            Value::UInt(255)
        );
        assert_eq!(
            integer(MyValue::Int(16_777_215), 24, false).unwrap(),
            Value::Int(-1)
        );
        assert_eq!(
            integer(MyValue::Int(-8_388_608), 24, false).unwrap(),
            Value::Int(-8_388_608)
        );
        assert_eq!(
            integer(MyValue::UInt(u64::MAX), 64, true).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            integer(MyValue::Int(i64::MIN), 64, false).unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            integer(MyValue::Int(-1), 64, true).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert!(integer(MyValue::Double(1.0), 8, false).is_err());
    }

    #[test]
    fn epochs() {
        assert_eq!(
            parse_epoch("1709212455.678000").unwrap(),
            Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000
            }
        );
        assert_eq!(
            parse_epoch("1").unwrap(),
            Timestamp {
                seconds: 1,
                micros: 0
            }
        );
        assert_eq!(
            parse_epoch("5.12").unwrap(),
            Timestamp {
                seconds: 5,
                micros: 120_000
            }
        );
        assert!(parse_epoch("x").is_err());
    }

    #[test]
    fn charsets() {
        let c = Charsets::from_collations([
            (8, "latin1".to_owned()),
            (45, "utf8mb4".to_owned()),
            (1, "big5".to_owned()),
            (99, "filename".to_owned()),
        ]);
        assert_eq!(
            text(vec![0x63, 0x61, 0x66, 0xe9, 0x80], c.get(8)),
            Value::String("café€".into())
        );
        assert_eq!(
            text("ünï 🚀".as_bytes().to_vec(), c.get(45)),
            Value::String("ünï 🚀".into())
        );
        assert_eq!(text(vec![1, 2], c.get(63)), Value::Bytes(vec![1, 2]));
        assert_eq!(
            text(vec![1, 2], c.get(99)),
            Value::Bytes(vec![1, 2]),
            "unknown charsets keep their bytes"
        );
        assert_eq!(
            text(vec![0xff, 0xfe], c.get(45)),
            Value::Bytes(vec![0xff, 0xfe]),
            "invalid UTF-8 is kept, not mangled"
        );
        assert!(matches!(c.get(1), TextEncoding::Other(_)));
    }
}
