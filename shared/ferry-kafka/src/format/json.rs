//! The one JSON writer of a value, shared by the JSON formats: [`JsonValue`] serializes a
//! [`Value`] straight into a record's bytes (`serde_json::to_writer`), or into a
//! `serde_json::Value` where a format builds its record as a tree.
//!
//! | Ferry value | JSON |
//! |---|---|
//! | `Int`, `UInt`, `Year` | number (BIGINT UNSIGNED up to 18446744073709551615, exactly) |
//! | `Float`, `Double` | number |
//! | `Decimal` | string, exact digits |
//! | `String`, `Enum`, `Json` | string (ENUM by name; JSON as its text, like Debezium's `io.debezium.data.Json`) |
//! | `Set` | string, members comma-separated |
//! | `Bytes`, `Geometry` | base64 string |
//! | `Bit` | BIT(1) boolean, wider BIT base64 of the big-endian bytes (as Debezium) |
//! | `Date` | `"2024-02-29"`; a zero date `"0000-00-00"` |
//! | `DateTime` | `"2024-02-29T23:59:58.123456"` (no zone: DATETIME has none) |
//! | `Timestamp` | `"2024-02-29T13:14:15.678Z"` (UTC); the zero timestamp `"0000-00-00T00:00:00Z"` |
//! | `Time` | `"-838:59:59"`, `"12:34:56.000001"` |

use std::fmt;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use ferry_domain::value::{IsoDateTime, IsoTimestamp, Value};
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

/// A value as JSON (the table above).
#[derive(Debug, Clone, Copy)]
pub struct JsonValue<'a>(pub &'a Value);

/// Members of a SET, comma-separated.
struct Members<'a>(&'a [String]);

impl fmt::Display for Members<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(m)?;
        }
        Ok(())
    }
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Year(y) => s.serialize_u16(*y),
            Value::Float(f) => s.serialize_f32(*f),
            Value::Double(d) => s.serialize_f64(*d),
            Value::Decimal(d) => s.serialize_str(d.as_str()),
            Value::String(t) | Value::Json(t) => s.serialize_str(t),
            Value::Bytes(b) | Value::Geometry(b) => {
                s.collect_str(&Base64Display::new(b, &STANDARD))
            }
            Value::Date(d) => s.collect_str(d),
            Value::DateTime(dt) => s.collect_str(&IsoDateTime(dt)),
            Value::Time(t) => s.collect_str(t),
            Value::Timestamp(t) => s.collect_str(&IsoTimestamp(t)),
            Value::Bit(b) if b.width == 1 => s.serialize_bool(b.to_u64() == 1),
            Value::Bit(b) => s.collect_str(&Base64Display::new(&b.bytes, &STANDARD)),
            Value::Enum(e) => s.serialize_str(&e.name),
            Value::Set(set) => s.collect_str(&Members(&set.names)),
        }
    }
}

/// Writes `v` as JSON to `out` (writing to a `Vec` cannot fail).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(out, &JsonValue(v));
}

/// Writes `s` as a JSON string to `out`.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(out, s);
}

/// One value as a `serde_json::Value` (the table above).
pub fn value(v: &Value) -> Json {
    serde_json::to_value(JsonValue(v)).unwrap_or(Json::Null)
}
