//! Leases and checkpoints: how capture workers share tasks without ever overwriting each
//! other's progress.
//!
//! # Leases
//!
//! A worker holds a task while its lease (`INS#<id>`/`LEASE`) names it and has not expired.
//! Claiming is one conditional write: the lease is absent, expired, or already the worker's.
//! Every claim by a new holder increments the lease's **fencing token**. The holder renews the
//! lease (heartbeat) well within its time to live and deletes it when it stops.
//!
//! # Checkpoints
//!
//! A checkpoint (`INS#<id>`/`CHECKPOINT`) is written with the writer's fencing token, on the
//! condition that no checkpoint with a *higher* token exists. A worker that was paused or cut off
//! and lost its lease to another can therefore never overwrite the newer worker's checkpoint, even
//! if it wakes up and writes late.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use chrono::{DateTime, Duration, Utc};
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::position::Position;
use serde::{Deserialize, Serialize};

use crate::item::{key, n, new_item, s};
use crate::keys::instance_pk;
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

/// Progress as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where to resume: just after the last transaction the broker acknowledged.
    pub position: Position,
    /// The source time of that transaction.
    pub source_time: DateTime<Utc>,
    /// The idempotency key of the last record produced up to here, if any.
    pub last_key: Option<String>,
    pub token: u64,
    pub written_at: DateTime<Utc>,
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
            Some((l, v)) if l.worker == *worker && l.expires_at > now => (l.token, Some(*v)),
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

    /// Deletes the lease if `worker` still holds it with `token`.
    pub async fn release_lease(
        &self,
        instance: &InstanceId,
        worker: &WorkerId,
        token: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), LEASE_SK)))
            .condition_expression("#b.worker = :w AND #b.#t = :t")
            .expression_attribute_names("#b", "body")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":w", s(worker.as_str()))
            .expression_attribute_values(":t", n(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(StoreError::backend("DeleteItem", other)),
            },
        }
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

    /// Writes a checkpoint unless one with a higher fencing token exists: then
    /// [`StoreError::Conflict`], and the writer must stop (it lost its lease).
    pub async fn write_checkpoint(
        &self,
        instance: &InstanceId,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let body = crate::item::body(checkpoint)?;
        let result = self
            .client
            .update_item()
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Err(StoreError::Conflict {
                    what: "the checkpoint (a newer worker holds the task)",
                }),
                other => Err(StoreError::backend("UpdateItem", other)),
            },
        }
    }

    /// Deletes the task's progress (checkpoint), for reset.
    pub async fn delete_progress(&self, instance: &InstanceId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), CHECKPOINT_SK)))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        Ok(())
    }
}
