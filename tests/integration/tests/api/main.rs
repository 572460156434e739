//! The control plane's HTTP API, in-process against the local stack: every route, every
//! lifecycle rule, concurrent changes, prechecks against real MariaDB servers, bad input, and
//! the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

mod bad_input;
mod common;
mod groups;
mod instances;
mod openapi;
mod prechecks;
mod tasks;
