//! Cleanup requests: Kafka resources a deleted instance or consumer group leaves behind (its
//! topic, its groups' committed offsets). The control plane cannot reach the brokers from every
//! deployment, so it records what must go and the capture workers, which can, remove it and
//! then delete the request.

use chrono::{DateTime, Utc};
use ferry_domain::id::InstanceId;
use serde::{Deserialize, Serialize};

use crate::item::{new_item, s};
use crate::keys::CLEANUP_PK;
use crate::{Store, StoreError};

/// What a worker must remove from Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRequest {
    pub instance_id: InstanceId,
    /// The topic to delete, when the whole instance went.
    pub topic: Option<String>,
    /// Consumer group ids whose committed offsets to delete.
    pub groups: Vec<String>,
    pub requested_at: DateTime<Utc>,
}

impl Store {
    /// Records a cleanup request; requests for the same instance and time are one.
    pub async fn request_cleanup(&self, req: &CleanupRequest) -> Result<(), StoreError> {
        let sk = format!("{}#{}", req.requested_at.to_rfc3339(), req.instance_id);
        let mut item = new_item(CLEANUP_PK.to_owned(), sk, req)?;
        item.insert("kind".into(), s("cleanup"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::backend("PutItem", e))?;
        Ok(())
    }

    /// Deletes a request once what it names is gone.
    pub async fn complete_cleanup(&self, req: &CleanupRequest) -> Result<(), StoreError> {
        let sk = format!("{}#{}", req.requested_at.to_rfc3339(), req.instance_id);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(crate::item::key(CLEANUP_PK.to_owned(), sk)))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        Ok(())
    }

    /// The pending cleanup requests, oldest first.
    pub async fn pending_cleanups(&self) -> Result<Vec<CleanupRequest>, StoreError> {
        self.query_partition(CLEANUP_PK.to_owned(), None)
            .await?
            .into_iter()
            .map(|item| crate::item::from_item(item).map(|(v, _)| v))
            .collect()
    }
}
