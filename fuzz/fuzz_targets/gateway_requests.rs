//! The consumer gateway's request path (`ferry_gateway`): any bytes a client sends as a request
//! frame are parsed, checked against the advertised versions and authorized, and any bytes the
//! broker answers to a request the gateway rewrites are patched, without a panic. The first
//! byte chooses which: even, a client request; odd, a broker answer to Metadata,
//! FindCoordinator or ListGroups at the version in the second and third bytes.
#![no_main]

use std::collections::HashMap;

use bytes::Bytes;
use ferry_gateway::authz::{Patch, Principal, authorize};
use ferry_gateway::rewrite::{Advertised, patch};
use ferry_gateway::versions::Versions;
use ferry_gateway::wire::Request;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let principal = Principal {
        group: "cg_0123456789abcdef0123456789abcdef".into(),
        topic: "ferry.ins_0123456789abcdef0123456789abcdef".into(),
        topic_id: uuid::Uuid::from_u128(7),
    };
    if mode % 2 == 0 {
        let Ok(req) = Request::parse(Bytes::copy_from_slice(rest)) else {
            return;
        };
        let upstream: HashMap<i16, (i16, i16)> = (0..80).map(|k| (k, (0, 20))).collect();
        if Versions::negotiate(&upstream)
            .treatment(req.key, req.version())
            .is_some()
        {
            let _ = authorize(&req, &principal);
        }
    } else {
        let [v0, v1, body @ ..] = rest else {
            return;
        };
        let version = i16::from_be_bytes([*v0, *v1]) % 16;
        let (key, how) = match mode % 6 {
            1 => (
                ApiKey::Metadata,
                Patch::Metadata {
                    keep_own: true,
                    denied: vec![(Some("other".into()), uuid::Uuid::nil())],
                },
            ),
            3 => (
                ApiKey::FindCoordinator,
                Patch::FindCoordinator {
                    denied: vec![("cg_other".into(), 30)],
                },
            ),
            _ => (ApiKey::ListGroups, Patch::ListGroups),
        };
        let advertised = Advertised::new("127.0.0.1", 9192);
        let _ = patch(
            key,
            version,
            Bytes::copy_from_slice(body),
            &how,
            &principal,
            &advertised,
        );
    }
});
