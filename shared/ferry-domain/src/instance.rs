//! Instances: what a user buys. One instance has exactly one task.
//!
//! # Lifecycle rules
//!
//! - A **pay-as-you-go** instance lives until it is deleted. Deleting it stops its task and
//!   removes its consumer groups, checkpoints and topic.
//! - A **subscription** instance cannot be deleted. It runs until `expires_at`; the sweeper
//!   then marks it [`InstanceStatus::Expired`] and stops its task. It can be renewed while
//!   active or expired: an active one is extended from its expiry, an expired one from the
//!   moment of renewal. [`RELEASE_AFTER_EXPIRY`] (7 days) after expiry the sweeper releases
//!   it with everything it owns.
//!
//! Nothing here reads a clock: every rule takes `now`, so the sweeper and the tests drive time.

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::id::InstanceId;
use crate::invalid::check_text;

/// How long an expired subscription instance is kept before it is released.
pub const RELEASE_AFTER_EXPIRY: Duration = Duration::days(7);

/// The longest subscription term that can be bought or added at once.
pub const MAX_SUBSCRIPTION_MONTHS: u32 = 36;

/// What the instance's task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Change tracking: binlog → a Kafka topic read by consumer groups.
    Tracking,
    /// Data synchronization: schema + full + incremental sync into a target database.
    Sync,
}

/// The size of an instance: a cap on the rows per second its task carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceClass {
    Small,
    Medium,
    Large,
}

impl InstanceClass {
    /// Rows per second the task may carry, as the cloud DTS sync classes.
    pub fn rps_cap(self) -> u32 {
        match self {
            Self::Small => 2_000,
            Self::Medium => 5_000,
            Self::Large => 10_000,
        }
    }
}

/// A subscription term in months, 1 to [`MAX_SUBSCRIPTION_MONTHS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Term(u32);

impl Term {
    pub fn months(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Term {
    type Error = InvalidInput;

    fn try_from(months: u32) -> Result<Self, Self::Error> {
        if (1..=MAX_SUBSCRIPTION_MONTHS).contains(&months) {
            Ok(Self(months))
        } else {
            Err(InvalidInput::new(
                "months",
                format!("{months} is not a valid subscription term"),
                format!("give a whole number of months from 1 to {MAX_SUBSCRIPTION_MONTHS}"),
            ))
        }
    }
}

impl From<Term> for u32 {
    fn from(t: Term) -> u32 {
        t.0
    }
}

/// The billing a user asks for when creating an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BillingRequest {
    /// A struct variant so that `deny_unknown_fields` rejects `{"type": "pay_as_you_go", "months": 3}`.
    PayAsYouGo {},
    Subscription {
        months: Term,
    },
}

/// The billing of an existing instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Billing {
    PayAsYouGo,
    Subscription { expires_at: DateTime<Utc> },
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Active,
    /// A subscription past its expiry: the task is stopped, the data is kept until release.
    Expired,
    /// Released: everything the instance owned is being removed.
    Released,
}

/// An instance name: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl InstanceName {
    pub const MAX_CHARS: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = InvalidInput;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        check_text("name", &name, Self::MAX_CHARS)?;
        Ok(Self(name))
    }
}

impl From<InstanceName> for String {
    fn from(n: InstanceName) -> String {
        n.0
    }
}

/// What the sweeper must do with an instance at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAction {
    /// The subscription ran out: stop the task and mark the instance expired.
    Expire,
    /// Expired for [`RELEASE_AFTER_EXPIRY`]: remove the instance and everything it owns.
    Release,
}

/// Why a lifecycle operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "a subscription instance cannot be deleted; it is released {release_at} (7 days after it expires)"
    )]
    SubscriptionNotDeletable { release_at: DateTime<Utc> },
    #[error("only a subscription instance can be renewed; this one is pay-as-you-go")]
    NotSubscription,
    #[error("the instance was released and can no longer be changed")]
    Released,
    #[error("the new expiry date is out of range")]
    DateOutOfRange,
}

