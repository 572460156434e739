//! Full-sync progress: one item per table of a sync task (`INS#<id>` / `COPY#<table>`), holding
//! the table's chunk plan (the chunks' key bounds, fixed when the copy is planned so a resumed
//! copy reads the same chunks), the done chunks (a number set) and the rows copied.
//!
//! A chunk is marked done only after the target committed it; marking is conditional on the
//! chunk not being marked yet, so a chunk loaded twice (a crash between the target's commit and
//! the mark) counts its rows once.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use ferry_domain::change::ObjectName;
use ferry_domain::id::InstanceId;
use ferry_domain::sync::{CopyState, TableProgress};
use ferry_domain::value::Value;
use serde::{Deserialize, Serialize};

use crate::item::{Item, from_item, n, new_item, s};
use crate::keys::{PK, SK, instance_pk};
use crate::{Store, StoreError};

pub(crate) const COPY_SK_PREFIX: &str = "COPY#";

/// The sort key of a table's copy: lengths keep any database and table names apart.
fn copy_sk(table: &ObjectName) -> String {
    format!(
        "{COPY_SK_PREFIX}{}:{}.{}",
        table.database.len(),
        table.database,
        table.table
    )
}

/// How a table is copied: its chunks, fixed when planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyPlan {
    pub table: ObjectName,
    /// `schema.table` on the target.
    pub target: String,
    /// The chunks' inclusive upper key bounds; one more chunk holds the keys after the last.
    /// Empty for a table without a primary key: one chunk, the whole table.
    pub bounds: Vec<Vec<Value>>,
    /// The source's row estimate when planned.
    pub rows_total: u64,
    /// The backfill the plan is for (a tracking task's, see `ferry_domain::backfill`); `None`
    /// for a sync task's full sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
}

impl CopyPlan {
    pub fn chunks(&self) -> u32 {
        u32::try_from(self.bounds.len() + 1).unwrap_or(u32::MAX)
    }

    /// Chunk `i`'s bounds: keys after `lower`, up to `upper` (`None`: open).
    pub fn chunk_bounds(&self, i: u32) -> (Option<&[Value]>, Option<&[Value]>) {
        let i = i as usize;
        let lower = i
            .checked_sub(1)
            .and_then(|p| self.bounds.get(p))
            .map(Vec::as_slice);
        (lower, self.bounds.get(i).map(Vec::as_slice))
    }
}

/// A table's copy as stored: the plan and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyRecord {
    pub plan: CopyPlan,
    pub done: BTreeSet<u32>,
    pub rows_done: u64,
}

impl CopyRecord {
    pub fn is_done(&self) -> bool {
        self.done.len() as u64 >= u64::from(self.plan.chunks())
    }

    /// The copy's progress as the task status shows it.
    pub fn progress(&self) -> TableProgress {
        TableProgress {
            table: self.plan.table.clone(),
            target: self.plan.target.clone(),
            state: if self.is_done() {
                CopyState::Done
            } else if self.done.is_empty() {
                CopyState::Pending
            } else {
                CopyState::Copying
            },
            rows_done: self.rows_done,
            rows_total: self.plan.rows_total,
            chunks_done: u32::try_from(self.done.len()).unwrap_or(u32::MAX),
            chunks_total: self.plan.chunks(),
        }
    }
}

impl Store {
    /// Stores a table's plan with no chunk done (replacing an earlier plan of the table).
    pub async fn put_copy_plan(
        &self,
        instance: &InstanceId,
        plan: &CopyPlan,
    ) -> Result<(), StoreError> {
        let mut item = new_item(instance_pk(instance), copy_sk(&plan.table), plan)?;
        item.insert("rows_done".into(), n(0));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::backend("PutItem", e))?;
        Ok(())
    }

    /// Marks chunk `chunk` of `table` done with `rows` rows; a chunk already marked is left as
    /// it is.
    pub async fn mark_chunk_done(
        &self,
        instance: &InstanceId,
        table: &ObjectName,
        chunk: u32,
        rows: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(instance_pk(instance)))
            .key(SK, s(copy_sk(table)))
            .update_expression("ADD #done :chunk, #rows :rows")
            .condition_expression("attribute_exists(#pk) AND NOT contains(#done, :one)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#rows", "rows_done")
            .expression_attribute_values(":chunk", AttributeValue::Ns(vec![chunk.to_string()]))
            .expression_attribute_values(":one", n(chunk))
            .expression_attribute_values(":rows", n(rows))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(StoreError::backend("UpdateItem", other)),
            },
        }
    }

    /// Every table's copy of the task.
    pub async fn copy_records(&self, instance: &InstanceId) -> Result<Vec<CopyRecord>, StoreError> {
        self.query_partition(instance_pk(instance), Some(COPY_SK_PREFIX))
            .await?
            .into_iter()
            .map(record)
            .collect()
    }

    /// Forgets a table's copy (a table removed from the selection).
    pub async fn delete_copy(
        &self,
        instance: &InstanceId,
        table: &ObjectName,
    ) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(instance_pk(instance)))
            .key(SK, s(copy_sk(table)))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        Ok(())
    }
}

fn record(mut item: Item) -> Result<CopyRecord, StoreError> {
    let done = match item.remove("done") {
        Some(AttributeValue::Ns(ns)) => ns.iter().filter_map(|v| v.parse().ok()).collect(),
        _ => BTreeSet::new(),
    };
    let rows_done = match item.remove("rows_done") {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    };
    let (plan, _) = from_item(item)?;
    Ok(CopyRecord {
        plan,
        done,
        rows_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_key_space() {
        let plan = CopyPlan {
            table: ObjectName {
                database: "d".into(),
                table: "t".into(),
            },
            target: "d.t".into(),
            bounds: vec![vec![Value::Int(10)], vec![Value::Int(20)]],
            rows_total: 25,
            backfill: None,
        };
        assert_eq!(plan.chunks(), 3);
        assert_eq!(plan.chunk_bounds(0), (None, Some(&[Value::Int(10)][..])));
        assert_eq!(
            plan.chunk_bounds(1),
            (Some(&[Value::Int(10)][..]), Some(&[Value::Int(20)][..]))
        );
        assert_eq!(plan.chunk_bounds(2), (Some(&[Value::Int(20)][..]), None));
        assert_ne!(
            copy_sk(&ObjectName {
                database: "a.b".into(),
                table: "c".into()
            }),
            copy_sk(&ObjectName {
                database: "a".into(),
                table: "b.c".into()
            })
        );
    }
}
