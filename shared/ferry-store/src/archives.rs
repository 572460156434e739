//! What a task's binlog archive holds (`INS#<id>` / `ARCHIVE`, see `ferry_domain::archive`):
//! written by the archiver of the worker holding the task's lease, read by `GET …/task`.
//!
//! A report, not a record anything decides on: each write replaces the whole item without a
//! version check (one writer at a time holds the lease; a deposed worker's late write is
//! replaced by the next report, every few seconds while the archive is being written).

use ferry_domain::archive::ArchiveStatus;
use ferry_domain::id::InstanceId;

use crate::item::new_item;
use crate::keys::instance_pk;
use crate::{Store, StoreError};

const ARCHIVE_SK: &str = "ARCHIVE";

impl Store {
    /// The archive's last reported status.
    pub async fn get_archive_status(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<ArchiveStatus>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(instance), ARCHIVE_SK)
            .await?
            .map(|(s, _)| s))
    }

    /// Replaces the archive's status.
    pub async fn put_archive_status(
        &self,
        instance: &InstanceId,
        status: &ArchiveStatus,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(new_item(instance_pk(instance), ARCHIVE_SK, status)?))
            .send()
            .await
            .map_err(|e| StoreError::backend("PutItem", e))?;
        Ok(())
    }
}
