//! What API request bodies and paths carry, as the functions parse and check it: a task's
//! objects, delivery, sync and heartbeat options from JSON, and positions, GTID sets and ids
//! from text. Any input is a value or an `InvalidInput`, never a panic.
#![no_main]

use std::str::FromStr;

use ferry_domain::gtid::GtidSet;
use ferry_domain::id::{ConsumerGroupId, InstanceId};
use ferry_domain::position::Position;
use ferry_domain::selection::ObjectSelection;
use ferry_domain::sync::SyncOptions;
use ferry_domain::task_config::{Delivery, HeartbeatWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(o) = serde_json::from_value::<ObjectSelection>(v.clone()) {
            let _ = o.validate();
            let _ = o.table("shop", "orders").map(|t| t.includes_column("id"));
        }
        if let Ok(d) = serde_json::from_value::<Delivery>(v.clone()) {
            let _ = d.validate();
        }
        if let Ok(s) = serde_json::from_value::<SyncOptions>(v.clone()) {
            let _ = s.validate();
        }
        if let Ok(h) = serde_json::from_value::<HeartbeatWriter>(v) {
            let _ = h.validate();
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = Position::from_str(&text) {
        // What prints must parse back to the same position.
        assert_eq!(Position::from_str(&p.to_string()).ok(), Some(p));
    }
    if let Ok(g) = GtidSet::from_str(&text) {
        assert_eq!(GtidSet::from_str(&g.to_string()).ok(), Some(g));
    }
    let _ = InstanceId::from_str(&text);
    let _ = ConsumerGroupId::from_str(&text);
    let _ = ferry_domain::address::AddressPolicy::allowing(&text);
});
