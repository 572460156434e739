//! Exact column values.
//!
//! Every MySQL/MariaDB column type maps to one variant that keeps the value exactly as the
//! source stored it: DECIMAL as its digits, unsigned integers without overflow, temporal values
//! field by field (so zero dates and `'0000-00-00'` survive), ENUM and SET with their names,
//! BIT with its width, JSON as JSON text, binary strings as bytes. The output formats decide how
//! to print them (DECIMAL as a string, binary as base64, …); nothing is lost before that.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;

/// A column value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Null,
    /// TINYINT … BIGINT, signed.
    Int(i64),
    /// TINYINT … BIGINT UNSIGNED.
    UInt(u64),
    Float(f32),
    Double(f64),
    Decimal(Decimal),
    /// CHAR, VARCHAR, TEXT, already converted from the column's charset.
    String(String),
    /// BINARY, VARBINARY, BLOB; and text of a charset Ferry cannot convert, kept raw.
    Bytes(Vec<u8>),
    Date(Date),
    Time(Time),
    DateTime(DateTime),
    /// TIMESTAMP: an instant, seconds and microseconds since the Unix epoch, UTC.
    Timestamp(Timestamp),
    Year(u16),
    Bit(Bits),
    Enum(EnumValue),
    Set(SetValue),
    /// JSON, as JSON text (MySQL's binary JSON is converted to text by the decoder).
    Json(String),
    /// GEOMETRY and its subtypes, as MySQL's internal form (SRID + WKB).
    Geometry(Vec<u8>),
}

impl Value {
    /// The bytes the value holds (text, binary, digits, members), or 8 for a fixed-width value:
    /// what bounds a row's memory (see `RowChange::size_bytes`).
    pub fn size_bytes(&self) -> usize {
        match self {
            Self::String(s) | Self::Json(s) => s.len(),
            Self::Bytes(b) | Self::Geometry(b) => b.len(),
            Self::Decimal(d) => d.as_str().len(),
            Self::Bit(b) => b.bytes.len(),
            Self::Enum(e) => e.name.len(),
            Self::Set(set) => set.names.iter().map(String::len).sum(),
            _ => 8,
        }
    }

    /// Appends the value to a key's bytes: equal values give equal bytes, and a tag and a
    /// length keep different values of a multi-column key apart.
    pub fn write_key(&self, out: &mut Vec<u8>) {
        let mut put = |tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Self::Null => put(0, &[]),
            Self::Int(i) => put(1, &i.to_le_bytes()),
            Self::UInt(u) => put(2, &u.to_le_bytes()),
            Self::Float(f) => put(3, &f.to_le_bytes()),
            Self::Double(f) => put(4, &f.to_le_bytes()),
            Self::Decimal(d) => put(5, d.as_str().as_bytes()),
            Self::String(s) => put(6, s.as_bytes()),
            Self::Bytes(b) | Self::Geometry(b) => put(7, b),
            Self::Json(s) => put(8, s.as_bytes()),
            Self::Year(y) => put(9, &y.to_le_bytes()),
            Self::Enum(e) => put(10, e.name.as_bytes()),
            Self::Set(s) => put(11, &s.mask.to_le_bytes()),
            Self::Bit(b) => put(12, &b.to_u64().to_le_bytes()),
            Self::Date(d) => put(13, d.to_string().as_bytes()),
            Self::Time(t) => put(14, t.to_string().as_bytes()),
            Self::DateTime(d) => put(15, d.to_string().as_bytes()),
            Self::Timestamp(t) => put(
                16,
                &[t.seconds.to_le_bytes(), i64::from(t.micros).to_le_bytes()].concat(),
            ),
        }
    }
}

/// An exact decimal number as digits: `-?[0-9]+(\.[0-9]+)?`, scale as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Decimal(String);

impl Decimal {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Decimal {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let digits = s.strip_prefix('-').unwrap_or(&s);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) || s.len() > 200 {
            return Err(InvalidInput::new(
                "decimal",
                format!(
                    "`{}` is not a decimal number",
                    s.chars().take(40).collect::<String>()
                ),
                "a decimal is digits with an optional sign and fraction, like -12.50",
            ));
        }
        Ok(Self(s))
    }
}

