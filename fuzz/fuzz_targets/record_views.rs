//! Records read back from a task's topic for `/changes` (`ferry_kafka::view::view_with`), in
//! each of the four formats and both value mappings: a record that is not what its format says
//! is an error, never a panic.
#![no_main]

use ferry_domain::task_config::{Format, Values};
use ferry_kafka::view::{RawRecord, view_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let values = if selector & 0x80 == 0 {
        Values::Readable
    } else {
        Values::Compatible
    };
    let format = match selector % 4 {
        0 => Format::DebeziumJson,
        1 => Format::CanalJson,
        2 => Format::MaxwellJson,
        _ => Format::DtsAvro,
    };
    // The key is the first part of the rest, up to a NUL; the payload the remainder.
    let (key, payload) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let raw = RawRecord {
        partition: 0,
        offset: 0,
        timestamp_ms: Some(1_700_000_000_000),
        key,
        payload,
        idempotency_key: "0-1-1/1",
        position: "binlog.000001:4",
    };
    let _ = view_with(format, values, &raw);
});
