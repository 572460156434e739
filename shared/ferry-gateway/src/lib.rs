//! Ferry's consumer gateway (`ferry gateway`): a Kafka-protocol proxy between consumers and
//! the broker. Each consumer group signs in with its own credentials (SASL PLAIN against the
//! argon2 hash, SCRAM-SHA-256/512 against the stored verifiers; username
//! `<group username>-<consumer group id>`), and every request after that is authorized: the
//! group reaches only its own task's topic and its own group id. Ferry's workers and
//! functions keep talking to the broker directly.
//!
//! - `wire`: framing and headers; `versions`: what is advertised; `authz`: the rules;
//!   `rewrite`: the answers that change (addresses, refused topics); `connection`: one
//!   client; `server`: listeners, the credential re-check, the sign-in throttle;
//!   `accounts`: groups from Ferry's table; `upstream`: Ferry's own broker connections.
//!
//! docs/gateway.md describes the behaviour for operators and consumers.

#[cfg(feature = "server")]
pub mod accounts;
pub mod authz;
#[cfg(feature = "server")]
pub mod connection;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod metrics;
pub mod rewrite;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod upstream;
pub mod versions;
pub mod wire;

#[cfg(feature = "server")]
pub use accounts::Accounts;
#[cfg(feature = "server")]
pub use server::{Gateway, Limits, Listen, tls_config};
#[cfg(feature = "server")]
pub use upstream::Upstream;
