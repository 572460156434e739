//! Endpoint passwords in Secrets Manager. Ferry's table holds only the secret's name
//! ([`SecretRef`]); the password is read when a connection is made and never answered by the
//! API.

use std::fmt;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
use ferry_domain::endpoint::SecretRef;
use ferry_domain::id::InstanceId;

use crate::AwsError;

/// A password read from or written to Secrets Manager. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Secrets Manager, with Ferry's naming: `{prefix}/{instance id}/{role}`.
#[derive(Debug, Clone)]
pub struct Secrets {
    client: Client,
    prefix: String,
}

impl Secrets {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    /// The name of the secret holding an instance's `role` password (`source`, `target`).
    pub fn name_for(&self, instance: &InstanceId, role: &str) -> SecretRef {
        // The name is built from an id and a fixed role: it always passes SecretRef's rules.
        SecretRef::try_from(format!("{}/{instance}/{role}", self.prefix))
            .unwrap_or_else(|_| unreachable!("secret names are short and plain"))
    }

    /// Stores `value` under `name`, creating the secret or adding a new version.
    pub async fn put(&self, name: &SecretRef, value: &Secret) -> Result<(), AwsError> {
        let created = self
            .client
            .create_secret()
            .name(name.as_str())
            .secret_string(value.expose())
            .description("A database password of a Ferry task")
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                CreateSecretError::ResourceExistsException(_) => {
                    self.client
                        .put_secret_value()
                        .secret_id(name.as_str())
                        .secret_string(value.expose())
                        .send()
                        .await
                        .map_err(|e| AwsError::new("SecretsManager", "PutSecretValue", e))?;
                    Ok(())
                }
                other => Err(AwsError::new("SecretsManager", "CreateSecret", other)),
            },
        }
    }

    pub async fn get(&self, name: &SecretRef) -> Result<Secret, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .send()
            .await
            .map_err(|e| AwsError::new("SecretsManager", "GetSecretValue", e))?;
        Ok(Secret(out.secret_string.unwrap_or_default()))
    }

    /// Deletes a secret at once (no recovery window); a missing secret is not an error.
    pub async fn delete(&self, name: &SecretRef) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .force_delete_without_recovery(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                DeleteSecretError::ResourceNotFoundException(_) => Ok(()),
                other => Err(AwsError::new("SecretsManager", "DeleteSecret", other)),
            },
        }
    }
}
