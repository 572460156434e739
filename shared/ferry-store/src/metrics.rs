//! Task metrics: one item per task and minute (`INS#<id>` / `METRICS#<minute>`), written by the
//! worker that runs the task and expired by DynamoDB's TTL two hours after the minute.
//!
//! Reports add to the minute's counters (`ADD`), so two workers reporting the same minute (a
//! takeover) never lose each other's rows; the latest rates and delay are set (`SET`).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use ferry_domain::id::InstanceId;
use ferry_domain::metrics::{ConnectionFailure, HISTORY, MinuteMetrics, Side};

use crate::item::{Item, n, s};
use crate::keys::{PK, SK, TTL, instance_pk};
use crate::{Store, StoreError};

const METRICS_SK_PREFIX: &str = "METRICS#";
const FAILURE_SIDE: &str = "failure_side";
const FAILURE_MESSAGE: &str = "failure_message";

/// Minutes are kept this long after they end.
const KEEP: Duration = Duration::hours(2);

fn metrics_sk(minute: DateTime<Utc>) -> String {
    format!(
        "{METRICS_SK_PREFIX}{}",
        minute.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// What one report adds to a minute.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsReport {
    pub minute: DateTime<Utc>,
    /// Rows and bytes since the previous report.
    pub rows: u64,
    pub bytes: u64,
    /// The highest delay this worker saw in the minute.
    pub max_delay_ms: u64,
    pub delay_ms: u64,
    /// Sync tasks: how far the target is behind the source.
    pub target_delay_ms: Option<u64>,
    pub rps: f64,
    pub bps: f64,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Adds `report` to its minute.
    pub async fn report_metrics(
        &self,
        instance: &InstanceId,
        report: &MetricsReport,
    ) -> Result<(), StoreError> {
        let expires = (report.minute + KEEP).timestamp();
        // A tracking task has no target: its minutes have no target delay.
        let (target_set, target_delay) = match report.target_delay_ms {
            Some(ms) => (", #td = :td", Some(n(ms))),
            None => ("", None),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(instance_pk(instance)))
            .key(SK, s(metrics_sk(report.minute)))
            .update_expression(format!(
                "ADD #rows :rows, #bytes :bytes \
                 SET #minute = :minute, #maxd = :maxd, #d = :d, #rps = :rps, #bps = :bps, \
                 #at = :at, #ttl = :ttl{target_set} REMOVE #fs, #fm"
            ))
            .expression_attribute_names("#fs", FAILURE_SIDE)
            .expression_attribute_names("#fm", FAILURE_MESSAGE)
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#bytes", "bytes")
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_names("#maxd", "max_delay_ms")
            .expression_attribute_names("#d", "delay_ms")
            .expression_attribute_names("#rps", "rps")
            .expression_attribute_names("#bps", "bps")
            .expression_attribute_names("#at", "updated_at")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":rows", n(report.rows))
            .expression_attribute_values(":bytes", n(report.bytes))
            .expression_attribute_values(":minute", s(report.minute.to_rfc3339()))
            .expression_attribute_values(":maxd", n(report.max_delay_ms))
            .expression_attribute_values(":d", n(report.delay_ms))
            .expression_attribute_values(":rps", n(finite(report.rps)))
            .expression_attribute_values(":bps", n(finite(report.bps)))
            .expression_attribute_values(":at", s(report.at.to_rfc3339()))
            .expression_attribute_values(":ttl", n(expires));
        if let Some(td) = target_delay {
            update = update
                .expression_attribute_names("#td", "target_delay_ms")
                .expression_attribute_values(":td", td);
        }
        update
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateItem", e))?;
        Ok(())
    }

    /// Records that the task's `failure.side` connection failed at `at` (its loop stopped and
    /// is retried): the rates read as zero and the failure shows until the next report.
    pub async fn report_failure(
        &self,
        instance: &InstanceId,
        failure: &ConnectionFailure,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let minute = ferry_domain::metrics::minute_of(at);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(instance_pk(instance)))
            .key(SK, s(metrics_sk(minute)))
            .update_expression(
                "SET #minute = :minute, #rps = :zero, #bps = :zero, #at = :at, #ttl = :ttl, \
                 #fs = :fs, #fm = :fm",
            )
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_names("#rps", "rps")
            .expression_attribute_names("#bps", "bps")
            .expression_attribute_names("#at", "updated_at")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#fs", FAILURE_SIDE)
            .expression_attribute_names("#fm", FAILURE_MESSAGE)
            .expression_attribute_values(":minute", s(minute.to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .expression_attribute_values(":ttl", n((minute + KEEP).timestamp()))
            .expression_attribute_values(":fs", s(failure.side.as_str()))
            .expression_attribute_values(":fm", s(failure.message.clone()))
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateItem", e))?;
        Ok(())
    }

    /// The minutes of the hour before `now`.
    pub async fn recent_metrics(
        &self,
        instance: &InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<MinuteMetrics>, StoreError> {
        let from = metrics_sk(ferry_domain::metrics::minute_of(now - HISTORY));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#p = :p AND #s BETWEEN :from AND :to")
            .expression_attribute_names("#p", PK)
            .expression_attribute_names("#s", SK)
            .expression_attribute_values(":p", s(instance_pk(instance)))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(format!("{METRICS_SK_PREFIX}~")))
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(minute_from_item)
            .collect()
    }
}

/// DynamoDB numbers cannot be NaN or infinite.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn minute_from_item(item: Item) -> Result<MinuteMetrics, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt {
        key: item
            .get(SK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default(),
        reason: format!("metrics item without a valid {what}"),
    };
    let num = |name: &str| -> Result<f64, StoreError> {
        match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(name)),
            None => Ok(0.0),
            Some(_) => Err(corrupt(name)),
        }
    };
    let time = |name: &str| -> Result<DateTime<Utc>, StoreError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| corrupt(name))
    };
    let whole = |name: &str| num(name).map(|x| x.max(0.0) as u64);
    Ok(MinuteMetrics {
        minute: time("minute")?,
        rows: whole("rows")?,
        bytes: whole("bytes")?,
        max_delay_ms: whole("max_delay_ms")?,
        delay_ms: whole("delay_ms")?,
        target_delay_ms: item
            .contains_key("target_delay_ms")
            .then(|| whole("target_delay_ms"))
            .transpose()?,
        rps: num("rps")?,
        bps: num("bps")?,
        updated_at: time("updated_at")?,
        failure: match (
            item.get(FAILURE_SIDE).and_then(|v| v.as_s().ok()),
            item.get(FAILURE_MESSAGE).and_then(|v| v.as_s().ok()),
        ) {
            (Some(side), Some(message)) => Some(ConnectionFailure {
                side: match side.as_str() {
                    "source" => Side::Source,
                    "target" => Side::Target,
                    _ => return Err(corrupt(FAILURE_SIDE)),
                },
                message: message.clone(),
            }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_keys_sort_by_time() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let a = metrics_sk(t("2026-11-22T09:59:00Z"));
        let b = metrics_sk(t("2026-11-22T10:00:00Z"));
        assert!(a < b);
        assert!(b < format!("{METRICS_SK_PREFIX}~"));
        assert_eq!(b, "METRICS#2026-11-22T10:00:00Z");
    }
}
