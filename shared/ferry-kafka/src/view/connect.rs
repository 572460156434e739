//! Debezium's Connect-encoded values read back by their schema (JsonConverter's `schema` part),
//! for the one readable shape of `GET …/changes`: DECIMAL bytes as their digits, epoch days and
//! micro/milliseconds as dates and times, BIT bytes in the readable mapping's byte order. Any
//! other value, and a value that does not match its schema, is shown as written.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, NaiveDate};
use serde_json::{Map, Value as Json};

/// `image` (a row image object) with each field read by its schema among `fields`.
pub(super) fn readable_image(image: Json, fields: &[Json]) -> Json {
    let Json::Object(values) = image else {
        return image;
    };
    let out: Map<String, Json> = values
        .into_iter()
        .map(|(name, value)| {
            let schema = fields.iter().find(|f| f["field"] == name.as_str());
            let value = match schema {
                Some(s) => readable(value, s).unwrap_or_else(|v| v),
                None => value,
            };
            (name, value)
        })
        .collect();
    Json::Object(out)
}

/// One value by its field schema: `Err` gives the value back unchanged.
fn readable(value: Json, schema: &Json) -> Result<Json, Json> {
    let Some(name) = schema["name"].as_str() else {
        return Err(value);
    };
    let text = |s: Option<String>| s.map(Json::String);
    let converted = match name {
        "org.apache.kafka.connect.data.Decimal" => value
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|bytes| {
                let scale = schema["parameters"]["scale"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                text(Some(decimal(&bytes, scale)))
            }),
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => value
            .as_i64()
            .and_then(|days| {
                NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(Duration::days(days))
            })
            .and_then(|d| text(Some(d.format("%Y-%m-%d").to_string()))),
        "io.debezium.time.MicroTime" => value.as_i64().and_then(|us| text(Some(time(us)))),
        "io.debezium.time.NanoTime" => value.as_i64().and_then(|ns| text(Some(time(ns / 1000)))),
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            value.as_i64().and_then(|ms| text(Some(time(ms * 1000))))
        }
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => value
            .as_i64()
            .and_then(|ms| text(datetime(ms.checked_mul(1000)?))),
        "io.debezium.time.MicroTimestamp" => value.as_i64().and_then(|us| text(datetime(us))),
        "io.debezium.time.NanoTimestamp" => value.as_i64().and_then(|ns| text(datetime(ns / 1000))),
        "io.debezium.data.Bits" => {
            value
                .as_str()
                .and_then(|b| STANDARD.decode(b).ok())
                .map(|mut bytes| {
                    // Debezium writes the least significant byte first; the readable mapping the most.
                    bytes.reverse();
                    Json::String(STANDARD.encode(bytes))
                })
        }
        _ => None,
    };
    converted.ok_or(value)
}

/// The digits of a two's-complement big-endian unscaled value with `scale` fraction digits.
fn decimal(bytes: &[u8], scale: usize) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude: the two's complement of a negative value.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    // Repeated division by 10 of the big-endian magnitude.
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut remainder = 0u16;
        for b in &mut magnitude {
            let v = (remainder << 8) | u16::from(*b);
            // v < 2560, so v / 10 < 256.
            *b = u8::try_from(v / 10).unwrap_or(u8::MAX);
            remainder = v % 10;
        }
        digits.push(char::from(b'0' + u8::try_from(remainder).unwrap_or(0)));
    }
    while digits.len() <= scale {
        digits.push('0');
    }
    let mut out = String::with_capacity(digits.len() + 2);
    if negative {
        out.push('-');
    }
    for (i, d) in digits.iter().rev().enumerate() {
        if scale > 0 && i == digits.len() - scale {
            out.push('.');
        }
        out.push(*d);
    }
    out
}

/// A TIME from microseconds (negative and past 24 hours too), `[-]H:MM:SS[.ffffff]`.
fn time(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let (seconds, fraction) = (us / 1_000_000, us % 1_000_000);
    let mut out = format!(
        "{sign}{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction > 0 {
        let f = format!(".{fraction:06}");
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

/// A DATETIME (the wall clock, read as UTC) from epoch microseconds, ISO-8601 without a zone.
fn datetime(us: i64) -> Option<String> {
    let t = DateTime::from_timestamp_micros(us)?.naive_utc();
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let fraction = us.rem_euclid(1_000_000);
    if fraction > 0 {
        let f = format!(".{fraction:06}");
        out.push_str(f.trim_end_matches('0'));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_their_digits() {
        // 12345.67 in DECIMAL(7,2): unscaled 1234567 = 0x12D687.
        assert_eq!(decimal(&[0x12, 0xD6, 0x87], 2), "12345.67");
        assert_eq!(decimal(&[0xED, 0x29, 0x79], 2), "-12345.67");
        assert_eq!(decimal(&[0x05], 2), "0.05");
        assert_eq!(decimal(&[0x00], 0), "0");
        assert_eq!(decimal(&[0xFF], 1), "-0.1");
        assert_eq!(decimal(&[0x07, 0xCF], 2), "19.99");
    }

    #[test]
    fn temporal_values_are_text() {
        assert_eq!(time(45_296_000_001), "12:34:56.000001");
        assert_eq!(time(-3_020_399_000_000), "-838:59:59");
        assert_eq!(
            datetime(1_709_251_198_123_456).unwrap(),
            "2024-02-29T23:59:58.123456"
        );
        assert_eq!(datetime(0).unwrap(), "1970-01-01T00:00:00");
    }

    #[test]
    fn an_image_is_read_by_its_schema() {
        let fields = [
            json!({"field": "id", "type": "int32"}),
            json!({"field": "total", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                   "parameters": {"scale": "2", "connect.decimal.precision": "10"}}),
            json!({"field": "day", "type": "int32", "name": "io.debezium.time.Date"}),
            json!({"field": "at", "type": "int64", "name": "io.debezium.time.Timestamp"}),
            json!({"field": "bits", "type": "bytes", "name": "io.debezium.data.Bits"}),
        ];
        let image = json!({"id": 7, "total": "B88=", "day": 19782, "at": 1_709_251_198_123_i64,
                           "bits": "AQI=", "extra": "kept"});
        assert_eq!(
            readable_image(image, &fields),
            json!({"id": 7, "total": "19.99", "day": "2024-02-29",
                   "at": "2024-02-29T23:59:58.123", "bits": "AgE=", "extra": "kept"})
        );
        let wrong = json!({"total": 5});
        assert_eq!(
            readable_image(wrong.clone(), &fields),
            wrong,
            "shown as written"
        );
    }
}
