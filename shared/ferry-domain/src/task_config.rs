//! A task's configuration: where it reads, where it writes, what it carries and how it delivers.

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::endpoint::Endpoint;
use crate::instance::Mode;
use crate::selection::ObjectSelection;
use crate::sync::SyncOptions;

/// The record format of a change-tracking topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Debezium's change event envelope (`before`, `after`, `op`, `source`, `transaction`).
    #[default]
    DebeziumJson,
    CanalJson,
    MaxwellJson,
    /// A DTS-style Avro record.
    DtsAvro,
}

/// How a format writes its records and values (`delivery.values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Values {
    /// As the tool the format is named after writes them with its default settings (the
    /// default for a new task).
    Compatible,
    /// Ferry's readable mapping from before: ISO-8601 temporal strings, exact decimal strings,
    /// keys in alphabetical order. A task configured before `values` existed keeps it.
    Readable,
}

/// Maxwell's `output_*` switches, for `maxwell-json` with `values: compatible`: the record
/// shape Maxwell writes with the same settings. Defaults are Maxwell's (its CLI's, where its
/// documentation differs: `output_xoffset` is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxwellOptions {
    /// `position`: `file:offset` of the rows event.
    pub output_binlog_position: bool,
    /// `gtid`: the transaction's GTID (null without GTIDs).
    pub output_gtid_position: bool,
    /// `xid` on every row and `commit: true` on a transaction's last row.
    pub output_commit_info: bool,
    /// `xoffset`: the row's index in its transaction (not on the last row).
    pub output_xoffset: bool,
    /// Null values in `data` and `old` (else left out).
    pub output_nulls: bool,
    /// `server_id`.
    pub output_server_id: bool,
    /// `primary_key`: the key's values, in key order.
    pub output_primary_keys: bool,
    /// `primary_key_columns`: the key's column names.
    pub output_primary_key_columns: bool,
    /// Zero dates as `null` (else `"0000-00-00…"`).
    pub output_null_zerodates: bool,
}

impl Default for MaxwellOptions {
    fn default() -> Self {
        Self {
            output_binlog_position: false,
            output_gtid_position: false,
            output_commit_info: true,
            output_xoffset: true,
            output_nulls: true,
            output_server_id: false,
            output_primary_keys: false,
            output_primary_key_columns: false,
            output_null_zerodates: false,
        }
    }
}

/// Debezium's connector and converter settings that change its records, for `debezium-json`
/// with `values: compatible`; defaults are Debezium's (and Kafka Connect's JsonConverter with
/// `schemas.enable=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebeziumOptions {
    /// The `{"schema": …, "payload": …}` envelope of JsonConverter's `schemas.enable` (on);
    /// off writes the payload alone.
    pub schemas_enable: bool,
    /// `decimal.handling.mode`.
    pub decimal_handling_mode: DecimalMode,
    /// `bigint.unsigned.handling.mode`.
    pub bigint_unsigned_handling_mode: BigintUnsignedMode,
    /// `binary.handling.mode`: BINARY, VARBINARY and BLOB values.
    pub binary_handling_mode: BinaryMode,
    /// `time.precision.mode`: DATE, TIME and DATETIME values.
    pub time_precision_mode: TimePrecisionMode,
    /// `tombstones.on.delete`: a delete is followed by a record with the same key and no value,
    /// so that a compacted topic drops the row (on; Kafka topics only).
    pub tombstones_on_delete: bool,
}

impl Default for DebeziumOptions {
    fn default() -> Self {
        Self {
            schemas_enable: true,
            decimal_handling_mode: DecimalMode::Precise,
            bigint_unsigned_handling_mode: BigintUnsignedMode::Long,
            binary_handling_mode: BinaryMode::Bytes,
            time_precision_mode: TimePrecisionMode::AdaptiveTimeMicroseconds,
            tombstones_on_delete: true,
        }
    }
}

/// Debezium's `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalMode {
    /// Connect's `Decimal`: the unscaled value's bytes (base64 in JSON).
    #[default]
    Precise,
    /// The exact digits as a string.
    String,
    /// A double (loses digits past 15–17).
    Double,
}

/// Debezium's `time.precision.mode` (the two its MySQL connector offers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecisionMode {
    /// DATE as days, TIME as microseconds, DATETIME as milli- or microseconds by its precision.
    #[default]
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own `Date`, `Time` and `Timestamp`: days, milliseconds, milliseconds.
    Connect,
}

