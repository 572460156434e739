//! Opaque page tokens: DynamoDB's `LastEvaluatedKey`, base64url-encoded JSON of its string
//! attributes. A token is checked against the attributes a query may have in its key, so a
//! forged token cannot make a query start somewhere else in the table.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::StoreError;
use crate::item::Item;

/// One page of a list, and the token of the next page if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageToken>,
}

/// An opaque position in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(String);

impl PageToken {
    /// Wraps a token a client sent back; it is checked when used.
    pub fn from_client(token: String) -> Result<Self, StoreError> {
        if token.is_empty() || token.len() > 2048 {
            return Err(StoreError::BadPageToken);
        }
        Ok(Self(token))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn encode(key: &Item) -> Result<Self, StoreError> {
        let mut map = BTreeMap::new();
        for (k, v) in key {
            let AttributeValue::S(s) = v else {
                return Err(StoreError::Corrupt {
                    key: k.clone(),
                    reason: "a page key attribute is not a string".into(),
                });
            };
            map.insert(k.as_str(), s.as_str());
        }
        let json = serde_json::to_vec(&map).map_err(|e| StoreError::Corrupt {
            key: "page token".into(),
            reason: e.to_string(),
        })?;
        Ok(Self(URL_SAFE_NO_PAD.encode(json)))
    }

    /// The key the token stands for, if it has exactly the `allowed` attributes and the
    /// partition attribute `fixed.0` has the value `fixed.1`.
    pub(crate) fn decode(&self, allowed: &[&str], fixed: (&str, &str)) -> Result<Item, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.0)
            .map_err(|_| StoreError::BadPageToken)?;
        let map: HashMap<String, String> =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::BadPageToken)?;
        if map.len() != allowed.len()
            || !map.keys().all(|k| allowed.contains(&k.as_str()))
            || map.get(fixed.0).map(String::as_str) != Some(fixed.1)
        {
            return Err(StoreError::BadPageToken);
        }
        Ok(map
            .into_iter()
            .map(|(k, v)| (k, AttributeValue::S(v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let key: Item = HashMap::from([
            ("pk".into(), AttributeValue::S("INS#x".into())),
            ("gsi1pk".into(), AttributeValue::S("INSTANCES".into())),
        ]);
        let t = PageToken::encode(&key).unwrap();
        assert_eq!(
            t.decode(&["pk", "gsi1pk"], ("gsi1pk", "INSTANCES"))
                .unwrap(),
            key
        );
        assert!(
            t.decode(&["pk"], ("pk", "INS#x")).is_err(),
            "attribute set differs"
        );
        assert!(
            t.decode(&["pk", "gsi1pk"], ("gsi1pk", "OTHER")).is_err(),
            "partition differs"
        );
        for bad in ["", "!!!", "e30", "bm90IGpzb24"] {
            let decoded = PageToken::from_client(bad.into())
                .and_then(|t| t.decode(&["pk", "gsi1pk"], ("gsi1pk", "INSTANCES")));
            assert!(decoded.is_err(), "{bad}");
        }
    }
}
