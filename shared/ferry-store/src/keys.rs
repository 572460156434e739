//! The key design of the table (documented in `docs/dynamodb.md`).

use ferry_domain::id::{ConsumerGroupId, InstanceId};

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const GSI1: &str = "gsi1";
pub(crate) const GSI1_PK: &str = "gsi1pk";
pub(crate) const GSI1_SK: &str = "gsi1sk";
pub(crate) const VERSION: &str = "version";
pub(crate) const BODY: &str = "body";
pub(crate) const GROUP_COUNT: &str = "group_count";
pub(crate) const TTL: &str = "expires_at_epoch";

/// The partition of everything an instance owns.
pub(crate) fn instance_pk(id: &InstanceId) -> String {
    format!("INS#{id}")
}

pub(crate) const INSTANCE_SK: &str = "INSTANCE";
pub(crate) const TASK_SK: &str = "TASK";
pub(crate) const INSTANCES_GSI_PK: &str = "INSTANCES";

pub(crate) fn group_sk(id: &ConsumerGroupId) -> String {
    format!("CG#{id}")
}

pub(crate) const GROUP_SK_PREFIX: &str = "CG#";

/// A consumer group's pointer to its instance, so that the consumer gateway finds a group by
/// its id alone (the SASL username holds the group id, not the instance id).
pub(crate) fn group_pointer_pk(id: &ConsumerGroupId) -> String {
    format!("GRP#{id}")
}

pub(crate) const GROUP_POINTER_SK: &str = "GROUP";

/// Reserves a consumer group username within its instance.
pub(crate) fn username_sk(username: &str) -> String {
    format!("CGUSER#{username}")
}

pub(crate) fn token_pk(token: &str) -> String {
    format!("TOKEN#{token}")
}

pub(crate) const TOKEN_SK: &str = "TOKEN";

/// The partition of pending cleanup requests.
pub(crate) const CLEANUP_PK: &str = "CLEANUP";
