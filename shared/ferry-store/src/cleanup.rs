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
    /// The topics to delete: every generation of a deleted instance's topic, or the previous
    /// generation after a reset. (`topic`, one or none, in requests written before resets
    /// started new generations.)
    #[serde(default, alias = "topic", deserialize_with = "one_or_many")]
    pub topics: Vec<String>,
    /// Consumer group ids whose committed offsets to delete.
    pub groups: Vec<String>,
    pub requested_at: DateTime<Utc>,
    /// Not before this time: a reset's old topic stays readable for its retention, so
    /// consumers can finish reading it before they move to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

/// `null`, one string, or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Option<String>),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => one.into_iter().collect(),
        OneOrMany::Many(many) => many,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_written_before_topic_generations_still_read() {
        let old = serde_json::json!({
            "instance_id": "ins_0123456789abcdef0123456789abcdef",
            "topic": "ferry.ins_0123456789abcdef0123456789abcdef",
            "groups": [],
            "requested_at": "2026-11-01T00:00:00Z"
        });
        let r: CleanupRequest = serde_json::from_value(old).unwrap();
        assert_eq!(r.topics, ["ferry.ins_0123456789abcdef0123456789abcdef"]);
        assert_eq!(r.not_before, None);
        let none = serde_json::json!({
            "instance_id": "ins_0123456789abcdef0123456789abcdef",
            "topic": null,
            "groups": ["cg_1"],
            "requested_at": "2026-11-01T00:00:00Z"
        });
        let r: CleanupRequest = serde_json::from_value(none).unwrap();
        assert!(r.topics.is_empty());
        let back: CleanupRequest =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
