//! A sync task's latest verification (`INS#<id>` / `VERIFY`): asked for through the API, run and
//! reported by the worker running the task. Writes are versioned, so a request never replaces a
//! running verification unseen and a finished report never overwrites a newer request.

use ferry_domain::id::InstanceId;
use ferry_domain::verify::Verification;

use crate::keys::instance_pk;
use crate::{Store, StoreError};

const VERIFY_SK: &str = "VERIFY";

impl Store {
    /// The latest verification and its version.
    pub async fn get_verification(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<(Verification, u64)>, StoreError> {
        self.get_versioned(instance_pk(instance), VERIFY_SK).await
    }

    /// Records a new verification: over none (`expected` `None`) or over version `expected`.
    pub async fn put_verification(
        &self,
        instance: &InstanceId,
        verification: &Verification,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.put_versioned(
            instance_pk(instance),
            VERIFY_SK,
            verification,
            expected,
            "verification",
        )
        .await
    }
}
