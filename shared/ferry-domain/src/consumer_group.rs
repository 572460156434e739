//! Consumer groups: the readers of a change-tracking task's topic, each with its own
//! credentials.
//!
//! A consumer group is a Kafka consumer group on the task's topic whose group id is the
//! consumer group's id. Its password is checked against [`Password`]'s rules here and stored
//! only as a salted slow hash ([`PasswordHash`]) by the control plane.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::id::{ConsumerGroupId, InstanceId};
use crate::invalid::check_text;
use crate::scram::Verifiers;

/// At most this many consumer groups per instance.
pub const MAX_GROUPS_PER_INSTANCE: usize = 20;

/// A consumer group's name: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    pub const MAX_CHARS: usize = 128;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_text("name", &s, Self::MAX_CHARS)?;
        Ok(Self(s))
    }
}

impl From<GroupName> for String {
    fn from(n: GroupName) -> String {
        n.0
    }
}

/// A consumer group's username: 1 to 16 characters, letters, digits and `_`, starting with a
/// letter. It is the SASL username its consumers log in with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 16;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        const HINT: &str = "use 1 to 16 letters, digits or underscores, starting with a letter";
        let len = s.chars().count();
        if len == 0 || len > Self::MAX_CHARS {
            return Err(InvalidInput::new(
                "username",
                format!("is {len} characters long"),
                HINT,
            ));
        }
        let mut chars = s.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !starts_with_letter || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(InvalidInput::new(
                "username",
                "contains a character that is not allowed",
                HINT,
            ));
        }
        Ok(Self(s))
    }
}

impl From<Username> for String {
    fn from(n: Username) -> String {
        n.0
    }
}

/// A consumer group password as the user typed it. Never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 32;

    /// Checks the rules: 8 to 32 printable ASCII characters (no spaces) of at least two kinds
    /// among upper case, lower case, digits and symbols.
    pub fn new(s: String) -> Result<Self, InvalidInput> {
        const HINT: &str = "use 8 to 32 characters with at least two of: upper case letters, lower case letters, digits, symbols";
        let len = s.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&len) {
            return Err(InvalidInput::new(
                "password",
                format!("is {len} characters long"),
                HINT,
            ));
        }
        if !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(InvalidInput::new(
                "password",
                "contains a space, a non-ASCII or a control character",
                HINT,
            ));
        }
        let kinds = [
            s.chars().any(|c| c.is_ascii_uppercase()),
            s.chars().any(|c| c.is_ascii_lowercase()),
            s.chars().any(|c| c.is_ascii_digit()),
            s.chars().any(|c| c.is_ascii_punctuation()),
        ];
        if kinds.iter().filter(|k| **k).count() < 2 {
            return Err(InvalidInput::new(
                "password",
                "uses only one kind of character",
                HINT,
            ));
        }
        Ok(Self(s))
    }

    /// The password itself, for hashing and for verifying against a hash.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string form (`$argon2id$v=19$…`). The only form in which a consumer
/// group password is stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by the hashing adapter.
    pub fn from_phc(phc: String) -> Result<Self, InvalidInput> {
        if !phc.starts_with("$argon2") {
            return Err(InvalidInput::new(
                "password_hash",
                "is not an argon2 PHC string",
                "hash passwords with argon2id before storing them",
            ));
        }
        Ok(Self(phc))
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// A consumer group of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    id: ConsumerGroupId,
    instance_id: InstanceId,
    name: GroupName,
    username: Username,
    password_hash: PasswordHash,
    /// The SCRAM verifiers of the password (SCRAM-SHA-256 and -512 sign-ins at the consumer
    /// gateway). Groups created before the gateway have none until their password changes or
    /// their first PLAIN sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scram: Option<Verifiers>,
    created_at: DateTime<Utc>,
}

