//! The persisted histories of a task, in the instance's partition, sorted by binlog position:
//!
//! - the schema history (see `ferry_domain::schema`): one item per entry;
//! - the selection history (see `ferry_domain::reselect`): one item per switch of the objects.
//!
//! Entries are written before the capture loop goes past their position, so any checkpoint
//! after a DDL statement (or a switch) implies its entries are stored; a statement re-read after
//! a crash writes the same items again (same keys), which is harmless.

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::reselect::SelectionChange;
use ferry_domain::schema::SchemaEntry;
use serde::{Deserialize, Serialize};

use crate::item::{Item, from_item, key, new_item};
use crate::keys::{SK, instance_pk};
use crate::{Store, StoreError};

const SCHEMA_SK_PREFIX: &str = "SCHEMA#";
const SELECTION_SK_PREFIX: &str = "OBJECTS#";

/// The sort key: position (file index, offset) and a sequence at that position (the entry's
/// within its statement; the configuration version of a selection), zero-padded so the key
/// order is the history's order.
fn history_sk(prefix: &str, position: &Position, seq: u64) -> String {
    format!(
        "{prefix}{:012}#{:020}#{seq:08}",
        position.file().index(),
        position.offset()
    )
}

fn schema_sk(position: &Position, seq: u32) -> String {
    history_sk(SCHEMA_SK_PREFIX, position, u64::from(seq))
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

    /// Records that `change` took effect at its position.
    pub async fn put_selection_change(
        &self,
        instance: &InstanceId,
        change: &SelectionChange,
    ) -> Result<(), StoreError> {
        let sk = history_sk(SELECTION_SK_PREFIX, &change.position, change.config_version);
        let item = new_item(instance_pk(instance), sk, change)?;
        let put = PutRequest::builder()
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::backend("BatchWriteItem", e))?;
        self.write_batches(vec![WriteRequest::builder().put_request(put).build()])
            .await
    }

    /// Every recorded switch of the task's objects, oldest first.
    pub async fn selection_history(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<SelectionChange>, StoreError> {
        self.query_partition(instance_pk(instance), Some(SELECTION_SK_PREFIX))
            .await?
            .into_iter()
            .map(|item| from_item(item).map(|(c, _): (SelectionChange, u64)| c))
            .collect()
    }

    /// Deletes the task's schema and selection histories and its full-sync progress (a reset
    /// starts new ones).
    pub async fn delete_histories(&self, instance: &InstanceId) -> Result<(), StoreError> {
        self.delete_history(instance, SCHEMA_SK_PREFIX).await?;
        self.delete_history(instance, SELECTION_SK_PREFIX).await?;
        self.delete_history(instance, crate::copies::COPY_SK_PREFIX)
            .await
    }

    /// Starts the task's schema and selection histories over at `at`, after a failover (the
    /// old server's positions mean nothing in the new one's binlog): `catalog` (a snapshot's
    /// entries) and `selection` are written at `at`, then every other entry is deleted. Written
    /// first, deleted after: a failover retried after a crash in between finds its entries.
    pub async fn rebase_histories(
        &self,
        instance: &InstanceId,
        at: &Position,
        catalog: &[SchemaEntry],
        selection: Option<&SelectionChange>,
    ) -> Result<(), StoreError> {
        self.put_schema_entries(instance, at, catalog).await?;
        let mut keep: Vec<String> = (0..catalog.len())
            .map(|seq| schema_sk(at, u32::try_from(seq).unwrap_or(u32::MAX)))
            .collect();
        if let Some(change) = selection {
            self.put_selection_change(instance, change).await?;
            keep.push(history_sk(
                SELECTION_SK_PREFIX,
                &change.position,
                change.config_version,
            ));
        }
        self.delete_history_except(instance, SCHEMA_SK_PREFIX, &keep)
            .await?;
        self.delete_history_except(instance, SELECTION_SK_PREFIX, &keep)
            .await
    }

    async fn delete_history(&self, instance: &InstanceId, prefix: &str) -> Result<(), StoreError> {
        self.delete_history_except(instance, prefix, &[]).await
    }

    async fn delete_history_except(
        &self,
        instance: &InstanceId,
        prefix: &str,
        keep: &[String],
    ) -> Result<(), StoreError> {
        let items = self
            .query_partition(instance_pk(instance), Some(prefix))
            .await?;
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let Some(sk) = item.get(SK).cloned() else {
                continue;
            };
            if sk.as_s().is_ok_and(|s| keep.iter().any(|k| k == s)) {
                continue;
            }
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
