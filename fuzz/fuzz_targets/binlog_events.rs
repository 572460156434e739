//! Binlog bytes, as a file or a replication stream delivers them, through Ferry's event decoder
//! (`ferry_mysql::file::decode_bytes`, unguarded): any input is events or an error, never a
//! panic. Seeded with MySQL's own binlog files (`../shared/fixtures/mysql-binlogs/`) and events
//! captured from MariaDB (`infra/local/fuzz` builds the seed corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_mysql::file::decode_bytes(data, "binlog.000001".parse().ok());
});