/// Debezium's `binary.handling.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BinaryMode {
    /// Connect bytes (base64 in JSON).
    #[default]
    Bytes,
    /// A string of standard base64.
    Base64,
    /// A string of URL-safe base64.
    Base64UrlSafe,
    /// A string of lower-case hex.
    Hex,
}

/// Debezium's `bigint.unsigned.handling.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BigintUnsignedMode {
    /// A long: values past 2^63 - 1 wrap to negative numbers, as Debezium writes them.
    #[default]
    Long,
    /// Connect's `Decimal` with scale 0: exact.
    Precise,
}

/// How records are spread over the topic's partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum Partitioning {
    /// One partition: the whole stream in commit order.
    #[default]
    Single,
    /// `partitions` partitions by primary-key hash: per-row order only.
    KeyHash { partitions: u16 },
}

/// Where a tracking task's records go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// The task's Kafka topic.
    #[default]
    Kafka,
    /// A Kinesis data stream.
    Kinesis,
}

/// The longest retention a topic may be given.
pub const MAX_RETENTION_HOURS: u32 = 24 * 365;
/// The most partitions a keyed topic may have.
pub const MAX_PARTITIONS: u16 = 256;

/// How a change-tracking task delivers its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub partitioning: Partitioning,
    #[serde(default)]
    pub destination: Destination,
    /// The Kinesis data stream, when `destination` is `kinesis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_stream: Option<String>,
    /// How long the topic keeps records, in hours (default 7 days).
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u32,
    /// Also write a BEGIN and a COMMIT record around each transaction that has selected changes
    /// (Debezium's transaction metadata).
    #[serde(default)]
    pub transaction_records: bool,
    /// Also write a heartbeat record when the source reports it is idle.
    #[serde(default)]
    pub heartbeat_records: bool,
    /// The value mapping; when a task is configured without it, see [`Delivery::state_values`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
    /// Maxwell's `output_*` switches (`maxwell-json`, `values: compatible`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub maxwell: MaxwellOptions,
    /// Debezium's settings (`debezium-json`, `values: compatible`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub debezium: DebeziumOptions,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

fn default_retention_hours() -> u32 {
    7 * 24
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            format: Format::default(),
            partitioning: Partitioning::default(),
            destination: Destination::default(),
            kinesis_stream: None,
            retention_hours: default_retention_hours(),
            transaction_records: false,
            heartbeat_records: false,
            values: None,
            maxwell: MaxwellOptions::default(),
            debezium: DebeziumOptions::default(),
        }
    }
}

impl Delivery {
    /// The value mapping the task's records use: as configured; `readable` for a task
    /// configured before `values` existed (its topic keeps its shape).
    pub fn values(&self) -> Values {
        self.values.unwrap_or(Values::Readable)
    }

    /// States the value mapping of a task being configured without one: the mapping its topic
    /// already has (`previous`, the configuration it replaces, in the same format), so a
    /// reconfiguration never changes a topic's shape; `compatible` for a new task or another
    /// format.
    pub fn state_values(&mut self, previous: Option<&Delivery>) {
        if self.values.is_none() {
            self.values = Some(match previous {
                Some(p) if p.format == self.format => p.values(),
                _ => Values::Compatible,
            });
        }
    }

    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.maxwell != MaxwellOptions::default()
            && (self.format != Format::MaxwellJson || self.values() != Values::Compatible)
        {
            return Err(InvalidInput::new(
                "maxwell",
                "Maxwell's output switches apply to maxwell-json with values \"compatible\" only",
                "remove `maxwell`, or use format maxwell-json",
            ));
        }
        if self.debezium != DebeziumOptions::default()
            && (self.format != Format::DebeziumJson || self.values() != Values::Compatible)
        {
            return Err(InvalidInput::new(
                "debezium",
                "Debezium's settings apply to debezium-json with values \"compatible\" only",
                "remove `debezium`, or use format debezium-json",
            ));
        }
        if !(1..=MAX_RETENTION_HOURS).contains(&self.retention_hours) {
            return Err(InvalidInput::new(
                "retention_hours",
                format!("{} hours is out of range", self.retention_hours),
                format!("give 1 to {MAX_RETENTION_HOURS} hours (default 168, 7 days)"),
            ));
        }
        if let Partitioning::KeyHash { partitions } = self.partitioning
            && !(2..=MAX_PARTITIONS).contains(&partitions)
        {
            return Err(InvalidInput::new(
                "partitioning.partitions",
                format!("{partitions} partitions is out of range"),
                format!(
                    "give 2 to {MAX_PARTITIONS} partitions, or use {{\"type\": \"single\"}} for one partition in commit order"
                ),
            ));
        }
        match (self.destination, self.kinesis_stream.as_deref()) {
            (Destination::Kinesis, None) => {
                return Err(InvalidInput::new(
                    "kinesis_stream",
                    "a Kinesis destination needs a stream",
                    "name the data stream in `kinesis_stream`",
                ));
            }
            (Destination::Kafka, Some(_)) => {
                return Err(InvalidInput::new(
                    "kinesis_stream",
                    "a stream is named but the destination is Kafka",
                    "set `destination` to `kinesis`, or leave out `kinesis_stream`",
                ));
            }
            (Destination::Kinesis, Some(stream)) => {
                let valid = (1..=128).contains(&stream.len())
                    && stream
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(InvalidInput::new(
                        "kinesis_stream",
                        format!("`{stream}` is not a Kinesis stream name"),
                        "use 1 to 128 letters, digits, `_`, `.` or `-`",
                    ));
                }
                if self.partitioning != Partitioning::Single {
                    return Err(InvalidInput::new(
                        "partitioning",
                        "Kinesis spreads records over shards by key itself",
                        "leave out `partitioning` for a Kinesis destination",
                    ));
                }
            }
            (Destination::Kafka, None) => {}
        }
        Ok(())
    }
}