impl ConsumerGroup {
    pub fn new(
        id: ConsumerGroupId,
        instance_id: InstanceId,
        name: GroupName,
        username: Username,
        password_hash: PasswordHash,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            instance_id,
            name,
            username,
            password_hash,
            scram: None,
            created_at,
        }
    }

    /// The group with the SCRAM verifiers of its password.
    pub fn with_scram(mut self, verifiers: Verifiers) -> Self {
        self.scram = Some(verifiers);
        self
    }

    pub fn scram(&self) -> Option<&Verifiers> {
        self.scram.as_ref()
    }

    /// The SASL username consumers sign in with: `<username>-<group id>`, the cloud DTS's
    /// form, so that existing consumer configurations carry over.
    pub fn sasl_username(&self) -> String {
        format!("{}-{}", self.username.as_str(), self.id)
    }

    pub fn id(&self) -> &ConsumerGroupId {
        &self.id
    }

    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    pub fn name(&self) -> &GroupName {
        &self.name
    }

    pub fn username(&self) -> &Username {
        &self.username
    }

    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// Replaces the stored hash and verifiers after the old password was verified.
    pub fn set_password(&mut self, hash: PasswordHash, verifiers: Verifiers) {
        self.password_hash = hash;
        self.scram = Some(verifiers);
    }

    /// Adds verifiers to a group that has none (its first PLAIN sign-in proved the password).
    pub fn set_scram(&mut self, verifiers: Verifiers) {
        self.scram = Some(verifiers);
    }
}

/// A SASL username of the form `<username>-<group id>`, split into its parts; `None` when it
/// is not of that form.
pub fn parse_sasl_username(s: &str) -> Option<(Username, ConsumerGroupId)> {
    let (user, group) = s.split_once('-')?;
    Some((
        Username::try_from(user.to_owned()).ok()?,
        group.parse().ok()?,
    ))
}

/// Whether one more group may be created on an instance that has `existing` groups.
pub fn check_group_quota(existing: usize) -> Result<(), InvalidInput> {
    if existing >= MAX_GROUPS_PER_INSTANCE {
        return Err(InvalidInput::new(
            "consumer_groups",
            format!("the instance already has {existing} consumer groups"),
            format!(
                "delete a consumer group first; an instance has at most {MAX_GROUPS_PER_INSTANCE}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["a", "reader_1", "ABCDEFGHIJKLMNOP"] {
            assert!(Username::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1reader",
            "_x",
            "reader-1",
            "ABCDEFGHIJKLMNOPQ",
            "rë",
            "a b",
        ] {
            assert!(Username::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn sasl_usernames_split_at_the_first_dash() {
        let gid = ConsumerGroupId::generate();
        let (u, g) = parse_sasl_username(&format!("reader_1-{gid}")).unwrap();
        assert_eq!((u.as_str(), &g), ("reader_1", &gid));
        for bad in [
            "reader",
            "-cg_x",
            "reader-",
            "reader-cg_nothex",
            "re-ader-cg_1",
        ] {
            assert!(parse_sasl_username(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        for ok in ["abcdefg1", "ABCDEFG!", "Passw0rd!Passw0rd!Passw0rd!12345"] {
            assert!(Password::new(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "abcdefgh",                          // one kind
            "12345678",                          // one kind
            "Ab1",                               // short
            "Passw0rd!Passw0rd!Passw0rd!123456", // 33
            "pass word1",                        // space
            "pässword1",                         // non-ASCII
        ] {
            assert!(Password::new(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let p = Password::new("Secret123".to_owned()).unwrap();
        assert!(!format!("{p:?}").contains("Secret123"));
        let h = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$abc$def".into()).unwrap();
        assert!(!format!("{h:?}").contains("abc"));
        assert!(PasswordHash::from_phc("plaintext".into()).is_err());
    }

    #[test]
    fn quota() {
        assert!(check_group_quota(0).is_ok());
        assert!(check_group_quota(MAX_GROUPS_PER_INSTANCE - 1).is_ok());
        assert!(check_group_quota(MAX_GROUPS_PER_INSTANCE).is_err());
    }
}
