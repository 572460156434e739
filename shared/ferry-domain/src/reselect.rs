//! The selection history of a task: which object selection was in effect from which binlog
//! position.
//!
//! A task's objects can be reselected while it runs. The capture loop switches at a
//! transaction boundary and records the switch, with that boundary's position, before it goes
//! past it. A loop resuming from a checkpoint takes the selection in effect at the checkpoint
//! and switches again at the recorded positions after it, so a crash never moves a switch: the
//! records of a table added at position P are exactly those after P, before and after the crash.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::selection::ObjectSelection;

/// A selection that took effect at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionChange {
    /// The transaction boundary after which the selection applies.
    pub position: Position,
    /// The task's configuration version the selection came from.
    pub config_version: u64,
    pub objects: ObjectSelection,
    /// When the worker switched (wall clock).
    pub applied_at: DateTime<Utc>,
}

/// The selection in effect at a position and the switches recorded after it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionPlan {
    /// In effect at the position; `None` when the history has nothing at or before it.
    pub current: Option<SelectionChange>,
    /// Recorded switches after the position, oldest first.
    pub later: Vec<SelectionChange>,
}

impl SelectionPlan {
    /// Splits `history` (in any order) at `at`: a change recorded exactly at `at` is in effect
    /// there (it was recorded at a boundary the loop had passed).
    pub fn at(history: &[SelectionChange], at: &Position) -> Self {
        let mut sorted: Vec<&SelectionChange> = history.iter().collect();
        sorted.sort_by(|a, b| {
            a.position
                .cmp_file_offset(&b.position)
                .then(a.config_version.cmp(&b.config_version))
        });
        let split = sorted.partition_point(|c| c.position.cmp_file_offset(at) != Ordering::Greater);
        Self {
            current: split.checked_sub(1).map(|i| sorted[i].clone()),
            later: sorted[split..].iter().map(|c| (*c).clone()).collect(),
        }
    }

    /// The newest configuration version the history knows.
    pub fn newest_version(&self) -> Option<u64> {
        self.later
            .last()
            .or(self.current.as_ref())
            .map(|c| c.config_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(at: &str, version: u64) -> SelectionChange {
        SelectionChange {
            position: at.parse().unwrap(),
            config_version: version,
            objects: serde_json::from_value(serde_json::json!({
                "databases": [{"name": format!("db{version}")}]
            }))
            .unwrap(),
            applied_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_selection_at_a_position_is_the_newest_recorded_at_or_before_it() {
        let history = vec![
            change("bin.000002:400", 3),
            change("bin.000001:4", 1),
            change("bin.000001:900", 2),
        ];
        let at = |p: &str| SelectionPlan::at(&history, &p.parse().unwrap());

        let before = at("bin.000001:3");
        assert_eq!(before.current, None);
        assert_eq!(before.later.len(), 3);

        let exact = at("bin.000001:900");
        assert_eq!(exact.current.map(|c| c.config_version), Some(2));
        assert_eq!(
            exact
                .later
                .iter()
                .map(|c| c.config_version)
                .collect::<Vec<_>>(),
            [3]
        );

        let between = at("bin.000002:100");
        assert_eq!(between.current.as_ref().map(|c| c.config_version), Some(2));
        assert_eq!(between.newest_version(), Some(3));

        let after = at("bin.000003:4");
        assert_eq!(after.current.map(|c| c.config_version), Some(3));
        assert!(after.later.is_empty());
        assert_eq!(
            SelectionPlan::at(&[], &"bin.000001:4".parse().unwrap()).newest_version(),
            None
        );
    }
}