/// The table the heartbeat writer keeps, in the database it is given.
pub const HEARTBEAT_TABLE: &str = "ferry_heartbeat";

/// The heartbeat writer: the worker writes the time into a small table on the source every
/// `interval_ms`, and reads it back from the binlog, so the source delay is measured to the
/// millisecond even when no selected table changes. Its rows are Ferry's bookkeeping and never
/// delivered. The source user needs `CREATE` and `INSERT, DELETE` on the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatWriter {
    /// The database that holds the table `ferry_heartbeat`.
    pub database: String,
    #[serde(default = "default_heartbeat_ms")]
    pub interval_ms: u32,
}

fn default_heartbeat_ms() -> u32 {
    1000
}

impl HeartbeatWriter {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        crate::selection::check_identifier("database", &self.database)?;
        if !(100..=60_000).contains(&self.interval_ms) {
            return Err(InvalidInput::new(
                "interval_ms",
                format!("{} ms is out of range", self.interval_ms),
                "give 100 to 60000 ms (default 1000)",
            ));
        }
        Ok(())
    }
}

/// Archiving the source's binlog into the deployment's archive bucket (docs/capture.md,
/// "Binlog archive"): the worker copies the binlog as the server writes it, ahead of the task
/// and while the task is stopped, so a file the server purges before the task read it is read
/// from the archive instead of failing the task with `binlog_purged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinlogArchive {
    /// Days an archived piece is kept once the task no longer needs it (the worker deletes
    /// older pieces behind the task's checkpoint; the bucket's lifecycle rule is the backstop).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    7
}

impl Default for BinlogArchive {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
        }
    }
}

impl BinlogArchive {
    /// The longest retention: the template's lifecycle rule deletes anything older.
    pub const MAX_RETENTION_DAYS: u32 = 365;

    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=Self::MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(InvalidInput::new(
                "retention_days",
                format!("{} days is out of range", self.retention_days),
                format!("give 1 to {} days (default 7)", Self::MAX_RETENTION_DAYS),
            ));
        }
        Ok(())
    }
}

/// The configuration of a task, as stored (passwords are in Secrets Manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub source: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Endpoint>,
    pub objects: ObjectSelection,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatWriter>,
    /// Archive the source's binlog (off without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<BinlogArchive>,
    /// How a sync task copies and applies (ignored by tracking tasks).
    #[serde(default)]
    pub sync: SyncOptions,
}

