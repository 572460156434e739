//! The consumer gateway's request path: any bytes a client sends as a request frame, and any
//! answer the broker gives to a request whose answer the gateway rewrites, through
//! `ferry_gateway::fuzzing::exercise` (its documentation says how the input is read).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_gateway::fuzzing::exercise(data));