impl LifecycleError {
    /// The stable error code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SubscriptionNotDeletable { .. } => "subscription_not_deletable",
            Self::NotSubscription => "not_subscription",
            Self::Released => "instance_released",
            Self::DateOutOfRange => "invalid_input",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Self::SubscriptionNotDeletable { .. } => {
                "stop or reset the task instead; the instance is released automatically after it expires"
            }
            Self::NotSubscription => "pay-as-you-go instances run until they are deleted",
            Self::Released => "create a new instance",
            Self::DateOutOfRange => "renew for fewer months",
        }
    }
}

/// An instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    id: InstanceId,
    name: InstanceName,
    mode: Mode,
    class: InstanceClass,
    billing: Billing,
    status: InstanceStatus,
    created_at: DateTime<Utc>,
}

impl Instance {
    /// A new, active instance created at `now`.
    pub fn new(
        id: InstanceId,
        name: InstanceName,
        mode: Mode,
        class: InstanceClass,
        billing: BillingRequest,
        now: DateTime<Utc>,
    ) -> Result<Self, LifecycleError> {
        let billing = match billing {
            BillingRequest::PayAsYouGo {} => Billing::PayAsYouGo,
            BillingRequest::Subscription { months } => Billing::Subscription {
                expires_at: add_months(now, months)?,
            },
        };
        Ok(Self {
            id,
            name,
            mode,
            class,
            billing,
            status: InstanceStatus::Active,
            created_at: now,
        })
    }

    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    pub fn name(&self) -> &InstanceName {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn class(&self) -> InstanceClass {
        self.class
    }

    pub fn billing(&self) -> Billing {
        self.billing
    }

    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// When a subscription instance expires; `None` for pay-as-you-go.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self.billing {
            Billing::PayAsYouGo => None,
            Billing::Subscription { expires_at } => Some(expires_at),
        }
    }

    /// When a subscription instance is released; `None` for pay-as-you-go.
    pub fn release_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at().map(|e| e + RELEASE_AFTER_EXPIRY)
    }

    /// Whether a user may delete this instance.
    pub fn check_deletable(&self) -> Result<(), LifecycleError> {
        match (self.status, self.billing) {
            (InstanceStatus::Released, _) => Err(LifecycleError::Released),
            (_, Billing::PayAsYouGo) => Ok(()),
            (_, Billing::Subscription { expires_at }) => {
                Err(LifecycleError::SubscriptionNotDeletable {
                    release_at: expires_at + RELEASE_AFTER_EXPIRY,
                })
            }
        }
    }

    /// Extends a subscription by `term`. An active subscription is extended from its expiry;
    /// an expired one from `now`, and becomes active again.
    pub fn renew(&mut self, term: Term, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        let Billing::Subscription { expires_at } = self.billing else {
            return Err(LifecycleError::NotSubscription);
        };
        let from = match self.status {
            InstanceStatus::Released => return Err(LifecycleError::Released),
            InstanceStatus::Active => expires_at.max(now),
            InstanceStatus::Expired => now,
        };
        self.billing = Billing::Subscription {
            expires_at: add_months(from, term)?,
        };
        self.status = InstanceStatus::Active;
        Ok(())
    }

    /// What the sweeper must do with this instance at `now`, if anything.
    pub fn sweep_action(&self, now: DateTime<Utc>) -> Option<SweepAction> {
        let expires_at = self.expires_at()?;
        match self.status {
            InstanceStatus::Active if now >= expires_at => Some(SweepAction::Expire),
            InstanceStatus::Expired if now >= expires_at + RELEASE_AFTER_EXPIRY => {
                Some(SweepAction::Release)
            }
            _ => None,
        }
    }

    /// Applies a sweep action decided by [`Self::sweep_action`].
    pub fn apply_sweep(&mut self, action: SweepAction) {
        self.status = match action {
            SweepAction::Expire => InstanceStatus::Expired,
            SweepAction::Release => InstanceStatus::Released,
        };
    }
}

fn add_months(t: DateTime<Utc>, term: Term) -> Result<DateTime<Utc>, LifecycleError> {
    t.checked_add_months(Months::new(term.months()))
        .ok_or(LifecycleError::DateOutOfRange)
}