impl TaskConfig {
    /// Checks the parts against each other and the mode: a sync task needs a target, a
    /// tracking task has none.
    pub fn validate(&self, mode: Mode) -> Result<(), InvalidInput> {
        self.objects.validate().map_err(|e| e.at("objects"))?;
        self.delivery.validate().map_err(|e| e.at("delivery"))?;
        if let Some(h) = &self.heartbeat {
            h.validate().map_err(|e| e.at("heartbeat"))?;
        }
        if let Some(a) = &self.archive {
            a.validate().map_err(|e| e.at("archive"))?;
        }
        self.sync.validate().map_err(|e| e.at("sync"))?;
        match (mode, &self.target) {
            (Mode::Sync, None) => Err(InvalidInput::new(
                "target",
                "a sync task needs a target database",
                "add a `target` endpoint (mysql, mariadb or postgresql)",
            )),
            (Mode::Tracking, Some(_)) => Err(InvalidInput::new(
                "target",
                "a change-tracking task has no target database",
                "leave out `target`; consumers read the task's topic",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reconfigured_task_keeps_its_topics_value_mapping() {
        let delivery = |format: Format, values: Option<Values>| Delivery {
            format,
            values,
            ..Delivery::default()
        };
        let stated = |mut d: Delivery, previous: Option<&Delivery>| {
            d.state_values(previous);
            d.values
        };
        let legacy = delivery(Format::MaxwellJson, None);
        assert_eq!(
            legacy.values(),
            Values::Readable,
            "configured before `values`"
        );
        assert_eq!(
            stated(delivery(Format::MaxwellJson, None), Some(&legacy)),
            Some(Values::Readable)
        );
        assert_eq!(
            stated(delivery(Format::MaxwellJson, None), None),
            Some(Values::Compatible)
        );
        assert_eq!(
            stated(delivery(Format::CanalJson, None), Some(&legacy)),
            Some(Values::Compatible),
            "another format is another shape anyway"
        );
        assert_eq!(
            stated(delivery(Format::DebeziumJson, None), None),
            Some(Values::Compatible),
            "every format's new tasks"
        );
        let readable_debezium = delivery(Format::DebeziumJson, Some(Values::Readable));
        assert_eq!(
            stated(
                delivery(Format::DebeziumJson, None),
                Some(&readable_debezium)
            ),
            Some(Values::Readable),
            "a debezium topic from before the switch keeps its shape"
        );
        assert_eq!(
            stated(
                delivery(Format::MaxwellJson, Some(Values::Compatible)),
                Some(&legacy)
            ),
            Some(Values::Compatible),
            "a stated mapping is kept"
        );
        assert!(
            delivery(Format::DebeziumJson, Some(Values::Compatible))
                .validate()
                .is_ok(),
            "debezium-json's compatible mapping on request"
        );
        let mut maxwell_options = delivery(Format::DebeziumJson, None);
        maxwell_options.maxwell.output_server_id = true;
        assert!(
            maxwell_options.validate().is_err(),
            "Maxwell's switches on another format"
        );
    }

    use super::*;

    #[test]
    fn delivery_defaults_and_limits() {
        let d: Delivery = serde_json::from_str("{}").unwrap();
        assert_eq!(d, Delivery::default());
        assert_eq!(d.retention_hours, 168);
        let d: Delivery = serde_json::from_str(
            r#"{"format": "canal-json", "partitioning": {"type": "key_hash", "partitions": 8}}"#,
        )
        .unwrap();
        assert!(d.validate().is_ok());
        let d: Delivery =
            serde_json::from_str(r#"{"partitioning": {"type": "key_hash", "partitions": 1}}"#)
                .unwrap();
        assert_eq!(d.validate().unwrap_err().field(), "partitioning.partitions");
        let d: Delivery = serde_json::from_str(r#"{"retention_hours": 0}"#).unwrap();
        assert!(d.validate().is_err());
        assert!(serde_json::from_str::<Delivery>(r#"{"format": "xml"}"#).is_err());
        assert!(serde_json::from_str::<Delivery>(r#"{"partitioning": "single"}"#).is_err());
        assert!(serde_json::from_str::<Delivery>(r#"{"extra": 1}"#).is_err());
        let kinesis = |json: &str| serde_json::from_str::<Delivery>(json).unwrap().validate();
        assert!(kinesis(r#"{"destination": "kinesis", "kinesis_stream": "changes-1.x"}"#).is_ok());
        for bad in [
            r#"{"destination": "kinesis"}"#,
            r#"{"kinesis_stream": "s"}"#,
            r#"{"destination": "kinesis", "kinesis_stream": "a b"}"#,
            r#"{"destination": "kinesis", "kinesis_stream": "s", "partitioning": {"type": "key_hash", "partitions": 4}}"#,
        ] {
            assert!(kinesis(bad).is_err(), "{bad}");
        }
    }
}
