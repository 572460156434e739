//! Authorization of every request after sign-in (docs/gateway.md has the table): a consumer
//! group reaches only its own task's topic and its own group id. A request that names
//! anything else is refused whole, with the error a broker with ACLs gives for what it named
//! (TOPIC_, GROUP_, CLUSTER_ or TRANSACTIONAL_ID_AUTHORIZATION_FAILED), except Metadata and
//! FindCoordinator, whose allowed part is forwarded and the refused part added to the answer.
//!
//! Fetch requests are always sent as full fetches (session id 0, epoch −1): every upstream
//! connection carries Ferry's own principal, so a fetch session must never be shared.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::wire::{Request, RequestError};

pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// Who signed in on a connection, and what they may reach.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The consumer group id (`cg_…`): the only Kafka group id allowed.
    pub group: String,
    /// The task's topic: the only topic allowed.
    pub topic: String,
    /// The topic's id, once seen in a Metadata answer (nil before).
    pub topic_id: Uuid,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Verdict {
    /// Send `frame` upstream; treat its response as `patch` says.
    Forward { frame: Bytes, patch: Patch },
    /// Answer with this response frame, in order with the forwarded ones.
    Respond(Bytes),
    /// Close the connection (a request that expects no answer and is refused).
    Close(&'static str),
}

impl Verdict {
    /// For metrics and logs: `denied` when anything the request named was refused (also a
    /// Metadata or FindCoordinator request forwarded with its refused part taken out).
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Forward {
                patch: Patch::Metadata { denied, .. },
                ..
            } if !denied.is_empty() => "denied",
            Verdict::Forward {
                patch: Patch::FindCoordinator { denied },
                ..
            } if !denied.is_empty() => "denied",
            Verdict::Forward { .. } => "allowed",
            Verdict::Respond(_) | Verdict::Close(_) => "denied",
        }
    }
}

/// How a forwarded request's response is changed on its way back.
#[derive(Debug, Clone, Default)]
pub enum Patch {
    /// Passed through as bytes.
    #[default]
    None,
    /// Broker addresses rewritten; only the own topic kept (or none when `keep_own` is false);
    /// refused topics added with TOPIC_AUTHORIZATION_FAILED.
    Metadata {
        keep_own: bool,
        denied: Vec<(Option<String>, Uuid)>,
    },
    /// Coordinator addresses rewritten; refused keys added with their error.
    FindCoordinator { denied: Vec<(String, i16)> },
    /// Only the own group kept.
    ListGroups,
}

impl Principal {
    fn own_topic(&self, name: &str) -> bool {
        name == self.topic
    }

    fn own_topic_id(&self, id: &Uuid) -> bool {
        !id.is_nil() && *id == self.topic_id
    }

