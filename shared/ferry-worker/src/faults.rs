//! Crash points for the tests that prove what a crash at an exact place leaves behind: set
//! `FERRY_FAULT_ABORT_AFTER_APPLY=n` and the worker process aborts (no destructor, no
//! checkpoint, no lease release: as a crash would) right after its `n`-th target transaction
//! of changes committed, before the checkpoint that would cover it.
//!
//! A test hook in the product, not a feature: unset (always, outside tests) it costs one
//! relaxed atomic load per applied batch. Compiled in, rather than behind a cargo feature,
//! because the tests drive the very `ferry` binary that ships.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ABORT_AFTER_APPLY: &str = "FERRY_FAULT_ABORT_AFTER_APPLY";

fn abort_after_apply() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        let raw = std::env::var(ABORT_AFTER_APPLY).ok()?;
        match raw.parse() {
            Ok(n) => {
                tracing::warn!(
                    n,
                    "{ABORT_AFTER_APPLY} is set: this worker aborts after its {n}th applied batch"
                );
                Some(n)
            }
            Err(_) => {
                tracing::error!(value = %raw, "{ABORT_AFTER_APPLY} is not a number: ignored");
                None
            }
        }
    })
}

/// A sync loop committed a batch of changes on its target.
pub(crate) fn applied() {
    static APPLIED: AtomicU64 = AtomicU64::new(0);
    let Some(n) = abort_after_apply() else {
        return;
    };
    if APPLIED.fetch_add(1, Ordering::Relaxed) + 1 == n {
        tracing::error!(
            "{ABORT_AFTER_APPLY}: aborting after applied batch {n}, before its checkpoint"
        );
        std::process::abort();
    }
}
