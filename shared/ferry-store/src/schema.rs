//! The persisted schema history of a task (see `ferry_domain::schema`): one item per entry, in
//! the instance's partition, sorted by binlog position.
//!
//! Entries are written before the capture loop goes past their statement, so any checkpoint
//! after a DDL statement implies its entries are stored; a statement re-read after a crash
//! writes the same items again (same keys), which is harmless.

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::schema::SchemaEntry;
use serde::{Deserialize, Serialize};

use crate::item::{Item, from_item, key, new_item};
use crate::keys::{SK, instance_pk};
use crate::{Store, StoreError};

const SCHEMA_SK_PREFIX: &str = "SCHEMA#";

/// The sort key: position (file index, offset) and the entry's sequence within its statement,
/// zero-padded so the key order is the history's order.
fn schema_sk(position: &Position, seq: u32) -> String {
    format!(
        "{SCHEMA_SK_PREFIX}{:012}#{:020}#{seq:08}",
        position.file().index(),
        position.offset()
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredEntry {
    position: Position,
    seq: u32,
    entry: SchemaEntry,
}

impl Store {
    /// Stores the entries of one statement (or one snapshot) at `position`, in order.
    pub async fn put_schema_entries(
        &self,
        instance: &InstanceId,
        position: &Position,
        entries: &[SchemaEntry],
    ) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(entries.len());
        for (seq, entry) in entries.iter().enumerate() {
            let seq = u32::try_from(seq).unwrap_or(u32::MAX);
            let stored = StoredEntry {
                position: position.clone(),
                seq,
                entry: entry.clone(),
            };
            let item = new_item(instance_pk(instance), schema_sk(position, seq), &stored)?;
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::backend("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.write_batches(requests).await
    }

    /// Every stored entry of the task's history.
    pub async fn schema_history(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<(Position, u32, SchemaEntry)>, StoreError> {
        self.query_partition(instance_pk(instance), Some(SCHEMA_SK_PREFIX))
            .await?
            .into_iter()
            .map(|item| {
                let (s, _): (StoredEntry, u64) = from_item(item)?;
                Ok((s.position, s.seq, s.entry))
            })
            .collect()
    }

    /// Deletes the task's history (a reset starts a new one from a new snapshot).
    pub async fn delete_schema_history(&self, instance: &InstanceId) -> Result<(), StoreError> {
        let items = self
            .query_partition(instance_pk(instance), Some(SCHEMA_SK_PREFIX))
            .await?;
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let Some(sk) = item.get(SK).cloned() else {
                continue;
            };
            let mut k: Item = key(instance_pk(instance), String::new());
            k.insert(SK.into(), sk);
            let delete = DeleteRequest::builder()
                .set_key(Some(k))
                .build()
                .map_err(|e| StoreError::backend("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.write_batches(requests).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_follow_position_order() {
        let p = |f: &str, o| Position::new(f.parse().unwrap(), o, None);
        let keys = [
            schema_sk(&p("bin.000002", 4), 0),
            schema_sk(&p("bin.000001", 10_000), 3),
            schema_sk(&p("bin.000001", 10_000), 12),
            schema_sk(&p("bin.000001", 999), 0),
        ];
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                keys[3].clone(),
                keys[1].clone(),
                keys[2].clone(),
                keys[0].clone()
            ]
        );
        assert!(keys.iter().all(|k| k.starts_with(SCHEMA_SK_PREFIX)));
    }
}