    fn own_group(&self, group: &str) -> bool {
        group == self.group
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn forward(req: &Request, patch: Patch) -> Verdict {
    Verdict::Forward {
        frame: req_frame(req),
        patch,
    }
}

/// The original request frame body (header and body as received).
fn req_frame(req: &Request) -> Bytes {
    req.raw.clone()
}

type Out = anyhow::Result<Verdict>;

/// Decides what to do with a request of a signed-in client.
pub fn authorize(req: &Request, p: &Principal) -> Result<Verdict, RequestError> {
    let out = match req.key {
        ApiKey::Metadata => metadata(req, p)?,
        ApiKey::Fetch => fetch(req, p)?,
        ApiKey::ListOffsets => list_offsets(req, p)?,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(req, p)?,
        ApiKey::FindCoordinator => find_coordinator(req, p)?,
        ApiKey::JoinGroup => {
            let r: JoinGroupRequest = req.decode()?;
            group_only(req, p, &r.group_id, |code| {
                let mut b = JoinGroupResponse::default();
                b.error_code = code;
                b.member_id = r.member_id.clone();
                req.respond(&b)
            })
        }
        ApiKey::SyncGroup => {
            let r: SyncGroupRequest = req.decode()?;
            group_only(req, p, &r.group_id, |code| {
                let mut b = SyncGroupResponse::default();
                b.error_code = code;
                req.respond(&b)
            })
        }
        ApiKey::Heartbeat => {
            let r: HeartbeatRequest = req.decode()?;
            group_only(req, p, &r.group_id, |code| {
                let mut b = HeartbeatResponse::default();
                b.error_code = code;
                req.respond(&b)
            })
        }
        ApiKey::LeaveGroup => {
            let r: LeaveGroupRequest = req.decode()?;
            group_only(req, p, &r.group_id, |code| {
                let mut b = LeaveGroupResponse::default();
                b.error_code = code;
                req.respond(&b)
            })
        }
        ApiKey::DescribeGroups => {
            let r: DescribeGroupsRequest = req.decode()?;
            if r.groups.iter().all(|g| p.own_group(g)) {
                Ok(forward(req, Patch::None))
            } else {
                let mut b = DescribeGroupsResponse::default();
                b.groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        let mut d = describe_groups_response::DescribedGroup::default();
                        d.group_id = g.clone();
                        d.error_code = GROUP_AUTHORIZATION_FAILED;
                        d
                    })
                    .collect();
                req.respond(&b).map(Verdict::Respond)
            }
        }
        ApiKey::ListGroups => Ok(forward(req, Patch::ListGroups)),
        ApiKey::OffsetCommit => offset_commit(req, p)?,
        ApiKey::OffsetFetch => offset_fetch(req, p)?,
        _ => deny(req)?,
    };
    out.map_err(|e| RequestError::Malformed {
        key: req.key,
        version: req.version(),
        reason: e.to_string(),
    })
}

fn group_only(
    req: &Request,
    p: &Principal,
    group: &GroupId,
    refuse: impl FnOnce(i16) -> anyhow::Result<Bytes>,
) -> Out {
    if p.own_group(group) {
        Ok(forward(req, Patch::None))
    } else {
        refuse(GROUP_AUTHORIZATION_FAILED).map(Verdict::Respond)
    }
}

fn metadata(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let mut r: MetadataRequest = req.decode()?;
    let version = req.version();
    // v0: an empty list means every topic; v1+: null means every topic.
    let all = match &r.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    let mut denied = Vec::new();
    let mut keep_own = true;
    if all {
        r.topics = Some(vec![own_metadata_topic(p)]);
    } else {
        let mut allowed = Vec::new();
        for t in r.topics.take().unwrap_or_default() {
            // A topic named by id has no name (or an empty one).
            let named = t.name.as_ref().filter(|n| !n.is_empty());
            let own = match named {
                Some(n) => p.own_topic(n),
                None => p.own_topic_id(&t.topic_id),
            };
            if own {
                allowed.push(t);
            } else {
                denied.push((named.map(|n| n.to_string()), t.topic_id));
            }
        }
        // Nothing allowed asked for: the answer must not show the own topic either (v0
        // cannot ask for no topics, and some brokers answer every topic to an empty list).
        keep_own = !allowed.is_empty();
        if allowed.is_empty() && version == 0 {
            allowed.push(own_metadata_topic(p));
        }
        r.topics = Some(allowed);
    }
    if version >= 4 {
        r.allow_auto_topic_creation = false;
    }
    Ok(req.reencode(&r).map(|frame| Verdict::Forward {
        frame,
        patch: Patch::Metadata { keep_own, denied },
    }))
}

fn own_metadata_topic(p: &Principal) -> metadata_request::MetadataRequestTopic {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(topic_name(&p.topic));
    t
}

fn fetch(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let mut r: FetchRequest = req.decode()?;
    let replica = if req.version() >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    if replica != -1 {
        return Ok(cluster_denied_fetch(req, &r));
    }
    let own = r
        .topics
        .iter()
        .all(|t| p.own_topic(&t.topic) || p.own_topic_id(&t.topic_id));
    if !own {
        let mut b = FetchResponse::default();
        b.responses = r
            .topics
            .iter()
            .map(|t| fetch_denied_topic(t, TOPIC_AUTHORIZATION_FAILED))
            .collect();
        return Ok(req.respond(&b).map(Verdict::Respond));
    }
    // Full fetches only: no fetch session can be shared or guessed across principals.
    r.session_id = 0;
    r.session_epoch = -1;
    r.forgotten_topics_data.clear();
    Ok(req.reencode(&r).map(|frame| Verdict::Forward {
        frame,
        patch: Patch::None,
    }))
}

