//! Binlog bytes, as a file or a replication stream delivers them, through Ferry's event decoder
//! (`ferry_mysql::file::decode_bytes`): any input is events or an error, never a crash; and
//! the prepared row reader reads exactly what `mysql_common`'s row parser reads, and skipping
//! rows by their values' widths finds the same rows. Seeded
//! with MySQL's own binlog files (`../shared/fixtures/mysql-binlogs/`) and the local stack's
//! MariaDB binlog (`infra/local/fuzz` builds the seed corpus).
//!
//! `mysql_common` panics on some damaged events; Ferry runs its parser under `catch_unwind`
//! (`ferry_mysql::binlog::guarded`) and turns those into definite errors. libFuzzer's panic
//! hook would abort on them even though they are caught, so this target installs a silent hook:
//! a panic that escapes Ferry's code still reaches libfuzzer-sys's own `catch_unwind` and aborts
//! there, which is the crash the fuzzer reports.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        use ferry_mysql::binlog::RowParser;
        use ferry_mysql::file::{count_rows, decode_bytes_with, row_counts};
        let file = || "binlog.000001".parse().ok();
        // Differential: the prepared row reader and mysql_common's row parser agree on every
        // input both read (a panic of either is caught by Ferry's guard and is an error).
        let prepared = decode_bytes_with(data, file(), RowParser::Prepared);
        if let Ok(events) = prepared {
            if let Ok(reference) = decode_bytes_with(data, file(), RowParser::Reference) {
                assert_eq!(events, reference, "the prepared row reader differs from the reference");
            }
            // Rows read past by their values' widths (tables a task does not carry): the
            // same rows as reading them.
            let counted = count_rows(data, file()).expect("skipping fails where reading passes");
            assert_eq!(counted, row_counts(&events), "skipping rows differs from reading them");
        }
    }
);
