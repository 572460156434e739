//! The input the fuzz target `gateway_requests` and its regression test feed the gateway's
//! parsers with (one function, so both exercise the same paths). The first byte chooses: even,
//! a client request (parsed, checked against the advertised versions, authorized); odd, a
//! broker answer to Metadata, FindCoordinator or ListGroups at the version in the next two
//! bytes (patched). Any input must end in a value or an error, never a panic or an abort.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::authz::{Patch, Principal, authorize};
use crate::rewrite::{Advertised, patch};
use crate::versions::Versions;
use crate::wire::Request;

pub fn exercise(data: &[u8]) {
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
        return;
    }
    let [v0, v1, body @ ..] = rest else {
        return;
    };
    let version = i16::from_be_bytes([*v0, *v1]).rem_euclid(16);
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