fn fetch_denied_topic(
    t: &fetch_request::FetchTopic,
    code: i16,
) -> fetch_response::FetchableTopicResponse {
    let mut out = fetch_response::FetchableTopicResponse::default();
    out.topic = t.topic.clone();
    out.topic_id = t.topic_id;
    out.partitions = t
        .partitions
        .iter()
        .map(|part| {
            let mut d = fetch_response::PartitionData::default();
            d.partition_index = part.partition;
            d.error_code = code;
            d.high_watermark = -1;
            d
        })
        .collect();
    out
}

fn cluster_denied_fetch(req: &Request, r: &FetchRequest) -> Out {
    let mut b = FetchResponse::default();
    b.responses = r
        .topics
        .iter()
        .map(|t| fetch_denied_topic(t, CLUSTER_AUTHORIZATION_FAILED))
        .collect();
    req.respond(&b).map(Verdict::Respond)
}

fn list_offsets(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let r: ListOffsetsRequest = req.decode()?;
    if r.replica_id.0 == -1 && r.topics.iter().all(|t| p.own_topic(&t.name)) {
        return Ok(Ok(forward(req, Patch::None)));
    }
    let code = if r.replica_id.0 == -1 {
        TOPIC_AUTHORIZATION_FAILED
    } else {
        CLUSTER_AUTHORIZATION_FAILED
    };
    let mut b = ListOffsetsResponse::default();
    b.topics = r
        .topics
        .iter()
        .map(|t| {
            let mut out = list_offsets_response::ListOffsetsTopicResponse::default();
            out.name = t.name.clone();
            out.partitions = t
                .partitions
                .iter()
                .map(|part| {
                    let mut d = list_offsets_response::ListOffsetsPartitionResponse::default();
                    d.partition_index = part.partition_index;
                    d.error_code = code;
                    d
                })
                .collect();
            out
        })
        .collect();
    Ok(req.respond(&b).map(Verdict::Respond))
}

fn offset_for_leader_epoch(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let r: OffsetForLeaderEpochRequest = req.decode()?;
    let consumer = req.version() < 3 || r.replica_id.0 == -1 || r.replica_id.0 == -2;
    if consumer && r.topics.iter().all(|t| p.own_topic(&t.topic)) {
        return Ok(Ok(forward(req, Patch::None)));
    }
    let code = if consumer {
        TOPIC_AUTHORIZATION_FAILED
    } else {
        CLUSTER_AUTHORIZATION_FAILED
    };
    let mut b = OffsetForLeaderEpochResponse::default();
    b.topics = r
        .topics
        .iter()
        .map(|t| {
            let mut out = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
            out.topic = t.topic.clone();
            out.partitions = t
                .partitions
                .iter()
                .map(|part| {
                    let mut d = offset_for_leader_epoch_response::EpochEndOffset::default();
                    d.partition = part.partition;
                    d.error_code = code;
                    d
                })
                .collect();
            out
        })
        .collect();
    Ok(req.respond(&b).map(Verdict::Respond))
}

fn find_coordinator(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let mut r: FindCoordinatorRequest = req.decode()?;
    let code_for = |key: &str| match r.key_type {
        0 if p.own_group(key) => None,
        0 => Some(GROUP_AUTHORIZATION_FAILED),
        1 => Some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        _ => Some(CLUSTER_AUTHORIZATION_FAILED),
    };
    if req.version() < 4 {
        return Ok(match code_for(&r.key) {
            None => Ok(forward(req, Patch::FindCoordinator { denied: vec![] })),
            Some(code) => {
                let mut b = FindCoordinatorResponse::default();
                b.error_code = code;
                b.node_id = BrokerId(-1);
                b.port = -1;
                req.respond(&b).map(Verdict::Respond)
            }
        });
    }
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for key in r.coordinator_keys.drain(..) {
        match code_for(&key) {
            None => allowed.push(key),
            Some(code) => denied.push((key.to_string(), code)),
        }
    }
    if allowed.is_empty() {
        let mut b = FindCoordinatorResponse::default();
        b.coordinators = denied
            .iter()
            .map(|(k, c)| denied_coordinator(k, *c))
            .collect();
        return Ok(req.respond(&b).map(Verdict::Respond));
    }
    r.coordinator_keys = allowed;
    Ok(req.reencode(&r).map(|frame| Verdict::Forward {
        frame,
        patch: Patch::FindCoordinator { denied },
    }))
}

