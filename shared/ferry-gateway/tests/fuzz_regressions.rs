//! The inputs the gateway fuzzer once crashed on (`fuzz/regressions/gateway_requests/`),
//! replayed in an ordinary test build: each ends in a value or an error. The first one made
//! `kafka-protocol` reserve memory for a forged array count, which aborted the process
//! (vendor/README.md).

use std::path::Path;

#[test]
fn every_gateway_fuzz_regression_ends_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/gateway_requests");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regression inputs") {
        let path = entry.expect("a directory entry").path();
        let bytes = std::fs::read(&path).expect("a regression input");
        let outcome = std::panic::catch_unwind(|| ferry_gateway::fuzzing::exercise(&bytes));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        replayed += 1;
    }
    assert!(replayed >= 1, "no regression inputs in {}", dir.display());
}
