//! Converting domain values to items and back, and the versioned writes every record shares.
//!
//! A record's value is kept whole in one map attribute, `body`, beside the table's own
//! attributes (keys, `version`, counters). A change replaces `body` in one `SET`, so a field that
//! became absent is gone, and counters on the same item are never overwritten by a stale copy.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys::{BODY, PK, SK, VERSION};
use crate::{Store, StoreError};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn body<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt {
        key: "(new item)".into(),
        reason: e.to_string(),
    })
}

/// An item with keys, version 1 and the value's body.
pub(crate) fn new_item<T: Serialize>(
    pk: String,
    sk: impl Into<String>,
    value: &T,
) -> Result<Item, StoreError> {
    let mut item = key(pk, sk);
    item.insert(VERSION.into(), n(1));
    item.insert(BODY.into(), body(value)?);
    Ok(item)
}

pub(crate) fn from_item<T: DeserializeOwned>(mut item: Item) -> Result<(T, u64), StoreError> {
    let key = describe_key(&item);
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let version = match item.remove(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| corrupt(format!("version `{n}` is not a number")))?,
        _ => return Err(corrupt("no version".into())),
    };
    let body = item.remove(BODY).ok_or_else(|| corrupt("no body".into()))?;
    let value = serde_dynamo::from_attribute_value(body).map_err(|e| corrupt(e.to_string()))?;
    Ok((value, version))
}

pub(crate) fn describe_key(item: &Item) -> String {
    let s = |k: &str| match item.get(k) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => "?".into(),
    };
    format!("{}/{}", s(PK), s(SK))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

impl Store {
    /// Reads one item and decodes it.
    pub(crate) async fn get_versioned<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<(T, u64)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// Every item of partition `pk` (whose sort key starts with `sk_prefix`, if given), all
    /// pages, read consistently.
    pub(crate) async fn query_partition(
        &self,
        pk: String,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#p", PK)
                .expression_attribute_values(":p", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            q = match sk_prefix {
                Some(prefix) => q
                    .key_condition_expression("#p = :p AND begins_with(#s, :prefix)")
                    .expression_attribute_names("#s", SK)
                    .expression_attribute_values(":prefix", s(prefix)),
                None => q.key_condition_expression("#p = :p"),
            };
            let out = q
                .send()
                .await
                .map_err(|e| StoreError::backend("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }

    /// Replaces the body of an existing item if its version is still `expected`, and returns
    /// the new version.
    pub(crate) async fn update_versioned<T: Serialize>(
        &self,
        pk: String,
        sk: &str,
        value: &T,
        expected: u64,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET #body = :body, #version = :next")
            .condition_expression("#version = :expected")
            .expression_attribute_names("#body", BODY)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":body", body(value)?)
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":next", n(expected + 1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(expected + 1),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => {
                    Err(StoreError::Conflict { what })
                }
                other => Err(StoreError::backend("UpdateItem", other)),
            },
        }
    }

    /// Writes `value` as a new item (`expected` `None`: none may exist) or over version
    /// `expected` of an existing one; the new version.
    pub(crate) async fn put_versioned<T: Serialize>(
        &self,
        pk: String,
        sk: &str,
        value: &T,
        expected: Option<u64>,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        if let Some(v) = expected {
            return self.update_versioned(pk, sk, value, v, what).await;
        }
        let item = new_item(pk, sk, value)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(_) => {
                    StoreError::Conflict { what }
                }
                other => StoreError::backend("PutItem", other),
            })?;
        Ok(1)
    }

    /// Sends write requests in order, in batches of 25 (BatchWriteItem's limit), resending
    /// what DynamoDB leaves unprocessed before going on to the next batch.
    pub(crate) async fn write_batches(
        &self,
        requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut batch = chunk.to_vec();
            let mut backoff = std::time::Duration::from_millis(20);
            while !batch.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .map_err(|e| StoreError::backend("BatchWriteItem", e))?;
                batch = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !batch.is_empty() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
        Ok(())
    }
}
