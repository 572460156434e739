use super::*;
use crate::wire::{parse_response, request};

fn principal() -> Principal {
    Principal {
        group: "cg_own".into(),
        topic: "ferry.ins_own".into(),
        topic_id: Uuid::from_u128(42),
    }
}

fn req<T: kafka_protocol::protocol::Encodable>(key: ApiKey, version: i16, body: &T) -> Request {
    Request::parse(request(key, version, 9, body).unwrap()).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn answer<T: kafka_protocol::protocol::Decodable>(v: Verdict, key: ApiKey, version: i16) -> T {
    match v {
        Verdict::Respond(b) => parse_response::<T>(key, version, b).unwrap().1,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

#[test]
fn metadata_for_all_topics_asks_only_for_the_own_one_and_never_creates() {
    for version in [0, 4, 12] {
        let mut m = MetadataRequest::default();
        m.topics = if version == 0 { Some(vec![]) } else { None };
        if version >= 4 {
            m.allow_auto_topic_creation = true;
        }
        let v = authorize(&req(ApiKey::Metadata, version, &m), &principal()).unwrap();
        let Verdict::Forward { frame, patch } = v else {
            panic!("forwarded")
        };
        let sent: MetadataRequest = Request::parse(frame).unwrap().decode().unwrap();
        let topics = sent.topics.unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(
            topics[0].name.as_deref().map(|n| n.as_str()),
            Some("ferry.ins_own")
        );
        assert!(version < 4 || !sent.allow_auto_topic_creation);
        assert!(
            matches!(patch, Patch::Metadata { keep_own: true, ref denied } if denied.is_empty())
        );
    }
}

#[test]
fn metadata_for_another_topic_is_refused_by_name_and_by_id() {
    let mut m = MetadataRequest::default();
    let mut other = metadata_request::MetadataRequestTopic::default();
    other.name = Some(name("ferry.ins_other"));
    let mut by_id = metadata_request::MetadataRequestTopic::default();
    by_id.topic_id = Uuid::from_u128(7);
    let mut own_by_id = metadata_request::MetadataRequestTopic::default();
    own_by_id.topic_id = Uuid::from_u128(42);
    m.topics = Some(vec![other, by_id, own_by_id]);
    let v = authorize(&req(ApiKey::Metadata, 12, &m), &principal()).unwrap();
    let Verdict::Forward { frame, patch } = v else {
        panic!("forwarded")
    };
    let sent: MetadataRequest = Request::parse(frame).unwrap().decode().unwrap();
    assert_eq!(
        sent.topics.as_ref().map(Vec::len),
        Some(1),
        "{sent:?} {patch:?}"
    );
    let Patch::Metadata { denied, .. } = patch else {
        panic!()
    };
    assert_eq!(
        denied,
        vec![
            (Some("ferry.ins_other".into()), Uuid::nil()),
            (None, Uuid::from_u128(7))
        ]
    );
}

#[test]
fn fetch_of_the_own_topic_is_a_full_fetch_and_others_are_refused() {
    let mut f = FetchRequest::default();
    f.replica_id = BrokerId(-1);
    f.session_id = 77;
    f.session_epoch = 3;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = name("ferry.ins_own");
    let mut part = fetch_request::FetchPartition::default();
    part.partition = 0;
    t.partitions.push(part);
    f.topics.push(t.clone());
    let v = authorize(&req(ApiKey::Fetch, 12, &f), &principal()).unwrap();
    let Verdict::Forward { frame, .. } = v else {
        panic!("forwarded")
    };
    let sent: FetchRequest = Request::parse(frame).unwrap().decode().unwrap();
    assert_eq!((sent.session_id, sent.session_epoch), (0, -1));

    t.topic = name("ferry.ins_other");
    f.topics.push(t);
    let v = authorize(&req(ApiKey::Fetch, 12, &f), &principal()).unwrap();
    let r: FetchResponse = answer(v, ApiKey::Fetch, 12);
    assert!(
        r.responses
            .iter()
            .all(|t| t.partitions.iter().all(|p| p.error_code == 29))
    );

    f.topics.truncate(1);
    f.replica_id = BrokerId(1);
    let v = authorize(&req(ApiKey::Fetch, 12, &f), &principal()).unwrap();
    let r: FetchResponse = answer(v, ApiKey::Fetch, 12);
    assert_eq!(r.responses[0].partitions[0].error_code, 31);
}

#[test]
fn group_apis_allow_only_the_own_group() {
    let mut h = HeartbeatRequest::default();
    h.group_id = GroupId(StrBytes::from_static_str("cg_own"));
    assert!(matches!(
        authorize(&req(ApiKey::Heartbeat, 4, &h), &principal()).unwrap(),
        Verdict::Forward { .. }
    ));
    h.group_id = GroupId(StrBytes::from_static_str("cg_other"));
    let r: HeartbeatResponse = answer(
        authorize(&req(ApiKey::Heartbeat, 4, &h), &principal()).unwrap(),
        ApiKey::Heartbeat,
        4,
    );
    assert_eq!(r.error_code, 30);

    let mut c = FindCoordinatorRequest::default();
    c.key_type = 0;
    c.coordinator_keys = vec!["cg_own".into(), "cg_other".into()];
    let v = authorize(&req(ApiKey::FindCoordinator, 4, &c), &principal()).unwrap();
    let Verdict::Forward { frame, patch } = v else {
        panic!()
    };
    let sent: FindCoordinatorRequest = Request::parse(frame).unwrap().decode().unwrap();
    assert_eq!(
        sent.coordinator_keys,
        vec![StrBytes::from_static_str("cg_own")]
    );
    assert!(
        matches!(patch, Patch::FindCoordinator { ref denied } if denied == &vec![("cg_other".to_owned(), 30)])
    );

    c.key = "txn-1".into();
    c.key_type = 1;
    c.coordinator_keys.clear();
    let r: FindCoordinatorResponse = answer(
        authorize(&req(ApiKey::FindCoordinator, 2, &c), &principal()).unwrap(),
        ApiKey::FindCoordinator,
        2,
    );
    assert_eq!(r.error_code, 53);
}

#[test]
fn offsets_of_another_group_or_topic_are_refused() {
    let mut c = OffsetCommitRequest::default();
    c.group_id = GroupId(StrBytes::from_static_str("cg_other"));
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = name("ferry.ins_own");
    t.partitions.push(Default::default());
    c.topics.push(t);
    let r: OffsetCommitResponse = answer(
        authorize(&req(ApiKey::OffsetCommit, 8, &c), &principal()).unwrap(),
        ApiKey::OffsetCommit,
        8,
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 30);
    c.group_id = GroupId(StrBytes::from_static_str("cg_own"));
    assert!(matches!(
        authorize(&req(ApiKey::OffsetCommit, 8, &c), &principal()).unwrap(),
        Verdict::Forward { .. }
    ));
    c.topics[0].name = name("ferry.ins_other");
    let r: OffsetCommitResponse = answer(
        authorize(&req(ApiKey::OffsetCommit, 8, &c), &principal()).unwrap(),
        ApiKey::OffsetCommit,
        8,
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 29);

    let mut f = OffsetFetchRequest::default();
    f.group_id = GroupId(StrBytes::from_static_str("cg_other"));
    let r: OffsetFetchResponse = answer(
        authorize(&req(ApiKey::OffsetFetch, 7, &f), &principal()).unwrap(),
        ApiKey::OffsetFetch,
        7,
    );
    assert_eq!(r.error_code, 30);
}

#[test]
fn writes_and_admin_are_refused_with_the_acl_errors() {
    let mut p = ProduceRequest::default();
    p.acks = -1;
    let mut t = produce_request::TopicProduceData::default();
    t.name = name("ferry.ins_own");
    t.partition_data.push(Default::default());
    p.topic_data.push(t);
    let r: ProduceResponse = answer(
        authorize(&req(ApiKey::Produce, 9, &p), &principal()).unwrap(),
        ApiKey::Produce,
        9,
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 29);
    p.acks = 0;
    assert!(matches!(
        authorize(&req(ApiKey::Produce, 9, &p), &principal()).unwrap(),
        Verdict::Close(_)
    ));

    let mut c = CreateTopicsRequest::default();
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = name("new");
    c.topics.push(t);
    let r: CreateTopicsResponse = answer(
        authorize(&req(ApiKey::CreateTopics, 7, &c), &principal()).unwrap(),
        ApiKey::CreateTopics,
        7,
    );
    assert_eq!(r.topics[0].error_code, 29);

    let mut i = InitProducerIdRequest::default();
    i.transactional_id = Some(TransactionalId(StrBytes::from_static_str("t")));
    let r: InitProducerIdResponse = answer(
        authorize(&req(ApiKey::InitProducerId, 4, &i), &principal()).unwrap(),
        ApiKey::InitProducerId,
        4,
    );
    assert_eq!(r.error_code, 53);

    let mut d = DeleteGroupsRequest::default();
    d.groups_names = vec![GroupId(StrBytes::from_static_str("cg_own"))];
    let r: DeleteGroupsResponse = answer(
        authorize(&req(ApiKey::DeleteGroups, 2, &d), &principal()).unwrap(),
        ApiKey::DeleteGroups,
        2,
    );
    assert_eq!(r.results[0].error_code, 30);

    let mut dc = DescribeConfigsRequest::default();
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    res.resource_type = 4;
    res.resource_name = "1".into();
    dc.resources.push(res);
    let r: DescribeConfigsResponse = answer(
        authorize(&req(ApiKey::DescribeConfigs, 4, &dc), &principal()).unwrap(),
        ApiKey::DescribeConfigs,
        4,
    );
    assert_eq!(r.results[0].error_code, 31);
}
