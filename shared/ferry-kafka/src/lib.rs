//! Kafka: how change events become records ([`format`]), and how records reach a task's topic
//! ([`sink`]): topic creation, the idempotent producer with backpressure, and reading the
//! topic's tail after a restart; consumer groups' progress and deletion ([`groups`]); reading
//! the topic back as changes of one shape ([`browse`], [`view`]).

#[cfg(feature = "broker")]
pub mod browse;
pub mod format;
#[cfg(feature = "broker")]
pub mod groups;
#[cfg(feature = "broker")]
pub mod sink;
pub mod view;

/// Header holding a record's idempotency key (`ChangeEvent::idempotency_key`).
pub const KEY_HEADER: &str = "ferry.key";
/// Header holding the source position after the record's event.
pub const POSITION_HEADER: &str = "ferry.position";
/// Header naming the source server whose binlog the record's position is in: its
/// `server_uuid` (MySQL) or `server_id:<n>` (MariaDB, whose servers in one replication topology
/// have distinct ids). A restarted loop trusts the topic's tail only when it came from the
/// server it reads now.
pub const SOURCE_HEADER: &str = "ferry.source";
