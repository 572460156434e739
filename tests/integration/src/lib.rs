//! End-to-end scenarios against the local stack (`infra/local/stack up`). The scenarios are
//! the files under `tests/`; this library is empty.
//!
//! - `broker_conformance`: the Kafka behaviours Ferry relies on, checked against the stack's
//!   broker, so a broker that lacks one fails here and not in production.
//! - `harness`: the test harness isolates tests from each other.
