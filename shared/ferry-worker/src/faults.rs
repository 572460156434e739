//! Crash points for the tests that prove what a crash at an exact place leaves behind. The
//! worker process aborts (no destructor, no checkpoint, no lease release: as a crash would):
//!
//! - `FERRY_FAULT_ABORT_AFTER_APPLY=n`: right after its `n`-th target transaction of changes
//!   committed, before the checkpoint that would cover it (sync);
//! - `FERRY_FAULT_ABORT_BEFORE_CHECKPOINT=<file>`: at the first capture checkpoint it is about
//!   to write, once `<file>` exists, over records sent since the stored one — after every
//!   record sent is acknowledged, so the crash leaves records in the topic after the stored
//!   checkpoint, at a moment the test chooses by creating the file.
//!
//! Test hooks in the product, not features: unset (always, outside tests) they cost one
//! relaxed atomic load per applied batch and one `OnceLock` read per checkpoint. Compiled in, rather than behind a cargo feature,
//! because the tests drive the very `ferry` binary that ships.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ABORT_AFTER_APPLY: &str = "FERRY_FAULT_ABORT_AFTER_APPLY";
const ABORT_BEFORE_CHECKPOINT: &str = "FERRY_FAULT_ABORT_BEFORE_CHECKPOINT";

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

/// Whether a capture loop about to write a checkpoint over records sent since the stored one
/// is to abort there (the trigger file exists); the loop then drains and calls [`abort`].
pub(crate) fn abort_before_checkpoint() -> bool {
    static TRIGGER: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let trigger = TRIGGER.get_or_init(|| {
        let path = std::env::var_os(ABORT_BEFORE_CHECKPOINT)?;
        tracing::warn!(
            file = %std::path::Path::new(&path).display(),
            "{ABORT_BEFORE_CHECKPOINT} is set: this worker aborts before its next checkpoint once the file exists"
        );
        Some(path.into())
    });
    trigger.as_ref().is_some_and(|file| file.exists())
}

/// The crash [`abort_before_checkpoint`] asked for.
pub(crate) fn abort() -> ! {
    tracing::error!("{ABORT_BEFORE_CHECKPOINT}: aborting before a checkpoint");
    std::process::abort();
}
