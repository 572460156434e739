//! What every format needs of a row change: the columns a record carries (the task's column
//! mask, key columns always kept), the row's key, and its images as JSON.

use ferry_domain::change::RowChange;
use ferry_domain::selection::ColumnMask;
use ferry_domain::value::Value;
use serde_json::{Map, Value as Json};

use super::json::{value, write_str, write_value};

/// The indexes of the columns a record of `row` carries, in column order.
pub(crate) fn carried<'a>(
    row: &'a RowChange,
    columns: &'a ColumnMask,
) -> impl Iterator<Item = usize> + Clone + 'a {
    (0..row.table().columns().len()).filter(move |i| columns.carries(*i))
}

/// The indexes of the row's key columns: the key, or every column of a table without one.
pub(crate) fn key_indexes(row: &RowChange) -> impl Iterator<Item = usize> + '_ {
    let table = row.table();
    let all = table.key().is_empty();
    let width = if all { table.columns().len() } else { 0 };
    table.key().iter().copied().chain(0..width)
}

/// The image holding the row's key: the after image, or the before image of a delete.
fn key_image(row: &RowChange) -> &[Value] {
    row.after().or(row.before()).unwrap_or_default()
}

/// The record key as JSON: `{"id": 7}`; the whole row for a table without a key.
pub(crate) fn key_of(row: &RowChange) -> Json {
    let table = row.table();
    let image = key_image(row);
    let mut obj = Map::new();
    for i in key_indexes(row) {
        if let (Some(col), Some(v)) = (table.columns().get(i), image.get(i)) {
            obj.insert(col.name.clone(), value(v));
        }
    }
    Json::Object(obj)
}

/// The record key written to bytes; the same JSON as [`key_of`].
pub(crate) fn write_key(out: &mut Vec<u8>, row: &RowChange) {
    write_object(out, row, key_image(row), key_indexes(row));
}

/// `{"name": value, …}` of `values` at `indexes`, written to bytes.
fn write_object(
    out: &mut Vec<u8>,
    row: &RowChange,
    values: &[Value],
    indexes: impl Iterator<Item = usize>,
) {
    let table = row.table();
    out.push(b'{');
    let mut first = true;
    for i in indexes {
        if let (Some(col), Some(v)) = (table.columns().get(i), values.get(i)) {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, &col.name);
            out.push(b':');
            write_value(out, v);
        }
    }
    out.push(b'}');
}

/// A row image as a JSON object of the carried columns.
pub(crate) fn image(row: &RowChange, values: &[Value], columns: &ColumnMask) -> Json {
    let table = row.table();
    let mut obj = Map::with_capacity(values.len());
    for i in carried(row, columns) {
        if let (Some(col), Some(v)) = (table.columns().get(i), values.get(i)) {
            obj.insert(col.name.clone(), value(v));
        }
    }
    Json::Object(obj)
}

/// A row image written to bytes; the same JSON as [`image`].
pub(crate) fn write_image(
    out: &mut Vec<u8>,
    row: &RowChange,
    values: &[Value],
    columns: &ColumnMask,
) {
    write_object(out, row, values, carried(row, columns));
}

/// The carried columns whose value an update changed, as (index, before value).
pub(crate) fn changed<'a>(
    row: &'a RowChange,
    columns: &'a ColumnMask,
) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
    let (before, after) = (
        row.before().unwrap_or_default(),
        row.after().unwrap_or_default(),
    );
    carried(row, columns).filter_map(move |i| match (before.get(i), after.get(i)) {
        (Some(b), Some(a)) if b != a => Some((i, b)),
        _ => None,
    })
}

/// The fraction digits of a DATETIME(n), TIMESTAMP(n) or TIME(n) column (its declared type,
/// `datetime(6)`); 0 for other columns and for a type without `(n)`.
pub(crate) fn fraction_digits(source_type: &str) -> u8 {
    let t = source_type.trim().to_ascii_lowercase();
    if !["datetime", "timestamp", "time"]
        .iter()
        .any(|k| t.starts_with(k))
    {
        return 0;
    }
    t.split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().parse::<u8>().ok())
        .map_or(0, |n| n.min(6))
}

/// Whether the column is BINARY(n) (fixed width, padded with zero bytes).
pub(crate) fn is_fixed_binary(source_type: &str) -> bool {
    source_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("binary")
}

/// `write!` into a record's bytes (formatted parts of a hand-written JSON record).
pub(crate) struct Bytes<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// BINARY(n) values without the zero bytes MySQL pads them with: the binlog does not carry them
/// (Ferry's decoder restores them for the readable mapping and for sync), and neither Maxwell
/// nor Canal writes them.
pub(crate) fn trim_zero_padding(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|x| *x != 0).map_or(0, |p| p + 1);
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_digits_come_from_the_declared_type() {
        assert_eq!(fraction_digits("datetime(6)"), 6);
        assert_eq!(fraction_digits("timestamp(3)"), 3);
        assert_eq!(fraction_digits("TIME(4)"), 4);
        assert_eq!(fraction_digits("datetime"), 0);
        assert_eq!(fraction_digits("decimal(10,2)"), 0);
        assert!(is_fixed_binary("binary(10)"));
        assert!(!is_fixed_binary("varbinary(10)"));
    }
}