pub(crate) fn denied_coordinator(key: &str, code: i16) -> find_coordinator_response::Coordinator {
    let mut c = find_coordinator_response::Coordinator::default();
    c.key = StrBytes::from_string(key.to_owned());
    c.node_id = BrokerId(-1);
    c.port = -1;
    c.error_code = code;
    c
}

fn offset_commit(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let r: OffsetCommitRequest = req.decode()?;
    let group_ok = p.own_group(&r.group_id);
    if group_ok && r.topics.iter().all(|t| p.own_topic(&t.name)) {
        return Ok(Ok(forward(req, Patch::None)));
    }
    let mut b = OffsetCommitResponse::default();
    b.topics = r
        .topics
        .iter()
        .map(|t| {
            // Own partitions are refused with the rest: the request names another topic too.
            let code = if group_ok {
                TOPIC_AUTHORIZATION_FAILED
            } else {
                GROUP_AUTHORIZATION_FAILED
            };
            let mut out = offset_commit_response::OffsetCommitResponseTopic::default();
            out.name = t.name.clone();
            out.partitions = t
                .partitions
                .iter()
                .map(|part| {
                    let mut d = offset_commit_response::OffsetCommitResponsePartition::default();
                    d.partition_index = part.partition_index;
                    d.error_code = code;
                    d
                })
                .collect();
            out
        })
        .collect();
    Ok(req.respond(&b).map(Verdict::Respond))
}

fn offset_fetch(req: &Request, p: &Principal) -> Result<Out, RequestError> {
    let r: OffsetFetchRequest = req.decode()?;
    if req.version() >= 8 {
        let ok = r.groups.iter().all(|g| {
            p.own_group(&g.group_id)
                && g.topics
                    .as_ref()
                    .is_none_or(|ts| ts.iter().all(|t| p.own_topic(&t.name)))
        });
        if ok {
            return Ok(Ok(forward(req, Patch::None)));
        }
        let mut b = OffsetFetchResponse::default();
        b.groups = r
            .groups
            .iter()
            .map(|g| {
                let mut out = offset_fetch_response::OffsetFetchResponseGroup::default();
                out.group_id = g.group_id.clone();
                out.error_code = if p.own_group(&g.group_id) {
                    TOPIC_AUTHORIZATION_FAILED
                } else {
                    GROUP_AUTHORIZATION_FAILED
                };
                out
            })
            .collect();
        return Ok(req.respond(&b).map(Verdict::Respond));
    }
    let group_ok = p.own_group(&r.group_id);
    let topics_ok = r
        .topics
        .as_ref()
        .is_none_or(|ts| ts.iter().all(|t| p.own_topic(&t.name)));
    if group_ok && topics_ok {
        return Ok(Ok(forward(req, Patch::None)));
    }
    let code = if group_ok {
        TOPIC_AUTHORIZATION_FAILED
    } else {
        GROUP_AUTHORIZATION_FAILED
    };
    let mut b = OffsetFetchResponse::default();
    if req.version() >= 2 {
        b.error_code = code;
    }
    b.topics = r
        .topics
        .iter()
        .flatten()
        .map(|t| {
            let mut out = offset_fetch_response::OffsetFetchResponseTopic::default();
            out.name = t.name.clone();
            out.partitions = t
                .partition_indexes
                .iter()
                .map(|i| {
                    let mut d = offset_fetch_response::OffsetFetchResponsePartition::default();
                    d.partition_index = *i;
                    d.committed_offset = -1;
                    d.error_code = code;
                    d
                })
                .collect();
            out
        })
        .collect();
    Ok(req.respond(&b).map(Verdict::Respond))
}

