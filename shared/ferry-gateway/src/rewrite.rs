//! The responses the gateway changes on their way back: broker and coordinator addresses
//! become the gateway's own listeners (node ids unchanged, so clients still route to leaders
//! and coordinators themselves), and what a consumer group may not see is taken out.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::authz::{Patch, Principal, TOPIC_AUTHORIZATION_FAILED, denied_coordinator};
use crate::wire::{encode_response, parse_response};

/// Where clients reach the gateway's listener for an upstream node.
#[derive(Debug, Default)]
pub struct Advertised {
    pub host: String,
    /// Node n's listener is on base + n; with base 0 (tests), each listener takes a free port
    /// and `bound` says which.
    pub base_port: u16,
    pub bound: std::sync::RwLock<std::collections::HashMap<i32, u16>>,
}

impl Advertised {
    pub fn new(host: impl Into<String>, base_port: u16) -> Self {
        Self {
            host: host.into(),
            base_port,
            bound: Default::default(),
        }
    }

    /// The gateway's port for upstream node `node` (base + node id), if it fits.
    pub fn port(&self, node: i32) -> Option<u16> {
        if let Some(p) = self
            .bound
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
        {
            return Some(*p);
        }
        if self.base_port == 0 {
            return None;
        }
        u16::try_from(i64::from(self.base_port) + i64::from(node)).ok()
    }

    fn set(&self, node: i32, host: &mut StrBytes, port: &mut i32) {
        if node < 0 {
            return;
        }
        *host = StrBytes::from_string(self.host.clone());
        *port = self.port(node).map_or(-1, i32::from);
    }
}

/// What a Metadata answer taught: the brokers (node id, upstream host, port) and the own
/// topic's id.
#[derive(Debug, Default)]
pub struct Learned {
    pub brokers: Vec<(i32, String, i32)>,
    pub topic_id: Option<Uuid>,
}

/// Applies `patch` to a response frame body (header and body).
pub fn patch(
    key: ApiKey,
    version: i16,
    frame: Bytes,
    patch: &Patch,
    principal: &Principal,
    advertised: &Advertised,
) -> anyhow::Result<(Bytes, Learned)> {
    let mut learned = Learned::default();
    let out = match patch {
        Patch::None => frame,
        Patch::Metadata { keep_own, denied } => {
            let (header, mut m): (_, MetadataResponse) = parse_response(key, version, frame)?;
            for b in &mut m.brokers {
                learned
                    .brokers
                    .push((b.node_id.0, b.host.to_string(), b.port));
                advertised.set(b.node_id.0, &mut b.host, &mut b.port);
            }
            m.topics.retain(|t| {
                let own = t
                    .name
                    .as_ref()
                    .is_some_and(|n| n.as_str() == principal.topic);
                if own && !t.topic_id.is_nil() {
                    learned.topic_id = Some(t.topic_id);
                }
                own && *keep_own
            });
            for (name, id) in denied {
                let mut t = metadata_response::MetadataResponseTopic::default();
                t.error_code = TOPIC_AUTHORIZATION_FAILED;
                t.name = name
                    .as_ref()
                    .map(|n| TopicName(StrBytes::from_string(n.clone())));
                if version >= 10 {
                    t.topic_id = *id;
                }
                if version >= 8 {
                    t.topic_authorized_operations = i32::MIN;
                }
                m.topics.push(t);
            }
            encode_response(key, version, &header, &m)?
        }
        Patch::FindCoordinator { denied } => {
            let (header, mut f): (_, FindCoordinatorResponse) =
                parse_response(key, version, frame)?;
            if version < 4 {
                advertised.set(f.node_id.0, &mut f.host, &mut f.port);
            } else {
                for c in &mut f.coordinators {
                    advertised.set(c.node_id.0, &mut c.host, &mut c.port);
                }
                f.coordinators
                    .extend(denied.iter().map(|(k, c)| denied_coordinator(k, *c)));
            }
            encode_response(key, version, &header, &f)?
        }
        Patch::ListGroups => {
            let (header, mut l): (_, ListGroupsResponse) = parse_response(key, version, frame)?;
            l.groups.retain(|g| g.group_id.as_str() == principal.group);
            encode_response(key, version, &header, &l)?
        }
    };
    Ok((out, learned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::response;

    fn principal() -> Principal {
        Principal {
            group: "cg_a".into(),
            topic: "ferry.ins_a".into(),
            topic_id: Uuid::nil(),
        }
    }

    fn topic(name: &str, id: u128) -> metadata_response::MetadataResponseTopic {
        let mut t = metadata_response::MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
        t.topic_id = Uuid::from_u128(id);
        t
    }

    #[test]
    fn metadata_keeps_the_own_topic_rewrites_brokers_and_adds_refusals() {
        let mut m = MetadataResponse::default();
        let mut b = metadata_response::MetadataResponseBroker::default();
        b.node_id = BrokerId(3);
        b.host = "10.0.0.7".into();
        b.port = 9092;
        m.brokers.push(b);
        m.topics = vec![topic("ferry.ins_a", 7), topic("ferry.ins_b", 8)];
        let frame = response(ApiKey::Metadata, 12, 5, &m).unwrap();
        let adv = Advertised::new("gw.example", 9200);
        let p = Patch::Metadata {
            keep_own: true,
            denied: vec![(Some("other".into()), Uuid::nil())],
        };
        let (out, learned) = patch(ApiKey::Metadata, 12, frame, &p, &principal(), &adv).unwrap();
        assert_eq!(learned.brokers, vec![(3, "10.0.0.7".into(), 9092)]);
        assert_eq!(learned.topic_id, Some(Uuid::from_u128(7)));
        let (h, back): (_, MetadataResponse) = parse_response(ApiKey::Metadata, 12, out).unwrap();
        assert_eq!(h.correlation_id, 5);
        assert_eq!(back.brokers[0].host.as_str(), "gw.example");
        assert_eq!(back.brokers[0].port, 9203);
        let names: Vec<_> = back
            .topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ferry.ins_a".into(), 0),
                ("other".into(), TOPIC_AUTHORIZATION_FAILED)
            ]
        );
    }

    #[test]
    fn coordinators_point_at_the_gateway_in_both_forms() {
        let adv = Advertised::new("127.0.0.1", 19000);
        for version in [2, 4] {
            let mut f = FindCoordinatorResponse::default();
            if version < 4 {
                f.node_id = BrokerId(1);
                f.host = "broker".into();
                f.port = 9092;
            } else {
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = "cg_a".into();
                c.node_id = BrokerId(1);
                c.host = "broker".into();
                c.port = 9092;
                f.coordinators.push(c);
            }
            let frame = response(ApiKey::FindCoordinator, version, 1, &f).unwrap();
            let p = Patch::FindCoordinator {
                denied: vec![("cg_b".into(), 30)],
            };
            let (out, _) = patch(
                ApiKey::FindCoordinator,
                version,
                frame,
                &p,
                &principal(),
                &adv,
            )
            .unwrap();
            let (_, back): (_, FindCoordinatorResponse) =
                parse_response(ApiKey::FindCoordinator, version, out).unwrap();
            if version < 4 {
                assert_eq!((back.host.as_str(), back.port), ("127.0.0.1", 19001));
            } else {
                assert_eq!(back.coordinators.len(), 2);
                assert_eq!(back.coordinators[0].port, 19001);
                assert_eq!(back.coordinators[1].error_code, 30);
            }
        }
    }
}
