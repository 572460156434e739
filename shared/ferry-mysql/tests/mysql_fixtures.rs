//! MySQL code paths no server on these machines can exercise, checked with binlog files written
//! by Oracle MySQL (`shared/fixtures/mysql-binlogs/`, from mysql_common's test data).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::path::PathBuf;

use ferry_domain::position::BinlogFile;
use ferry_domain::value::Value;
use ferry_mysql::archive::{PieceWriter, RawEvent, Replay};
use ferry_mysql::binlog::{EventDecoder, ReadEvent, SourceEvent};
use ferry_mysql::decode::Charsets;
use ferry_mysql::file::read_file;

/// `shared/fixtures/mysql-binlogs` of the workplace: `FERRY_FIXTURES`, or the first ancestor of
/// this crate that has it (the project's clone sits beside `shared/`).
fn fixtures() -> PathBuf {
    if let Ok(dir) = std::env::var("FERRY_FIXTURES") {
        return PathBuf::from(dir).join("mysql-binlogs");
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = here
        .ancestors()
        .map(|a| a.join("shared/fixtures/mysql-binlogs"))
        .find(|d| d.is_dir());
    found.unwrap_or_else(|| {
        panic!(
            "the MySQL binlog fixtures (shared/fixtures/mysql-binlogs) are not beside any parent of {}; set FERRY_FIXTURES",
            here.display()
        )
    })
}

fn read(name: &str) -> Vec<ReadEvent> {
    read_file(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn rows(events: &[ReadEvent]) -> Vec<&ferry_domain::change::RowChange> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            SourceEvent::Rows(r) => Some(r.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Files that must fail, and a word of the error each must give.
const REFUSED: &[(&str, &str)] = &[
    // Statement-based binlogs: Ferry captures rows, and says so.
    ("bug11747887-bin.000003", "statement-based"),
    ("binlog_56_gtid_reserved_word.000001", "statement-based"),
    (
        "binlog_transaction_with_anonymous_GTID.000001",
        "statement-based",
    ),
    (
        "rpl_cross_version_default_utf8mb4_collation.000001",
        "statement-based",
    ),
    ("corrupt-relay-bin.000624", "statement-based"),
    ("ver_trunk_row_v2.001", "statement-based"),
    ("ver_5_1_23.001", "statement-based"),
    ("binlog_transaction.000001", "statement-based"),
    ("bug33029-slave-relay-bin.000001", "statement-based"),
    ("binlog_transaction_with_GTID.000001", "statement-based"),
    ("ver_5_1-wl2325_s.001", "statement-based"),
    ("bug16266.000001", "statement-based"),
    ("binlog_savepoint.000001", "statement-based"),
    // MySQL 5.1's XID layout (sources older than 5.7 are refused by the precheck).
    ("ver_5_1-wl2325_r.001", "does not parse"),
    // An INCIDENT event: the source says events are missing.
    ("bug40482-bin.000001", "incident"),
    // Ten bytes of an event header after the magic number; nine after a format description.
    ("binlog_truncated_event.000001", "not a whole event header"),
    (
        "binlog_truncated_prev_gtid_event.000001",
        "not a whole event header",
    ),
];

/// Every fixture is read to the end or refused with a clear error; none panics, including the
/// truncated and corrupt ones.
#[test]
fn every_fixture_is_read_or_refused_with_a_reason() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        seen += 1;
        let result = read_file(&path);
        match REFUSED.iter().find(|(n, _)| *n == name) {
            Some((_, word)) => {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{name} was read, but should be refused"));
                assert!(err.to_string().contains(word), "{name}: {err}");
                assert!(err.is_definite(), "{name}: {err}");
            }
            None => {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
    assert!(seen >= 40, "only {seen} fixtures found");
}

/// The prepared row reader gives exactly what `mysql_common`'s row parser (the reference)
/// gives, event for event, for every fixture both can read.
#[test]
fn prepared_rows_equal_the_reference_parser() {
    use ferry_mysql::binlog::RowParser;
    use ferry_mysql::file::{count_rows, decode_bytes_with, row_counts};
    let (mut compared, mut skipped) = (0, 0);
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let run = |parser| {
            std::panic::catch_unwind(|| {
                decode_bytes_with(&bytes, "fixture.000001".parse().ok(), parser)
            })
        };
        match (run(RowParser::Prepared), run(RowParser::Reference)) {
            (Ok(Ok(prepared)), Ok(Ok(reference))) => {
                assert_eq!(prepared, reference, "{name}");
                compared += rows(&prepared).len();
                // Rows not carried are skipped by their values' widths: the same rows, the
                // same bytes.
                let counted = count_rows(&bytes, "fixture.000001".parse().ok())
                    .unwrap_or_else(|e| panic!("{name}: skipping the rows fails: {e}"));
                assert_eq!(counted, row_counts(&prepared), "{name}");
                skipped += counted.iter().sum::<u32>();
            }
            (Ok(Err(_)) | Err(_), Ok(Err(_)) | Err(_)) => {}
            (p, r) => panic!(
                "{name}: prepared {:?}, reference {:?}",
                p.map(|r| r.map(|e| e.len())),
                r.map(|r| r.map(|e| e.len()))
            ),
        }
    }
    assert!(compared >= 50, "only {compared} rows compared");
    assert_eq!(skipped as usize, compared, "every row read is also skipped");
}

#[test]
fn mysql_gtids_with_and_without_tags_make_the_position() {
    let events = read("binlog_transaction_with_GTID_TAG.000001");
    let begin = events.iter().find_map(|e| match &e.event {
        SourceEvent::Begin { gtid } => gtid.clone(),
        _ => None,
    });
    assert_eq!(
        begin.as_deref(),
        Some("55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3")
    );
    let commit = events
        .iter()
        .find(|e| matches!(e.event, SourceEvent::Commit { .. }))
        .unwrap();
    assert_eq!(
        commit.position.gtid().unwrap().to_string(),
        "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
    );

    let events = read("mysql-enum-string-set.000001");
    let last = events
        .iter()
        .rev()
        .find(|e| matches!(e.event, SourceEvent::Commit { .. }))
        .unwrap();
    assert_eq!(
        last.position.to_string(),
        "mysql-enum-string-set.000001:3331@93e95066-a2f4-11ec-9b69-9657f0ae95e2:3-5"
    );
}

#[test]
fn enums_sets_bits_and_long_times_decode_exactly() {
    use ferry_domain::value::{Bits, EnumValue, SetValue, Time};
    let events = read("mysql-enum-string-set.000001");
    let deleted = rows(&events)
        .into_iter()
        .find(|r| r.after().is_none())
        .unwrap();
    let before = deleted.before().unwrap();
    assert_eq!(
        before[2],
        Value::Enum(EnumValue {
            index: 2,
            name: "variant2".into()
        })
    );
    assert_eq!(
        before[3],
        Value::Set(SetValue {
            mask: 0b1010,
            names: vec!["two".into(), "four".into()]
        })
    );

    let events = read("mysql_type_bit.000001");
    let row = rows(&events)[0].after().unwrap().to_vec();
    assert_eq!(
        row[0],
        Value::Bit(Bits {
            width: 3,
            bytes: vec![4]
        })
    );
    assert_eq!(
        row[2],
        Value::Bit(Bits {
            width: 8,
            bytes: vec![32]
        })
    );

    let events = read("time_issue.000001");
    let row = rows(&events)[0].after().unwrap().to_vec();
    assert_eq!(
        row[0],
        Value::Time(Time {
            negative: true,
            hours: 507,
            minutes: 48,
            seconds: 27,
            micros: 0
        })
    );
}

#[test]
fn compressed_transactions_are_read_from_their_payload() {
    let events = read("transaction_compression.000001");
    let inserted = rows(&events);
    assert_eq!(inserted.len(), 1);
    assert_eq!(inserted[0].table().name().to_string(), "test.tb1");
    assert_eq!(inserted[0].after().unwrap(), [Value::Int(1)]);
    assert!(matches!(
        events.last().unwrap().event,
        SourceEvent::Commit { xid: Some(462) }
    ));
}

#[test]
fn partial_row_images_put_values_in_their_columns() {
    let events = read("update-partial-row.binlog");
    let changes: Vec<_> = rows(&events)
        .into_iter()
        .filter(|r| r.table().name().table == "ba")
        .collect();
    let update = changes
        .iter()
        .find(|r| r.before().is_some() && r.after().is_some())
        .unwrap();
    assert_eq!(
        update.before().unwrap(),
        [Value::Int(4), Value::Null, Value::Int(4)]
    );
    assert_eq!(
        update.after().unwrap(),
        [Value::Int(4), Value::Null, Value::Int(40)]
    );
    let events = read("minimal_row_metadata.000001");
    assert_eq!(
        rows(&events)[0].after().unwrap()[4],
        Value::UInt(3_230_202_323)
    );
}

#[test]
fn binary_json_with_opaque_values_reads_as_mysql_prints_them() {
    let events = read("json-opaque.binlog");
    let docs: Vec<String> = rows(&events)
        .iter()
        .flat_map(|r| r.after().unwrap_or_default().iter())
        .filter_map(|v| match v {
            Value::Json(j) => Some(j.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        docs,
        [
            r#"{"a":"base64:type15:VQ=="}"#, // a VARCHAR opaque: MySQL's own base64 form
            r#"{"b":"2012-03-18"}"#,
            r#"{"c":"2012-03-18 11:30:45.000000"}"#,
            r#"{"c":"87:31:46.654321"}"#,
            r#"{"d":"123.456"}"#, // DECIMAL: exact, as a string
            r#"{"e":"9.00"}"#,
            r#"{"e":[0,1,true,false]}"#,
            r#"{"e":null}"#,
        ]
    );
}

#[test]
fn partial_json_updates_are_read() {
    // This file was written with a MINIMAL row image: the before image has no document to
    // apply the changes to, so they are shown as they are (live capture refuses partial
    // images first and applies the changes to the FULL before image: unit-tested in
    // `json_diff`).
    let events = read("json.binlog.000001");
    let afters: Vec<String> = rows(&events)
        .iter()
        .filter(|r| r.before().is_some() && r.after().is_some())
        .filter_map(|r| match &r.after().unwrap()[1] {
            Value::Json(j) => Some(j.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(afters.len(), 12);
    assert_eq!(afters[0], r#"{"age":25,"data":"xxxxxxxxxx","name":"Joe"}"#);
    assert_eq!(
        afters[6],
        r#"{"partial_json_changes":[{"op":"replace","path":"$.age","value":26}]}"#
    );
}

/// The events of a binlog file as the archive's raw dump gives them to its piece writer;
/// `None` for a file whose positions are not its own offsets (a relay log: the positions are
/// its source's), which no server sends a replica.
fn raw_events(bytes: &[u8], file: &BinlogFile) -> Option<Vec<RawEvent>> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        let end = u32::from_le_bytes(bytes[at + 13..at + 17].try_into().unwrap());
        let kind = bytes[at + 4];
        if size < 19 || at + size > bytes.len() {
            break;
        }
        if end != 0 && end as usize != at + size {
            return None;
        }
        out.push(RawEvent {
            file: file.clone(),
            end: u64::from(end),
            bytes: bytes[at..at + size].to_vec(),
            format: kind == 0x0f,
            rotates: kind == 0x04,
        });
        at += size;
    }
    Some(out)
}

/// Every fixture Ferry reads, cut into archive pieces (small ones: many per file, most of
/// them starting mid-file with a copy of the format description) and replayed from the start
/// and from a transaction in the middle, decodes to the events the whole file gives from there.
#[test]
fn archived_pieces_replay_as_the_file_reads() {
    let (mut replayed, mut from_middle) = (0, 0);
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") || REFUSED.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let whole = read(&name);
        let file: BinlogFile = name
            .parse()
            .unwrap_or_else(|_| "fixture.000001".parse().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        let Some(raw) = raw_events(&bytes, &file) else {
            continue;
        };
        let mut writer = PieceWriter::new(file.clone(), 4, 300);
        let mut pieces = Vec::new();
        for event in raw {
            pieces.extend(writer.push(event).unwrap());
        }
        pieces.extend(writer.flush());
        // The pieces chain: each starts where the one before ended.
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{name}");
        }
        // Every transaction after the first: where a checkpoint may resume.
        let mut middle: Vec<u64> = whole
            .iter()
            .filter(|e| matches!(e.event, SourceEvent::Begin { .. }))
            .map(|e| e.group_start)
            .skip(1)
            .collect();
        middle.dedup();
        for from in std::iter::once(4).chain(middle) {
            let decoder = EventDecoder::new(Charsets::builtin(), Some(file.clone()), None)
                .allow_partial_images();
            let mut replay = Replay::new(decoder, file.clone(), from);
            let mut events = Vec::new();
            for piece in pieces.iter().filter(|p| p.end > from) {
                replay
                    .piece(&piece.file, piece.start, &piece.bytes, &mut events)
                    .unwrap_or_else(|e| panic!("{name} from {from}: {e}"));
            }
            let expected: Vec<&ReadEvent> =
                whole.iter().filter(|e| e.event_offset >= from).collect();
            assert_eq!(events.len(), expected.len(), "{name} from {from}");
            // From the middle, the file's own CREATE TABLE statements before are not seen
            // (live, the schema history gives them): the values must be the same.
            let values = |e: &ReadEvent| match &e.event {
                SourceEvent::Rows(r) => format!(
                    "{:?}",
                    r.iter()
                        .map(|c| (c.operation(), c.before(), c.after()))
                        .collect::<Vec<_>>()
                ),
                other if from == 4 => format!("{other:?}"),
                SourceEvent::Ddl { statement, .. } => statement.clone(),
                other => format!("{other:?}"),
            };
            for (got, want) in events.iter().zip(&expected) {
                if from == 4 {
                    assert_eq!(got.event, want.event, "{name}");
                }
                assert_eq!(values(got), values(want), "{name} from {from}");
                assert_eq!(
                    got.position.offset(),
                    want.position.offset(),
                    "{name} from {from}"
                );
                if from == 4 {
                    assert_eq!(got.position, want.position, "{name}");
                }
            }
            replayed += 1;
            from_middle += usize::from(from > 4);
        }
    }
    assert!(replayed >= 25, "only {replayed} replays");
    assert!(from_middle >= 10, "only {from_middle} from the middle");
}
