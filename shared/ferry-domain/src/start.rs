//! Where a change-tracking task's first start begins reading the binlog
//! (`POST …/task/start` with `{"start": {"position" | "gtid" | "time": …}}`).
//!
//! Only the shape is checked here; whether the source still holds the point is the worker's
//! and the precheck's business (`ferry_mysql::start`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gtid::GtidSet;
use crate::position::{BinlogFile, Position};

/// A chosen start point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawStart", into = "RawStart")]
pub enum StartPoint {
    /// A file and offset, as `SHOW MASTER STATUS` or a checkpoint prints them: the stream
    /// starts with the event at that offset, which must be a transaction boundary.
    Position { file: BinlogFile, offset: u64 },
    /// A GTID position (MariaDB `domain-server-sequence`, one per domain) or set (MySQL
    /// `uuid:interval`): the stream starts with the first transaction it does not contain.
    Gtid(GtidSet),
    /// A moment: the stream starts with the first transaction that committed at or after it.
    Time(DateTime<Utc>),
}

impl fmt::Display for StartPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Position { file, offset } => write!(f, "position {file}:{offset}"),
            Self::Gtid(g) => write!(f, "GTID {g}"),
            Self::Time(t) => write!(f, "time {}", t.to_rfc3339()),
        }
    }
}

/// The JSON form: an object with exactly one of the three fields, each a string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gtid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
}

impl TryFrom<RawStart> for StartPoint {
    type Error = String;

    fn try_from(raw: RawStart) -> Result<Self, Self::Error> {
        match (raw.position, raw.gtid, raw.time) {
            (Some(p), None, None) => {
                let position: Position = p.parse().map_err(|e| {
                    format!("start.position {p:?}: {e}; give `file:offset`, e.g. `mariadb-bin.000003:1234`")
                })?;
                if position.gtid().is_some() {
                    return Err(format!(
                        "start.position {p:?} names a GTID too: give the GTID as start.gtid instead, or only `file:offset`"
                    ));
                }
                if position.offset() < 4 {
                    return Err(format!(
                        "start.position {p:?}: a binlog's first event is at offset 4; give 4 or a later event's offset"
                    ));
                }
                Ok(Self::Position {
                    file: position.file().clone(),
                    offset: position.offset(),
                })
            }
            (None, Some(g), None) => g.parse().map(Self::Gtid).map_err(|e| {
                format!(
                    "start.gtid {g:?}: {e}; give a MariaDB GTID position (`0-1-100`, one per domain) or a MySQL GTID set (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100`)"
                )
            }),
            (None, None, Some(t)) => DateTime::parse_from_rfc3339(&t)
                .map(|t| Self::Time(t.with_timezone(&Utc)))
                .map_err(|e| {
                    format!("start.time {t:?}: {e}; give an RFC 3339 time, e.g. `2026-12-01T10:00:00Z`")
                }),
            _ => Err(
                "start needs exactly one of `position`, `gtid` and `time` (leave `start` out to start from now)"
                    .into(),
            ),
        }
    }
}

impl From<StartPoint> for RawStart {
    fn from(s: StartPoint) -> Self {
        let mut raw = RawStart {
            position: None,
            gtid: None,
            time: None,
        };
        match s {
            StartPoint::Position { file, offset } => {
                raw.position = Some(format!("{file}:{offset}"))
            }
            StartPoint::Gtid(g) => raw.gtid = Some(g.to_string()),
            StartPoint::Time(t) => {
                raw.time = Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<StartPoint, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_parses_and_prints_back() {
        for v in [
            json!({"position": "mariadb-bin.000003:1234"}),
            json!({"gtid": "0-1-100"}),
            json!({"gtid": "0-1-100,1-2-7"}),
            json!({"gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100"}),
            json!({"time": "2026-12-01T10:00:00Z"}),
            json!({"time": "2026-12-01T10:00:00.250Z"}),
        ] {
            let s = parse(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&s).unwrap(), v);
        }
        assert_eq!(
            parse(json!({"time": "2026-12-01T12:00:00+02:00"})).unwrap(),
            StartPoint::Time("2026-12-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(
            parse(json!({"position": "binlog.000001:4"})).unwrap(),
            StartPoint::Position {
                file: "binlog.000001".parse().unwrap(),
                offset: 4
            }
        );
    }

    #[test]
    fn a_bad_start_says_what_to_give() {
        for (v, says) in [
            (json!({}), "exactly one of"),
            (
                json!({"position": "b.000001:4", "time": "2026-12-01T10:00:00Z"}),
                "exactly one of",
            ),
            (json!({"position": "b.000001"}), "file:offset"),
            (json!({"position": "b.000001:2"}), "offset 4"),
            (json!({"position": "b.000001:9@0-1-2"}), "start.gtid"),
            (json!({"gtid": "0-1"}), "MariaDB GTID position"),
            (json!({"time": "yesterday"}), "RFC 3339"),
            (json!({"time": "2026-12-01 10:00:00"}), "RFC 3339"),
            (json!({"lsn": "1"}), "unknown field"),
            (json!({"position": 4}), "invalid type"),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.contains(says), "{v}: {e}");
        }
    }
}
