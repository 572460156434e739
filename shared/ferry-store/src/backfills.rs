//! A tracking task's latest backfill (`INS#<id>` / `BACKFILL`, see `ferry_domain::backfill`):
//! asked for and cancelled through the API, run by the worker running the task, its chunks'
//! progress in the task's copy items (`COPY#…`, plans naming the backfill). Writes are
//! versioned, so a cancellation is never overwritten unseen by the worker, nor a new request by
//! an old report.

use ferry_domain::backfill::Backfill;
use ferry_domain::id::InstanceId;

use crate::item::key;
use crate::keys::instance_pk;
use crate::{Store, StoreError};

pub(crate) const BACKFILL_SK: &str = "BACKFILL";

impl Store {
    /// The latest backfill and its version.
    pub async fn get_backfill(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<(Backfill, u64)>, StoreError> {
        self.get_versioned(instance_pk(instance), BACKFILL_SK).await
    }

    /// Records `backfill`: over none (`expected` `None`) or over version `expected`; the new
    /// version.
    pub async fn put_backfill(
        &self,
        instance: &InstanceId,
        backfill: &Backfill,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.put_versioned(
            instance_pk(instance),
            BACKFILL_SK,
            backfill,
            expected,
            "backfill",
        )
        .await
    }

    /// Forgets the task's backfill (a reset).
    pub(crate) async fn delete_backfill(&self, instance: &InstanceId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(instance_pk(instance), BACKFILL_SK)))
            .send()
            .await
            .map_err(|e| StoreError::backend("DeleteItem", e))?;
        Ok(())
    }
}
