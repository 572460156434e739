//! The API versions the gateway advertises: only what it inspects. Forwarded APIs are
//! advertised in the intersection of the gateway's and the upstream broker's ranges; APIs
//! the gateway always refuses are advertised in its own range, so that clients get the
//! authorization error a broker with ACLs gives instead of "unsupported".
//!
//! Caps, and why: Fetch ≤ 12 (v13+ names topics by id only; v16+ responses carry broker
//! addresses), Produce ≤ 9 (never forwarded; v10+ responses carry broker addresses),
//! SaslHandshake exactly 1 (aiokafka sends raw tokens after v0), AddPartitionsToTxn ≤ 3 (v4
//! batches several transactional ids). Telemetry (KIP-714), the new consumer group protocol
//! (KIP-848, key 68) and share groups are not advertised: Java 4.x clients need
//! `group.protocol=classic`.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersion;

/// What the gateway does with an API once the client signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Inspected, authorized and forwarded.
    Forward,
    /// Answered by the gateway itself (before and after sign-in).
    Local,
    /// Always refused with an authorization error.
    Deny,
}

/// `(key, min, max, treatment)`.
const TABLE: &[(ApiKey, i16, i16, Treatment)] = &[
    (ApiKey::Produce, 3, 9, Treatment::Deny),
    (ApiKey::Fetch, 4, 12, Treatment::Forward),
    (ApiKey::ListOffsets, 1, 10, Treatment::Forward),
    (ApiKey::Metadata, 0, 12, Treatment::Forward),
    (ApiKey::OffsetCommit, 2, 9, Treatment::Forward),
    (ApiKey::OffsetFetch, 1, 9, Treatment::Forward),
    (ApiKey::FindCoordinator, 0, 6, Treatment::Forward),
    (ApiKey::JoinGroup, 0, 9, Treatment::Forward),
    (ApiKey::Heartbeat, 0, 4, Treatment::Forward),
    (ApiKey::LeaveGroup, 0, 5, Treatment::Forward),
    (ApiKey::SyncGroup, 0, 5, Treatment::Forward),
    (ApiKey::DescribeGroups, 0, 5, Treatment::Forward),
    (ApiKey::ListGroups, 0, 4, Treatment::Forward),
    (ApiKey::SaslHandshake, 1, 1, Treatment::Local),
    (ApiKey::ApiVersions, 0, 4, Treatment::Local),
    (ApiKey::CreateTopics, 2, 7, Treatment::Deny),
    (ApiKey::DeleteTopics, 1, 6, Treatment::Deny),
    (ApiKey::DeleteRecords, 0, 2, Treatment::Deny),
    (ApiKey::InitProducerId, 0, 5, Treatment::Deny),
    (ApiKey::OffsetForLeaderEpoch, 2, 4, Treatment::Forward),
    (ApiKey::AddPartitionsToTxn, 0, 3, Treatment::Deny),
    (ApiKey::AddOffsetsToTxn, 0, 4, Treatment::Deny),
    (ApiKey::EndTxn, 0, 5, Treatment::Deny),
    (ApiKey::TxnOffsetCommit, 0, 5, Treatment::Deny),
    (ApiKey::DescribeAcls, 1, 3, Treatment::Deny),
    (ApiKey::CreateAcls, 1, 3, Treatment::Deny),
    (ApiKey::DeleteAcls, 1, 3, Treatment::Deny),
    (ApiKey::DescribeConfigs, 1, 4, Treatment::Deny),
    (ApiKey::AlterConfigs, 0, 2, Treatment::Deny),
    (ApiKey::SaslAuthenticate, 0, 2, Treatment::Local),
    (ApiKey::CreatePartitions, 0, 3, Treatment::Deny),
    (ApiKey::DeleteGroups, 0, 2, Treatment::Deny),
    (ApiKey::IncrementalAlterConfigs, 0, 1, Treatment::Deny),
    (ApiKey::OffsetDelete, 0, 0, Treatment::Deny),
];

/// The versions the gateway serves, per API.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    ranges: HashMap<i16, (i16, i16, Treatment)>,
}

impl Versions {
    /// The gateway's ranges, forwarded ones narrowed to the upstream broker's
    /// (`upstream`: key → (min, max) from its ApiVersions answer). A forwarded API the broker
    /// does not offer is not advertised.
    pub fn negotiate(upstream: &HashMap<i16, (i16, i16)>) -> Self {
        let mut ranges = HashMap::new();
        for &(key, min, max, treatment) in TABLE {
            let range = match treatment {
                Treatment::Forward => upstream
                    .get(&(key as i16))
                    .map(|&(umin, umax)| (min.max(umin), max.min(umax)))
                    .filter(|(lo, hi)| lo <= hi),
                Treatment::Local | Treatment::Deny => Some((min, max)),
            };
            if let Some((lo, hi)) = range {
                ranges.insert(key as i16, (lo, hi, treatment));
            }
        }
        Self { ranges }
    }

    /// What to do with `key` at `version`; `None` when it is not served (the connection is
    /// closed: the client sent what was not advertised).
    pub fn treatment(&self, key: ApiKey, version: i16) -> Option<Treatment> {
        self.ranges
            .get(&(key as i16))
            .filter(|(lo, hi, _)| (*lo..=*hi).contains(&version))
            .map(|(_, _, t)| *t)
    }

    /// The ApiVersions answer's list.
    pub fn advertised(&self) -> Vec<ApiVersion> {
        let mut keys: Vec<_> = self.ranges.iter().collect();
        keys.sort_by_key(|(k, _)| **k);
        keys.into_iter()
            .map(|(k, (lo, hi, _))| {
                let mut v = ApiVersion::default();
                v.api_key = *k;
                v.min_version = *lo;
                v.max_version = *hi;
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_apis_follow_the_broker_denied_ones_do_not() {
        let upstream = HashMap::from([
            (ApiKey::Fetch as i16, (0, 16)),
            (ApiKey::Metadata as i16, (0, 9)),
            (ApiKey::ListOffsets as i16, (11, 12)),
        ]);
        let v = Versions::negotiate(&upstream);
        assert_eq!(v.treatment(ApiKey::Fetch, 12), Some(Treatment::Forward));
        assert_eq!(v.treatment(ApiKey::Fetch, 13), None);
        assert_eq!(v.treatment(ApiKey::Metadata, 10), None);
        // No overlap with the broker: not advertised at all.
        assert_eq!(v.treatment(ApiKey::ListOffsets, 11), None);
        // Not offered by the broker: not advertised.
        assert_eq!(v.treatment(ApiKey::JoinGroup, 5), None);
        assert_eq!(v.treatment(ApiKey::Produce, 9), Some(Treatment::Deny));
        assert_eq!(v.treatment(ApiKey::SaslHandshake, 0), None);
        assert_eq!(
            v.treatment(ApiKey::SaslHandshake, 1),
            Some(Treatment::Local)
        );
        let keys: Vec<i16> = v.advertised().iter().map(|a| a.api_key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(!keys.contains(&(ApiKey::ListOffsets as i16)));
    }
}
