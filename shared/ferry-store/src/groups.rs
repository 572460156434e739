//! Consumer groups of an instance. Creating one reserves its username within the instance and
//! counts it against the instance's limit in the same transaction, so concurrent creates can
//! never pass the limit or share a username.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use ferry_domain::consumer_group::ConsumerGroup;
use ferry_domain::id::{ConsumerGroupId, InstanceId};

use crate::instances::delete;
use crate::item::{from_item, key, n, new_item};
use crate::keys::{
    GROUP_COUNT, GROUP_POINTER_SK, GROUP_SK_PREFIX, INSTANCE_SK, group_pointer_pk, group_sk,
    instance_pk, username_sk,
};
use crate::{Store, StoreError, Versioned};

/// A stored consumer group.
pub type GroupRecord = Versioned<ConsumerGroup>;

impl Store {
    /// Creates a consumer group if the instance exists, has fewer than `max` groups, and no
    /// group of it uses the same username.
    pub async fn create_group(
        &self,
        group: &ConsumerGroup,
        max: usize,
    ) -> Result<GroupRecord, StoreError> {
        let pk = instance_pk(group.instance_id());
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::backend("TransactWriteItems", e);
        let put_new = |item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(build)
        };
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), INSTANCE_SK)))
            .update_expression("SET #c = if_not_exists(#c, :zero) + :one")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#c) OR #c < :max)",
            )
            .expression_attribute_names("#c", GROUP_COUNT)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .build()
            .map_err(build)?;
        let items = vec![
            TransactWriteItem::builder().update(count).build(),
            put_new(new_item(pk.clone(), group_sk(group.id()), group)?)?,
            put_new(new_item(
                pk,
                username_sk(group.username().as_str()),
                group.id(),
            )?)?,
            put_new(new_item(
                group_pointer_pk(group.id()),
                GROUP_POINTER_SK,
                group.instance_id(),
            )?)?,
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Versioned {
                value: group.clone(),
                version: 1,
            }),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let failed = |i: usize| {
                        c.cancellation_reasons()
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|code| code == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        if self.get_instance(group.instance_id()).await?.is_none() {
                            return Err(StoreError::NotFound {
                                what: "the instance",
                            });
                        }
                        Err(StoreError::QuotaExceeded {
                            what: format!("the instance already has {max} consumer groups"),
                        })
                    } else if failed(2) {
                        Err(StoreError::Duplicate {
                            what: format!(
                                "a consumer group with username `{}`",
                                group.username().as_str()
                            ),
                        })
                    } else {
                        Err(StoreError::Conflict {
                            what: "the consumer group",
                        })
                    }
                }
                other => Err(StoreError::backend("TransactWriteItems", other)),
            },
        }
    }

    pub async fn get_group(
        &self,
        instance: &InstanceId,
        id: &ConsumerGroupId,
    ) -> Result<Option<GroupRecord>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(instance), &group_sk(id))
            .await?
            .map(|(value, version)| Versioned { value, version }))
    }

    /// A consumer group found by its id alone (through its pointer item), as the consumer
    /// gateway looks it up from a SASL username. Both reads are strongly consistent, so a
    /// password change or a deletion counts at once.
    pub async fn find_group(
        &self,
        id: &ConsumerGroupId,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let pointer: Option<(InstanceId, u64)> = self
            .get_versioned(group_pointer_pk(id), GROUP_POINTER_SK)
            .await?;
        match pointer {
            Some((instance, _)) => self.get_group(&instance, id).await,
            None => Ok(None),
        }
    }

    /// All consumer groups of an instance (at most the instance's limit, so one query).
    pub async fn list_groups(&self, instance: &InstanceId) -> Result<Vec<GroupRecord>, StoreError> {
        let mut groups = self
            .query_partition(instance_pk(instance), Some(GROUP_SK_PREFIX))
            .await?
            .into_iter()
            .map(|item| from_item(item).map(|(value, version)| Versioned { value, version }))
            .collect::<Result<Vec<GroupRecord>, StoreError>>()?;
        groups.sort_by_key(|g: &GroupRecord| g.value.created_at());
        Ok(groups)
    }

    /// Stores a changed group (a new password hash) if nobody changed it since `expected`.
    pub async fn update_group(
        &self,
        group: &ConsumerGroup,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let version = self
            .update_versioned(
                instance_pk(group.instance_id()),
                &group_sk(group.id()),
                group,
                expected,
                "the consumer group",
            )
            .await?;
        // Groups created before pointers existed get theirs here (an idempotent put).
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(new_item(
                group_pointer_pk(group.id()),
                GROUP_POINTER_SK,
                group.instance_id(),
            )?))
            .send()
            .await
            .map_err(|e| StoreError::backend("PutItem", e))?;
        Ok(version)
    }

    /// Deletes a group, frees its username and its place in the instance's count.
    pub async fn delete_group(&self, group: &ConsumerGroup) -> Result<(), StoreError> {
        let pk = instance_pk(group.instance_id());
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::backend("TransactWriteItems", e);
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), INSTANCE_SK)))
            .update_expression("SET #c = #c - :one")
            .condition_expression("attribute_exists(pk) AND #c > :zero")
            .expression_attribute_names("#c", GROUP_COUNT)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build)?;
        let items = vec![
            delete(
                &self.table,
                key(pk.clone(), group_sk(group.id())),
                Some("attribute_exists(pk)"),
            )?,
            delete(
                &self.table,
                key(pk, username_sk(group.username().as_str())),
                None,
            )?,
            delete(
                &self.table,
                key(group_pointer_pk(group.id()), GROUP_POINTER_SK),
                None,
            )?,
            TransactWriteItem::builder().update(count).build(),
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(_) => {
                    Err(StoreError::NotFound {
                        what: "the consumer group",
                    })
                }
                other => Err(StoreError::backend("TransactWriteItems", other)),
            },
        }
    }
}
