//! Leases and checkpoints: how capture workers share tasks without ever overwriting each
//! other's progress.
//!
//! # Leases
//!
//! A worker holds a task while its lease (`INS#<id>`/`LEASE`) names it and has not expired.
//! Claiming is one conditional write: the lease is absent, expired, or already the worker's.
//! Every claim by a new holder increments the lease's **fencing token**; a holder renewing its
//! own lease (even one that expired, if nobody took it meanwhile) keeps its token. The holder renews the
//! lease (heartbeat) well within its time to live and, when it stops, expires it (never deletes
//! it: tokens only grow).
//!
//! # Checkpoints
//!
//! A checkpoint (`INS#<id>`/`CHECKPOINT`) is written with the writer's fencing token, on the
//! condition that no checkpoint with a *higher* token exists. A worker that was paused or cut off
//! and lost its lease to another can therefore never overwrite the newer worker's checkpoint, even
//! if it wakes up and writes late.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};
use chrono::{DateTime, Duration, Utc};
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::position::Position;
use serde::{Deserialize, Serialize};

use crate::item::{key, n, new_item};
use crate::keys::{TASK_SK, instance_pk};
use crate::{Store, StoreError};

const LEASE_SK: &str = "LEASE";
const CHECKPOINT_SK: &str = "CHECKPOINT";

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: WorkerId,
    pub token: u64,
    pub expires_at: DateTime<Utc>,
}

/// What became of a checkpoint write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    Written,
    /// A newer worker holds the task: stop without writing anything more.
    Fenced,
    /// The task's configuration changed (reset, reselection): stop and let the worker start the
    /// task again with the new configuration.
    ConfigChanged,
}

/// Progress as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where to resume: just after the last transaction the broker acknowledged.
    pub position: Position,
    /// The source time of that transaction.
    pub source_time: DateTime<Utc>,
    /// The idempotency key of the last record produced up to here, if any.
    pub last_key: Option<String>,
    /// Per partition of the task's topic, the offset just after the last record produced up
    /// to here: a restarted worker reads the records from there to learn what the topic holds
    /// after the checkpoint. Absent when unknown (a stream, a sync task, checkpoints written
    /// before Ferry kept them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<Vec<i64>>,
    pub token: u64,
    pub written_at: DateTime<Utc>,
    /// The source server whose binlog `position` is in (see
    /// `ferry_mysql::snapshot::server_identity`); absent in checkpoints written before Ferry
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Store {
    /// Claims or renews the lease of an instance's task for `ttl` from `now`. Returns the lease
    /// with its fencing token, or `None` when another worker holds it.
    pub async fn claim_lease(
        &self,
        instance: &InstanceId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let current = self
            .get_versioned::<Lease>(instance_pk(instance), LEASE_SK)
            .await?;
        let (token, expected) = match &current {
            // Still ours, even past its expiry: no other worker claimed it in between, so
            // keeping the token fences nothing wrongly (a slow store must not cost a live
            // holder its lease).
            Some((l, v)) if l.worker == *worker => (l.token, Some(*v)),
            Some((l, v)) if l.expires_at <= now => (l.token + 1, Some(*v)),
            Some(_) => return Ok(None),
            None => (1, None),
        };
        let lease = Lease {
            worker: worker.clone(),
            token,
            expires_at: now + ttl,
        };
        let mut item = new_item(instance_pk(instance), LEASE_SK, &lease)?;
        let req = self.client.put_item().table_name(&self.table);
        let req = match expected {
            Some(v) => {
                item.insert("version".into(), n(v + 1));
                req.condition_expression("version = :v")
                    .expression_attribute_values(":v", n(v))
            }
            None => req.condition_expression("attribute_not_exists(pk)"),
        };
        match req.set_item(Some(item)).send().await {
            Ok(_) => Ok(Some(lease)),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(None),
                other => Err(StoreError::backend("PutItem", other)),
            },
        }
    }

    /// Gives the lease up if `worker` still holds it with `token`: it expires now, and keeps its
    /// token, so the next holder's token is higher (a deleted lease would restart at 1 and
    /// defeat the fencing).
    pub async fn release_lease(
        &self,
        instance: &InstanceId,
        worker: &WorkerId,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some((mut lease, version)) = self
            .get_versioned::<Lease>(instance_pk(instance), LEASE_SK)
            .await?
        else {
            return Ok(());
        };
        if lease.worker != *worker || lease.token != token {
            return Ok(());
        }
        lease.expires_at = now;
        match self
            .update_versioned(
                instance_pk(instance),
                LEASE_SK,
                &lease,
                version,
                "the lease",
            )
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The current lease of an instance's task.
    pub async fn get_lease(&self, instance: &InstanceId) -> Result<Option<Lease>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(instance), LEASE_SK)
            .await?
            .map(|(l, _)| l))
    }

    pub async fn get_checkpoint(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(instance), CHECKPOINT_SK)
            .await?
            .map(|(c, _)| c))
    }

    /// Writes a checkpoint for configuration `config_version`, in one transaction with two
    /// conditions: the task's configuration is still that version (a reset or a reselection
    /// makes a running loop's checkpoints stale), and no checkpoint with a higher fencing token
    /// exists (a newer worker holds the task).
    pub async fn write_checkpoint(
        &self,
        instance: &InstanceId,
        checkpoint: &Checkpoint,
        config_version: u64,
    ) -> Result<CheckpointOutcome, StoreError> {
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::backend("TransactWriteItems", e);
        let body = crate::item::body(checkpoint)?;
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), TASK_SK)))
            .condition_expression("#b.config_version = :cv")
            .expression_attribute_names("#b", "body")
            .expression_attribute_values(":cv", n(config_version))
            .build()
            .map_err(build)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), CHECKPOINT_SK)))
            .update_expression("SET #b = :b, #v = if_not_exists(#v, :zero) + :one")
            .condition_expression("attribute_not_exists(pk) OR #b.#t <= :t")
            .expression_attribute_names("#b", "body")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":b", body)
            .expression_attribute_values(":t", n(checkpoint.token))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CheckpointOutcome::Written),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let failed = |i: usize| {
                        c.cancellation_reasons()
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|code| code == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        Ok(CheckpointOutcome::ConfigChanged)
                    } else if failed(1) {
                        Ok(CheckpointOutcome::Fenced)
                    } else {
                        Err(StoreError::Conflict {
                            what: "the checkpoint",
                        })
                    }
                }
                other => Err(StoreError::backend("TransactWriteItems", other)),
            },
        }
    }

    /// Deletes the task's progress (checkpoint, histories, full-sync progress, verification),
    /// for reset.
    pub async fn delete_progress(&self, instance: &InstanceId) -> Result<(), StoreError> {
        self.delete_histories(instance).await?;
        self.delete_backfill(instance).await?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), CHECKPOINT_SK)))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), "VERIFY")))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        Ok(())
    }
}
