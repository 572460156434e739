//! The inputs the binlog fuzzer once crashed on (`fuzz/regressions/binlog_events/`), replayed in
//! an ordinary test build (debug assertions on, so the standard library's checks of `unsafe`
//! preconditions run too): each decodes to events or an error, without a panic escaping.

use std::path::Path;

#[test]
fn every_binlog_fuzz_regression_decodes_or_fails_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/binlog_events");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regression inputs") {
        let path = entry.expect("a directory entry").path();
        if path.file_name().is_some_and(|n| n == ".keep") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("a regression input");
        let outcome = std::panic::catch_unwind(|| {
            let _ = ferry_mysql::file::decode_bytes(&bytes, "binlog.000001".parse().ok());
        });
        assert!(outcome.is_ok(), "{} panicked", path.display());
        replayed += 1;
    }
    assert!(
        replayed >= 6,
        "only {replayed} regression inputs in {}",
        dir.display()
    );
}
