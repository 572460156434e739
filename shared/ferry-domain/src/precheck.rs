//! Precheck results: one item per check, with a stable id, what was found and how to fix it.

use serde::{Deserialize, Serialize};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// Not blocking, but worth knowing (a table without a primary key).
    Warning,
    /// Blocks `start`.
    Failed,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    /// Stable id, e.g. `source.binlog_format`; documented in `docs/prechecks.md`.
    pub id: String,
    pub status: CheckStatus,
    pub message: String,
    /// What to do about it; absent when the check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl CheckItem {
    pub fn passed(id: &str, message: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: CheckStatus::Passed,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(id: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: CheckStatus::Warning,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn failed(id: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: CheckStatus::Failed,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// All items of one precheck run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckReport {
    pub items: Vec<CheckItem>,
}

impl PrecheckReport {
    /// Whether `start` may go on: no item failed.
    pub fn passed(&self) -> bool {
        self.items.iter().all(|i| i.status != CheckStatus::Failed)
    }

    pub fn failed_ids(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.status == CheckStatus::Failed)
            .map(|i| i.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_does_not_fail_the_report() {
        let mut r = PrecheckReport {
            items: vec![
                CheckItem::passed("source.connect", "ok"),
                CheckItem::warning("source.primary_keys", "t has none", "add one"),
            ],
        };
        assert!(r.passed());
        r.items
            .push(CheckItem::failed("source.log_bin", "off", "turn it on"));
        assert!(!r.passed());
        assert_eq!(r.failed_ids(), ["source.log_bin"]);
        let json = serde_json::to_value(&r.items[0]).unwrap();
        assert!(json.get("hint").is_none());
    }
}
