//! Temporal values as MySQL prints them (`2012-01-01 22:32:34.123`), the text Maxwell and Canal
//! write: exactly the column's fraction digits (truncated, as MySQL stores them), TIMESTAMP in
//! UTC.

use ferry_domain::value::{DateTime, Time, Timestamp};

/// `.` and the first `fsp` digits of the microseconds.
fn push_fraction(text: &mut String, micros: u32, fsp: u8) {
    if fsp > 0 {
        let digits = format!("{micros:06}");
        text.push('.');
        text.push_str(&digits[..usize::from(fsp.min(6))]);
    }
}

/// `YYYY-MM-DD hh:mm:ss[.f…]`, each part as stored (zero parts included).
pub(crate) fn datetime_text(dt: &DateTime, fsp: u8) -> String {
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.date.year, dt.date.month, dt.date.day, dt.hour, dt.minute, dt.second
    );
    push_fraction(&mut text, dt.micros, fsp);
    text
}

/// `0000-00-00 00:00:00` with `fsp` zero fraction digits.
pub(crate) fn zero_datetime(fsp: u8) -> String {
    let mut text = "0000-00-00 00:00:00".to_owned();
    push_fraction(&mut text, 0, fsp);
    text
}

/// A TIMESTAMP in UTC; `None` for the zero timestamp.
pub(crate) fn timestamp_text(t: &Timestamp, fsp: u8) -> Option<String> {
    let utc = t.to_utc()?;
    let mut text = utc.format("%Y-%m-%d %H:%M:%S").to_string();
    push_fraction(&mut text, t.micros, fsp);
    Some(text)
}

/// `[-]hh:mm:ss[.f…]` (hours past 99 unpadded).
pub(crate) fn time_text(t: &Time, fsp: u8) -> String {
    let mut text = format!(
        "{}{:02}:{:02}:{:02}",
        if t.negative { "-" } else { "" },
        t.hours,
        t.minutes,
        t.seconds
    );
    push_fraction(&mut text, t.micros, fsp);
    text
}

#[cfg(test)]
mod tests {
    use ferry_domain::value::Date;

    use super::*;

    #[test]
    fn fraction_digits_are_the_columns() {
        let dt = DateTime {
            date: Date {
                year: 2012,
                month: 1,
                day: 1,
            },
            hour: 22,
            minute: 32,
            second: 34,
            micros: 123_456,
        };
        assert_eq!(datetime_text(&dt, 0), "2012-01-01 22:32:34");
        assert_eq!(datetime_text(&dt, 3), "2012-01-01 22:32:34.123");
        assert_eq!(zero_datetime(4), "0000-00-00 00:00:00.0000");
        let t = Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 0,
        };
        assert_eq!(time_text(&t, 0), "-838:59:59");
        let ts = Timestamp {
            seconds: 1,
            micros: 500_000,
        };
        assert_eq!(timestamp_text(&ts, 1).unwrap(), "1970-01-01 00:00:01.5");
        assert_eq!(
            timestamp_text(
                &Timestamp {
                    seconds: 0,
                    micros: 0
                },
                2
            ),
            None
        );
    }
}