/// The Kafka topic of `instance`'s task in topic `generation`: `<prefix><instance id>` for the
/// first, `<prefix><instance id>.g<n>` after the n-th reset (a reset starts a new topic, so
/// nothing of the old one can make the next start skip a change).
pub fn topic_name(prefix: &str, instance: &crate::id::InstanceId, generation: u32) -> String {
    match generation {
        0 => format!("{prefix}{instance}"),
        n => format!("{prefix}{instance}.g{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn subscription(months: u32, now: DateTime<Utc>) -> Instance {
        Instance::new(
            InstanceId::generate(),
            InstanceName::try_from("orders".to_owned()).unwrap(),
            Mode::Tracking,
            InstanceClass::Small,
            BillingRequest::Subscription {
                months: Term::try_from(months).unwrap(),
            },
            now,
        )
        .unwrap()
    }

    #[test]
    fn pay_as_you_go_is_deletable_and_never_swept() {
        let i = Instance::new(
            InstanceId::generate(),
            InstanceName::try_from("x".to_owned()).unwrap(),
            Mode::Sync,
            InstanceClass::Large,
            BillingRequest::PayAsYouGo {},
            at(2026, 1, 1),
        )
        .unwrap();
        assert!(i.check_deletable().is_ok());
        assert_eq!(i.sweep_action(at(2100, 1, 1)), None);
        assert_eq!(i.release_at(), None);
        let mut i = i;
        assert_eq!(
            i.renew(Term::try_from(1).unwrap(), at(2026, 1, 2)),
            Err(LifecycleError::NotSubscription)
        );
    }

    #[test]
    fn subscription_expires_then_is_released_seven_days_later() {
        let mut i = subscription(1, at(2026, 1, 31));
        // Month arithmetic clamps to the end of a shorter month.
        assert_eq!(i.expires_at(), Some(at(2026, 2, 28)));
        let err = i.check_deletable().unwrap_err();
        assert_eq!(err.code(), "subscription_not_deletable");

        assert_eq!(i.sweep_action(at(2026, 2, 27)), None);
        assert_eq!(i.sweep_action(at(2026, 2, 28)), Some(SweepAction::Expire));
        i.apply_sweep(SweepAction::Expire);
        assert_eq!(i.status(), InstanceStatus::Expired);
        assert_eq!(i.sweep_action(at(2026, 3, 6)), None);
        assert_eq!(i.sweep_action(at(2026, 3, 7)), Some(SweepAction::Release));
        i.apply_sweep(SweepAction::Release);
        assert_eq!(i.sweep_action(at(2030, 1, 1)), None);
        assert_eq!(
            i.renew(Term::try_from(1).unwrap(), at(2026, 3, 8)),
            Err(LifecycleError::Released)
        );
    }

    #[test]
    fn renewal_extends_from_expiry_or_from_now() {
        let mut active = subscription(2, at(2026, 1, 10));
        active
            .renew(Term::try_from(3).unwrap(), at(2026, 2, 1))
            .unwrap();
        assert_eq!(active.expires_at(), Some(at(2026, 6, 10)));

        let mut expired = subscription(1, at(2026, 1, 10));
        expired.apply_sweep(SweepAction::Expire);
        expired
            .renew(Term::try_from(1).unwrap(), at(2026, 2, 15))
            .unwrap();
        assert_eq!(expired.status(), InstanceStatus::Active);
        assert_eq!(expired.expires_at(), Some(at(2026, 3, 15)));
    }

    #[test]
    fn terms_and_names_are_validated() {
        assert!(Term::try_from(0).is_err());
        assert!(Term::try_from(MAX_SUBSCRIPTION_MONTHS + 1).is_err());
        assert!(InstanceName::try_from(String::new()).is_err());
        assert!(InstanceName::try_from("a\u{0}b".to_owned()).is_err());
        let bad: Result<BillingRequest, _> =
            serde_json::from_str(r#"{"type":"subscription","months":0}"#);
        assert!(bad.is_err());
        let bad: Result<BillingRequest, _> =
            serde_json::from_str(r#"{"type":"pay_as_you_go","months":3}"#);
        assert!(bad.is_err(), "unknown fields are rejected");
    }

    #[test]
    fn classes_cap_rps() {
        assert!(InstanceClass::Small.rps_cap() < InstanceClass::Medium.rps_cap());
        assert!(InstanceClass::Medium.rps_cap() < InstanceClass::Large.rps_cap());
    }
}