impl From<Decimal> for String {
    fn from(d: Decimal) -> String {
        d.0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DATE, field by field; any field may be zero, as MySQL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// `0000-00-00`.
    pub fn is_zero(&self) -> bool {
        self.year == 0 && self.month == 0 && self.day == 0
    }

    /// Whether it is a real calendar date (no zero part, the day exists in that month).
    pub fn is_calendar_date(&self) -> bool {
        chrono::NaiveDate::from_ymd_opt(self.year.into(), self.month.into(), self.day.into())
            .is_some()
            && self.year > 0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A TIME: a signed duration of up to 838:59:59.999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Time {
    pub negative: bool,
    pub hours: u16,
    pub minutes: u8,
    pub seconds: u8,
    pub micros: u32,
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        write!(
            f,
            "{:02}:{:02}:{:02}",
            self.hours, self.minutes, self.seconds
        )?;
        write_micros(f, self.micros)
    }
}

/// A DATETIME: a wall-clock reading without a time zone; date parts may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

impl DateTime {
    pub fn is_zero(&self) -> bool {
        self.date.is_zero()
            && self.hour == 0
            && self.minute == 0
            && self.second == 0
            && self.micros == 0
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        )?;
        write_micros(f, self.micros)
    }
}

/// A TIMESTAMP: an instant. `seconds == 0 && micros == 0` is MySQL's zero timestamp
/// (`0000-00-00 00:00:00`), which is not the Unix epoch: MySQL cannot store the epoch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub micros: u32,
}

impl Timestamp {
    pub fn is_zero(&self) -> bool {
        self.seconds == 0 && self.micros == 0
    }

    /// The instant in UTC, or `None` for the zero timestamp.
    pub fn to_utc(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.is_zero() {
            return None;
        }
        chrono::DateTime::from_timestamp(self.seconds, self.micros * 1_000)
    }
}

/// Writes `.ffffff` when there is a fraction, with trailing zeros trimmed (no allocation: this
/// runs for every temporal value of every record).
fn write_micros(f: &mut fmt::Formatter<'_>, micros: u32) -> fmt::Result {
    if micros == 0 {
        return Ok(());
    }
    let mut digits = [b'0'; 7];
    digits[0] = b'.';
    let mut m = micros;
    for d in digits[1..].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    let end = digits.iter().rposition(|d| *d != b'0').map_or(1, |i| i + 1);
    f.write_str(std::str::from_utf8(&digits[..end]).unwrap_or_default())
}

/// A DATETIME in ISO form: date and time joined by `T` (`2024-02-29T23:59:58.123456`).
#[derive(Debug, Clone, Copy)]
pub struct IsoDateTime<'a>(pub &'a DateTime);

impl fmt::Display for IsoDateTime<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{}T{:02}:{:02}:{:02}",
            d.date, d.hour, d.minute, d.second
        )?;
        write_micros(f, d.micros)
    }
}

/// A TIMESTAMP as an RFC 3339 instant in UTC (`2024-02-29T13:14:15.678Z`; fraction digits by
/// milliseconds or microseconds, none when whole), or `0000-00-00T00:00:00Z` for the zero
/// timestamp.
#[derive(Debug, Clone, Copy)]
pub struct IsoTimestamp<'a>(pub &'a Timestamp);

impl fmt::Display for IsoTimestamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike, Timelike};
        let Some(utc) = self.0.to_utc() else {
            return f.write_str("0000-00-00T00:00:00Z");
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            utc.year(),
            utc.month(),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )?;
        let micros = self.0.micros;
        if micros == 0 {
            f.write_str("Z")
        } else if micros.is_multiple_of(1000) {
            write!(f, ".{:03}Z", micros / 1000)
        } else {
            write!(f, ".{micros:06}Z")
        }
    }
}

/// A BIT(n) value: `width` bits, big-endian bytes as MySQL stores them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bits {
    pub width: u8,
    pub bytes: Vec<u8>,
}

impl Bits {
    /// The value as an integer (BIT is at most 64 bits wide).
    pub fn to_u64(&self) -> u64 {
        self.bytes
            .iter()
            .rev()
            .take(8)
            .rev()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b))
    }
}

