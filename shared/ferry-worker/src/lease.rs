//! A running task's lease as its loop sees it: a deadline on this process's monotonic clock,
//! and the renewer that moves it.
//!
//! # Fencing
//!
//! The store fences checkpoints by the lease's token, but records already queued for Kafka or
//! a target transaction in flight are not checkpoints: a worker that was paused (SIGSTOP, a
//! frozen VM) or cut off from DynamoDB past its lease would wake up with them and write after
//! the worker that took the task over. So the loop keeps a local deadline: the start of the last
//! successful renewal plus the lease's time to live, measured on the monotonic clock (a paused
//! process's monotonic clock keeps running). The lease in DynamoDB expires no earlier than that
//! (its `expires_at` is computed after the renewal started).
//!
//! - Once less than [`LeaseTimes::margin`] (half the time to live) is left, the loop sends
//!   nothing more: no record is queued, no target statement or commit is sent; it purges the
//!   producer's queue and stops.
//! - Every record queued before that point is delivered or failed within
//!   [`LeaseTimes::message_timeout`] (librdkafka's `message.timeout.ms`, checked by its
//!   broker thread before it sends after a pause), and every target apply within
//!   [`LeaseTimes::apply_timeout`]: both end at least [`CLOCK_SKEW`] before the deadline.
//! - Another worker claims the lease only after its `expires_at` on its own wall clock. The
//!   design therefore relies on the workers' clocks agreeing within [`CLOCK_SKEW`] (1 s; NTP or
//!   the Amazon Time Sync Service keep them within milliseconds).
//!
//! What remains is a window of microseconds between the loop's last check and the call that
//! hands a record to librdkafka: a pause landing exactly there lets that one record through
//! after the deadline. A transactional producer would close it; the local broker (nisshi)
//! does not support transactions (docs/reliability.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use ferry_api::AppState;
use ferry_domain::id::{InstanceId, WorkerId};
use tokio::time::Instant;

/// How far apart the workers' wall clocks may be (see the module's `# Fencing`).
pub const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// The shortest time to live a lease may have: it leaves the producer at least 4 s for a
/// record (see [`LeaseTimes::message_timeout`]).
pub const MIN_TTL: Duration = Duration::from_secs(12);

/// A lease this worker claimed: its fencing token, and when the claim started (the lease
/// expires no earlier than that plus its time to live).
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub token: u64,
    pub started: Instant,
}

/// The times a lease's time to live implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    pub ttl: Duration,
}

impl LeaseTimes {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: ttl.max(MIN_TTL),
        }
    }

    /// How often the lease is renewed: a sixth of its time to live, so that a slow store
    /// (two renewals that each take a sixth) does not stop a live loop.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 6
    }

    /// When this much of the lease is left, the loop stops sending.
    pub fn margin(&self) -> Duration {
        self.ttl / 2
    }

    /// How long librdkafka may hold a record (`message.timeout.ms`): anything queued before
    /// the loop stops sending is delivered or failed before the lease can expire.
    pub fn message_timeout(&self) -> Duration {
        // librdkafka scans for timed-out records once a second.
        self.margin()
            .saturating_sub(CLOCK_SKEW + Duration::from_secs(1))
    }

    /// How long one apply (a target transaction) may take.
    pub fn apply_timeout(&self) -> Duration {
        self.margin().saturating_sub(CLOCK_SKEW)
    }
}

#[derive(Debug)]
struct Inner {
    deadline: Instant,
    lost: bool,
}

/// The loop's view of its lease: shared between the loop and the renewer.
#[derive(Debug, Clone)]
pub(crate) struct LeaseClock {
    times: LeaseTimes,
    inner: Arc<Mutex<Inner>>,
}

/// Why the loop may not send any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Another worker holds the lease now.
    Lost,
    /// Not renewed in time: another worker may claim it soon.
    Expiring,
}

impl LeaseClock {
    /// A lease whose last successful claim or renewal started at `claimed_at`.
    pub(crate) fn new(times: LeaseTimes, claimed_at: Instant) -> Self {
        Self {
            times,
            inner: Arc::new(Mutex::new(Inner {
                deadline: claimed_at + times.ttl,
                lost: false,
            })),
        }
    }

