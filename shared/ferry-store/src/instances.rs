//! Instances: create (idempotent with a client token), read, list, change, delete with
//! everything they own.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use ferry_domain::id::{ConsumerGroupId, InstanceId};
use ferry_domain::instance::Instance;
use serde::{Deserialize, Serialize};

use crate::item::{Item, key, n, new_item, s};
use crate::keys::{
    GROUP_POINTER_SK, GROUP_SK_PREFIX, GSI1, GSI1_PK, GSI1_SK, INSTANCE_SK, INSTANCES_GSI_PK, PK,
    SK, TASK_SK, TOKEN_SK, TTL, group_pointer_pk, instance_pk, token_pk,
};
use crate::page::{Page, PageToken};
use crate::tasks::TaskRecord;
use crate::{Store, StoreError, Versioned};

/// How long a client token is remembered.
pub const CLIENT_TOKEN_TTL: Duration = Duration::hours(24);

/// What `create_instance` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(Versioned<Instance>),
    /// The client token was used before for the same request: the instance it created.
    Existing(Versioned<Instance>),
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenBody {
    instance_id: InstanceId,
    /// A digest of the request the token was first used with.
    fingerprint: String,
}

const CLIENT_TOKEN_ATTR: &str = "client_token";

impl Store {
    /// Creates an instance and its unconfigured task in one transaction. With a client token,
    /// a retry of the same request returns the instance the first one created; the same token
    /// with a different request is [`StoreError::Duplicate`].
    pub async fn create_instance(
        &self,
        instance: &Instance,
        task: &TaskRecord,
        client_token: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, StoreError> {
        let pk = instance_pk(instance.id());
        let mut instance_item = new_item(pk.clone(), INSTANCE_SK, instance)?;
        instance_item.insert(GSI1_PK.into(), s(INSTANCES_GSI_PK));
        instance_item.insert(
            GSI1_SK.into(),
            s(format!(
                "{}#{}",
                instance.created_at().to_rfc3339(),
                instance.id()
            )),
        );
        if let Some((token, _)) = client_token {
            // The instance remembers its token, so deleting the instance frees the token.
            instance_item.insert(CLIENT_TOKEN_ATTR.into(), s(token));
        }
        let mut items = vec![
            put(&self.table, instance_item)?,
            put(&self.table, new_item(pk, TASK_SK, task)?)?,
        ];
        if let Some((token, fingerprint)) = client_token {
            let body = TokenBody {
                instance_id: instance.id().clone(),
                fingerprint: fingerprint.to_owned(),
            };
            let mut token_item = new_item(token_pk(token), TOKEN_SK, &body)?;
            token_item.insert(TTL.into(), n((now + CLIENT_TOKEN_TTL).timestamp()));
            items.push(put(&self.table, token_item)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created(Versioned {
                value: instance.clone(),
                version: 1,
            })),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let token_failed = c
                        .cancellation_reasons()
                        .get(2)
                        .and_then(|r| r.code())
                        .is_some_and(|code| code == "ConditionalCheckFailed");
                    match client_token {
                        Some((token, fingerprint)) if token_failed => {
                            self.instance_for_token(token, fingerprint).await
                        }
                        _ => Err(StoreError::Conflict {
                            what: "the instance",
                        }),
                    }
                }
                other => Err(StoreError::backend("TransactWriteItems", other)),
            },
        }
    }

    async fn instance_for_token(
        &self,
        token: &str,
        fingerprint: &str,
    ) -> Result<CreateOutcome, StoreError> {
        let (body, _) = self
            .get_versioned::<TokenBody>(token_pk(token), TOKEN_SK)
            .await?
            .ok_or(StoreError::Conflict {
                what: "the client token",
            })?;
        if body.fingerprint != fingerprint {
            return Err(StoreError::Duplicate {
                what: "an instance created with this client_token and different parameters".into(),
            });
        }
        let existing = self
            .get_instance(&body.instance_id)
            .await?
            .ok_or(StoreError::NotFound {
                what: "the instance this client_token created",
            })?;
        Ok(CreateOutcome::Existing(existing))
    }

    pub async fn get_instance(
        &self,
        id: &InstanceId,
    ) -> Result<Option<Versioned<Instance>>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(id), INSTANCE_SK)
            .await?
            .map(|(value, version)| Versioned { value, version }))
    }

    /// Stores a changed instance if nobody changed it since `expected`.
    pub async fn update_instance(
        &self,
        instance: &Instance,
        expected: u64,
    ) -> Result<u64, StoreError> {
        self.update_versioned(
            instance_pk(instance.id()),
            INSTANCE_SK,
            instance,
            expected,
            "the instance",
        )
        .await
    }

    /// Lists instances, newest first, keeping those `keep` accepts, `limit` per page.
    pub async fn list_instances(
        &self,
        limit: usize,
        token: Option<&PageToken>,
        keep: impl Fn(&Instance) -> bool,
    ) -> Result<Page<Versioned<Instance>>, StoreError> {
        let allowed = [PK, SK, GSI1_PK, GSI1_SK];
        let mut start = token
            .map(|t| t.decode(&allowed, (GSI1_PK, INSTANCES_GSI_PK)))
            .transpose()?;
        let mut items = Vec::new();
        // Filtering happens after reading, so keep reading until the page is full.
        loop {
            let want = i32::try_from(limit - items.len())
                .unwrap_or(i32::MAX)
                .max(1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#p = :p")
                .expression_attribute_names("#p", GSI1_PK)
                .expression_attribute_values(":p", s(INSTANCES_GSI_PK))
                .scan_index_forward(false)
                .limit(want)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::backend("Query", e))?;
            let mut last = out.last_evaluated_key;
            for item in out.items.unwrap_or_default() {
                let item_key = page_key(&item, &allowed);
                let (value, version): (Instance, u64) = crate::item::from_item(item)?;
                if keep(&value) {
                    items.push(Versioned { value, version });
                    if items.len() == limit {
                        // The page is full mid-batch: continue after this item next time.
                        last = Some(item_key);
                        break;
                    }
                }
            }
            match last {
                Some(k) if items.len() < limit => start = Some(k),
                Some(k) => {
                    return Ok(Page {
                        items,
                        next: Some(PageToken::encode(&k)?),
                    });
                }
                None => return Ok(Page { items, next: None }),
            }
        }
    }

    /// Deletes an instance and every item it owns (task, consumer groups, reservations, and,
    /// later, checkpoints and leases), and frees its client token.
    pub async fn delete_instance(&self, id: &InstanceId) -> Result<(), StoreError> {
        let pk = instance_pk(id);
        let mut keys: Vec<Item> = Vec::new();
        for item in self.query_partition(pk, None).await? {
            if let Some(AttributeValue::S(token)) = item.get(CLIENT_TOKEN_ATTR) {
                keys.push(key(token_pk(token), TOKEN_SK));
            }
            if let Some(AttributeValue::S(sk)) = item.get(SK)
                && let Some(group) = sk.strip_prefix(GROUP_SK_PREFIX)
                && let Ok(group) = group.parse::<ConsumerGroupId>()
            {
                keys.push(key(group_pointer_pk(&group), GROUP_POINTER_SK));
            }
            keys.push(page_key(&item, &[PK, SK]));
        }
        // The instance item last, so a failure half-way leaves it findable and retryable.
        keys.sort_by_key(|k| matches!(k.get(SK), Some(AttributeValue::S(sk)) if sk == INSTANCE_SK));
        let requests = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| StoreError::backend("BatchWriteItem", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_batches(requests).await
    }
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let p = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().put(p).build())
}

pub(crate) fn delete(
    table: &str,
    k: Item,
    condition: Option<&str>,
) -> Result<TransactWriteItem, StoreError> {
    let d = Delete::builder()
        .table_name(table)
        .set_key(Some(k))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().delete(d).build())
}

/// The key attributes of an item, for a page token or a delete.
fn page_key(item: &Item, attrs: &[&str]) -> Item {
    attrs
        .iter()
        .filter_map(|a| item.get(*a).map(|v| ((*a).to_owned(), v.clone())))
        .collect()
}
