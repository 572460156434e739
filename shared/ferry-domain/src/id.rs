//! Prefixed, opaque identifiers.
//!
//! An id is its prefix followed by 32 lowercase hex digits of a random UUID
//! (`ins_6f1c…`). Clients must treat ids as opaque strings; the prefix only makes a
//! pasted id readable and lets the API answer "this is a consumer group id, not an instance
//! id" instead of a bare 404.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{found}` is not {kind} id: {kind} id starts with `{prefix}`")]
    WrongPrefix {
        kind: &'static str,
        prefix: &'static str,
        found: String,
    },
    #[error(
        "`{found}` is not a well-formed {kind} id: expected `{prefix}` and 32 lowercase hex digits"
    )]
    Malformed {
        kind: &'static str,
        prefix: &'static str,
        found: String,
    },
}

const RANDOM_HEX_LEN: usize = 32;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new random id.
            pub fn generate() -> Self {
                Self::from_uuid(Uuid::new_v4())
            }

            /// The id of a given UUID; tests use it to get stable ids.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(format!("{}{}", $prefix, uuid.simple()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let Some(rest) = s.strip_prefix($prefix) else {
                    return Err(IdError::WrongPrefix {
                        kind: $kind,
                        prefix: $prefix,
                        found: truncate(s),
                    });
                };
                let well_formed = rest.len() == RANDOM_HEX_LEN
                    && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !well_formed {
                    return Err(IdError::Malformed {
                        kind: $kind,
                        prefix: $prefix,
                        found: truncate(s),
                    });
                }
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Errors echo at most this many characters of what they were given, so a hostile megabyte
/// of "id" does not end up in a log line.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

prefixed_id!(
    /// The id of an instance (`ins_…`).
    InstanceId, "ins_", "an instance"
);
prefixed_id!(
    /// The id of the task of an instance (`tsk_…`).
    TaskId, "tsk_", "a task"
);
prefixed_id!(
    /// The id of a consumer group (`cg_…`); it is also the Kafka group id its consumers use.
    ConsumerGroupId, "cg_", "a consumer group"
);
prefixed_id!(
    /// The id of a capture worker process (`wkr_…`), recorded on the leases it holds.
    WorkerId, "wkr_", "a worker"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = InstanceId::generate();
        assert!(id.as_str().starts_with("ins_"));
        assert_eq!(id.as_str().len(), 4 + 32);
        assert_eq!(id.as_str().parse::<InstanceId>().unwrap(), id);
        assert_ne!(InstanceId::generate(), id);
    }

    #[test]
    fn wrong_kind_is_named() {
        let cg = ConsumerGroupId::generate();
        let err = cg.as_str().parse::<InstanceId>().unwrap_err();
        assert!(matches!(
            err,
            IdError::WrongPrefix {
                kind: "an instance",
                ..
            }
        ));
        assert!(err.to_string().contains("starts with `ins_`"));
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "ins_",
            "ins_XYZ",
            "ins_0123456789abcdef0123456789ABCDEF",
            "ins_0123456789abcdef0123456789abcdef0",
            "ins_0123456789abcdef0123456789abcde ",
            "ins_../../etc/passwd",
        ] {
            assert!(
                matches!(bad.parse::<InstanceId>(), Err(IdError::Malformed { .. })),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_huge_input() {
        let huge = format!("ins_{}", "a".repeat(100_000));
        let msg = huge.parse::<InstanceId>().unwrap_err().to_string();
        assert!(msg.len() < 300, "{}", msg.len());
    }

    #[test]
    fn serde_validates() {
        let id = TaskId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TaskId>("\"tsk_nope\"").is_err());
    }
}