    pub(crate) fn times(&self) -> LeaseTimes {
        self.times
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A renewal that started at `started` succeeded.
    pub(crate) fn renewed(&self, started: Instant) {
        let mut inner = self.lock();
        inner.deadline = inner.deadline.max(started + self.times.ttl);
    }

    /// Another worker took the lease.
    pub(crate) fn lose(&self) {
        self.lock().lost = true;
    }

    /// `Ok` while the loop may send (more than the margin left), else why not.
    pub(crate) fn check(&self) -> Result<(), Expiry> {
        let inner = self.lock();
        if inner.lost {
            return Err(Expiry::Lost);
        }
        if Instant::now() + self.times.margin() >= inner.deadline {
            return Err(Expiry::Expiring);
        }
        Ok(())
    }

    /// Whether another worker took the lease.
    pub(crate) fn is_lost(&self) -> bool {
        self.lock().lost
    }
}

impl From<Expiry> for crate::error::TaskError {
    fn from(e: Expiry) -> Self {
        match e {
            Expiry::Lost => Self::LeaseLost,
            Expiry::Expiring => Self::LeaseExpiring,
        }
    }
}

/// A lease a running loop holds: its clock, and the renewer keeping it, stopped with the loop.
pub(crate) struct Held {
    pub(crate) clock: LeaseClock,
    _renewer: crate::source::AbortOnDrop,
}

/// Starts holding `claim` for `instance`: the clock from the claim's start, the renewer on a
/// task of its own from now (so a loop waiting on a slow broker or source keeps its lease).
pub(crate) fn hold(
    state: &AppState,
    worker: &WorkerId,
    instance: &InstanceId,
    ttl: Duration,
    claim: Claim,
) -> Held {
    let clock = LeaseClock::new(LeaseTimes::new(ttl), claim.started);
    let renewer = tokio::spawn(renew_lease(
        state.clone(),
        instance.clone(),
        worker.clone(),
        claim.token,
        clock.clone(),
    ));
    Held {
        clock,
        _renewer: crate::source::AbortOnDrop(renewer),
    }
}

/// Renews the lease every sixth of its time to live (counted from the start of the previous
/// renewal) while the loop runs, whatever the loop is waiting on (a slow broker must not cost a
/// live worker its lease). A failed renewal is retried every second; a lease taken by another
/// worker is marked lost and ends the renewer.
pub(crate) async fn renew_lease(
    state: AppState,
    instance: InstanceId,
    worker: WorkerId,
    token: u64,
    clock: LeaseClock,
) {
    let times = clock.times();
    let mut next = Instant::now() + times.renew_every();
    loop {
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        let claimed = state
            .store()
            .claim_lease(
                &instance,
                &worker,
                Utc::now(),
                chrono::Duration::from_std(times.ttl).unwrap_or_default(),
            )
            .await;
        match claimed {
            Ok(Some(l)) if l.token == token => {
                clock.renewed(started);
                next = started + times.renew_every();
            }
            Ok(other) => {
                tracing::warn!(instance = %instance, token, now = ?other, "the lease is held by another worker now");
                clock.lose();
                return;
            }
            Err(e) => {
                tracing::warn!(instance = %instance, error = %e, "renewing the lease failed; retrying");
                next = Instant::now() + Duration::from_secs(1).min(times.renew_every());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wait_ends_before_another_worker_may_claim() {
        for ttl in [1, 12, 15, 30, 300] {
            let t = LeaseTimes::new(Duration::from_secs(ttl));
            assert!(t.ttl >= MIN_TTL);
            // The last record is queued at deadline - margin; it is settled within the message
            // timeout plus librdkafka's one-second scan; another worker claims no earlier than
            // the deadline minus the clock skew.
            assert!(
                t.message_timeout() + Duration::from_secs(1) + CLOCK_SKEW <= t.margin(),
                "{t:?}"
            );
            assert!(t.apply_timeout() + CLOCK_SKEW <= t.margin(), "{t:?}");
            assert!(t.message_timeout() >= Duration::from_secs(4), "{t:?}");
            assert!(
                t.renew_every() * 2 <= t.margin(),
                "two renewals may fail: {t:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_stops_sending_when_half_the_lease_is_left() {
        let times = LeaseTimes::new(Duration::from_secs(20));
        let clock = LeaseClock::new(times, Instant::now());
        assert_eq!(clock.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(clock.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(clock.check(), Err(Expiry::Expiring), "10 s of 20 left");
        // A renewal that started 2 s ago moves the deadline to 18 s from now.
        clock.renewed(Instant::now() - Duration::from_secs(2));
        assert_eq!(clock.check(), Ok(()));
        // A renewal that started long ago (before a pause) never moves it back.
        clock.renewed(Instant::now() - Duration::from_secs(60));
        assert_eq!(clock.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(clock.check(), Err(Expiry::Expiring));
        clock.lose();
        assert_eq!(clock.check(), Err(Expiry::Lost));
        assert!(clock.is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_deadline_is_seen_at_once() {
        // SIGSTOP freezes the process; the monotonic clock runs on.
        let clock = LeaseClock::new(LeaseTimes::new(Duration::from_secs(30)), Instant::now());
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(clock.check(), Err(Expiry::Expiring));
    }
}