/// The answer to an API a consumer group never may use.
fn deny(req: &Request) -> Result<Out, RequestError> {
    const TOPIC: i16 = TOPIC_AUTHORIZATION_FAILED;
    const GROUP: i16 = GROUP_AUTHORIZATION_FAILED;
    const CLUSTER: i16 = CLUSTER_AUTHORIZATION_FAILED;
    const TXN: i16 = TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    let resource_code = |t: i8| if t == 2 { TOPIC } else { CLUSTER };
    let out = match req.key {
        ApiKey::Produce => {
            let r: ProduceRequest = req.decode()?;
            if r.acks == 0 {
                return Ok(Ok(Verdict::Close("a Produce request (acks=0) was refused")));
            }
            let mut b = ProduceResponse::default();
            b.responses = r
                .topic_data
                .iter()
                .map(|t| {
                    let mut out = produce_response::TopicProduceResponse::default();
                    out.name = t.name.clone();
                    out.partition_responses = t
                        .partition_data
                        .iter()
                        .map(|part| {
                            let mut d = produce_response::PartitionProduceResponse::default();
                            d.index = part.index;
                            d.error_code = TOPIC;
                            d.base_offset = -1;
                            d
                        })
                        .collect();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::CreateTopics => {
            let r: CreateTopicsRequest = req.decode()?;
            let mut b = CreateTopicsResponse::default();
            b.topics = r
                .topics
                .iter()
                .map(|t| {
                    let mut out = create_topics_response::CreatableTopicResult::default();
                    out.name = t.name.clone();
                    out.error_code = TOPIC;
                    if req.version() >= 1 {
                        out.error_message = Some("Topic authorization failed.".into());
                    }
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DeleteTopics => {
            let r: DeleteTopicsRequest = req.decode()?;
            let mut b = DeleteTopicsResponse::default();
            let names: Vec<(Option<TopicName>, Uuid)> = if req.version() >= 6 {
                r.topics
                    .iter()
                    .map(|t| (t.name.clone(), t.topic_id))
                    .collect()
            } else {
                r.topic_names
                    .iter()
                    .map(|n| (Some(n.clone()), Uuid::nil()))
                    .collect()
            };
            b.responses = names
                .into_iter()
                .map(|(name, id)| {
                    let mut out = delete_topics_response::DeletableTopicResult::default();
                    out.name = name;
                    if req.version() >= 6 {
                        out.topic_id = id;
                    }
                    out.error_code = TOPIC;
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DeleteRecords => {
            let r: DeleteRecordsRequest = req.decode()?;
            let mut b = DeleteRecordsResponse::default();
            b.topics = r
                .topics
                .iter()
                .map(|t| {
                    let mut out = delete_records_response::DeleteRecordsTopicResult::default();
                    out.name = t.name.clone();
                    out.partitions = t
                        .partitions
                        .iter()
                        .map(|part| {
                            let mut d =
                                delete_records_response::DeleteRecordsPartitionResult::default();
                            d.partition_index = part.partition_index;
                            d.low_watermark = -1;
                            d.error_code = TOPIC;
                            d
                        })
                        .collect();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::InitProducerId => {
            let r: InitProducerIdRequest = req.decode()?;
            let mut b = InitProducerIdResponse::default();
            b.error_code = if r.transactional_id.is_some() {
                TXN
            } else {
                CLUSTER
            };
            b.producer_id = ProducerId(-1);
            b.producer_epoch = -1;
            req.respond(&b)
        }
        ApiKey::AddPartitionsToTxn => {
            let r: AddPartitionsToTxnRequest = req.decode()?;
            let mut b = AddPartitionsToTxnResponse::default();
            b.results_by_topic_v3_and_below = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let mut out = add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                    out.name = t.name.clone();
                    out.results_by_partition = t
                        .partitions
                        .iter()
                        .map(|i| {
                            let mut d = add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                            d.partition_index = *i;
                            d.partition_error_code = TXN;
                            d
                        })
                        .collect();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::AddOffsetsToTxn => {
            let mut b = AddOffsetsToTxnResponse::default();
            b.error_code = TXN;
            req.respond(&b)
        }
        ApiKey::EndTxn => {
            let mut b = EndTxnResponse::default();
            b.error_code = TXN;
            req.respond(&b)
        }
        ApiKey::TxnOffsetCommit => {
            let r: TxnOffsetCommitRequest = req.decode()?;
            let mut b = TxnOffsetCommitResponse::default();
            b.topics = r
                .topics
                .iter()
                .map(|t| {
                    let mut out = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                    out.name = t.name.clone();
                    out.partitions = t
                        .partitions
                        .iter()
                        .map(|part| {
                            let mut d = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                            d.partition_index = part.partition_index;
                            d.error_code = TXN;
                            d
                        })
                        .collect();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DescribeAcls => {
            let mut b = DescribeAclsResponse::default();
            b.error_code = CLUSTER;
            req.respond(&b)
        }
        ApiKey::CreateAcls => {
            let r: CreateAclsRequest = req.decode()?;
            let mut b = CreateAclsResponse::default();
            b.results = r
                .creations
                .iter()
                .map(|_| {
                    let mut out = create_acls_response::AclCreationResult::default();
                    out.error_code = CLUSTER;
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DeleteAcls => {
            let r: DeleteAclsRequest = req.decode()?;
            let mut b = DeleteAclsResponse::default();
            b.filter_results = r
                .filters
                .iter()
                .map(|_| {
                    let mut out = delete_acls_response::DeleteAclsFilterResult::default();
                    out.error_code = CLUSTER;
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DescribeConfigs => {
            let r: DescribeConfigsRequest = req.decode()?;
            let mut b = DescribeConfigsResponse::default();
            b.results = r
                .resources
                .iter()
                .map(|res| {
                    let mut out = describe_configs_response::DescribeConfigsResult::default();
                    out.error_code = resource_code(res.resource_type);
                    out.resource_type = res.resource_type;
                    out.resource_name = res.resource_name.clone();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::AlterConfigs => {
            let r: AlterConfigsRequest = req.decode()?;
            let mut b = AlterConfigsResponse::default();
            b.responses = r
                .resources
                .iter()
                .map(|res| {
                    let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
                    out.error_code = resource_code(res.resource_type);
                    out.resource_type = res.resource_type;
                    out.resource_name = res.resource_name.clone();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::IncrementalAlterConfigs => {
            let r: IncrementalAlterConfigsRequest = req.decode()?;
            let mut b = IncrementalAlterConfigsResponse::default();
            b.responses = r
                .resources
                .iter()
                .map(|res| {
                    let mut out =
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                    out.error_code = resource_code(res.resource_type);
                    out.resource_type = res.resource_type;
                    out.resource_name = res.resource_name.clone();
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::CreatePartitions => {
            let r: CreatePartitionsRequest = req.decode()?;
            let mut b = CreatePartitionsResponse::default();
            b.results = r
                .topics
                .iter()
                .map(|t| {
                    let mut out =
                        create_partitions_response::CreatePartitionsTopicResult::default();
                    out.name = t.name.clone();
                    out.error_code = TOPIC;
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::DeleteGroups => {
            let r: DeleteGroupsRequest = req.decode()?;
            let mut b = DeleteGroupsResponse::default();
            b.results = r
                .groups_names
                .iter()
                .map(|g| {
                    let mut out = delete_groups_response::DeletableGroupResult::default();
                    out.group_id = g.clone();
                    out.error_code = GROUP;
                    out
                })
                .collect();
            req.respond(&b)
        }
        ApiKey::OffsetDelete => {
            let mut b = OffsetDeleteResponse::default();
            b.error_code = GROUP;
            req.respond(&b)
        }
        _ => return Ok(Ok(Verdict::Close("an API the gateway does not serve"))),
    };
    Ok(out.map(Verdict::Respond))
}

#[cfg(test)]
mod tests;