/// An ENUM value: its 1-based index and its name (index 0 is the empty error value MySQL
/// stores for invalid input in non-strict mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnumValue {
    pub index: u16,
    pub name: String,
}

/// A SET value: the bitmask and the names of its members, in definition order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetValue {
    pub mask: u64,
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_forms_match_chrono_rfc3339() {
        for (seconds, micros) in [
            (1_709_212_455, 0),
            (1_709_212_455, 678_000),
            (1_709_212_455, 123_456),
            (1, 1),
            (2_147_483_647, 999_999),
        ] {
            let t = Timestamp { seconds, micros };
            let chrono = t
                .to_utc()
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert_eq!(IsoTimestamp(&t).to_string(), chrono);
        }
        assert_eq!(
            IsoTimestamp(&Timestamp {
                seconds: 0,
                micros: 0
            })
            .to_string(),
            "0000-00-00T00:00:00Z"
        );
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 1,
            minute: 2,
            second: 3,
            micros: 450_000,
        };
        assert_eq!(IsoDateTime(&dt).to_string(), "2024-02-29T01:02:03.45");
        assert_eq!(dt.to_string(), "2024-02-29 01:02:03.45");
        let whole = DateTime { micros: 0, ..dt };
        assert_eq!(IsoDateTime(&whole).to_string(), "2024-02-29T01:02:03");
        let tiny = DateTime { micros: 1, ..dt };
        assert_eq!(tiny.to_string(), "2024-02-29 01:02:03.000001");
    }

    #[test]
    fn decimals_are_exact_strings() {
        for ok in [
            "0",
            "-12.50",
            "99999999999999999999999999999999999999.123456789",
        ] {
            assert_eq!(Decimal::try_from(ok.to_owned()).unwrap().as_str(), ok);
        }
        for bad in ["", "-", "1.", ".5", "1e5", "1.2.3", "NaN", "+1"] {
            assert!(Decimal::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn temporal_display_keeps_zero_and_fraction() {
        let zero = DateTime {
            date: Date {
                year: 0,
                month: 0,
                day: 0,
            },
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        };
        assert!(zero.is_zero());
        assert_eq!(zero.to_string(), "0000-00-00 00:00:00");
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 23,
            minute: 59,
            second: 58,
            micros: 120_000,
        };
        assert_eq!(dt.to_string(), "2024-02-29 23:59:58.12");
        assert!(dt.date.is_calendar_date());
        assert!(
            !Date {
                year: 2023,
                month: 2,
                day: 29
            }
            .is_calendar_date()
        );
        assert!(
            !Date {
                year: 2023,
                month: 0,
                day: 1
            }
            .is_calendar_date()
        );
        let t = Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 1,
        };
        assert_eq!(t.to_string(), "-838:59:59.000001");
        assert_eq!(
            Timestamp {
                seconds: 0,
                micros: 0
            }
            .to_utc(),
            None
        );
        assert_eq!(
            Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000
            }
            .to_utc()
            .unwrap()
            .to_rfc3339(),
            "2024-02-29T13:14:15.678+00:00"
        );
    }

    #[test]
    fn bits_as_integers() {
        assert_eq!(
            Bits {
                width: 1,
                bytes: vec![1]
            }
            .to_u64(),
            1
        );
        assert_eq!(
            Bits {
                width: 12,
                bytes: vec![0x0a, 0xbc]
            }
            .to_u64(),
            0xabc
        );
        assert_eq!(
            Bits {
                width: 64,
                bytes: vec![0xff; 8]
            }
            .to_u64(),
            u64::MAX
        );
    }

    #[test]
    fn values_round_trip_through_json() {
        let values = vec![
            Value::Null,
            Value::UInt(u64::MAX),
            Value::Int(i64::MIN),
            Value::Decimal(Decimal::try_from("-0.001".to_owned()).unwrap()),
            Value::Bytes(vec![0, 255]),
            Value::Enum(EnumValue {
                index: 2,
                name: "b".into(),
            }),
            Value::Set(SetValue {
                mask: 5,
                names: vec!["a".into(), "c".into()],
            }),
            Value::Json(r#"{"a": [1, 2.5, null]}"#.into()),
            Value::Timestamp(Timestamp {
                seconds: 1,
                micros: 5,
            }),
        ];
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap(), values);
    }
}
