//! Exact decoding, end to end: rows of every MariaDB column type written by the stack's server,
//! read back from its binlog by Ferry's reader, compared value by value with what was written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use ferry_domain::change::{Operation, RowChange};
use ferry_domain::position::BinlogFile;
use ferry_domain::value::{
    Bits, Date, DateTime, Decimal, EnumValue, SetValue, Time, Timestamp, Value,
};
use ferry_mysql::ConnectParams;
use ferry_mysql::binlog::{BinlogReader, RowParser, SourceEvent, Start};
use ferry_mysql::file::{count_rows, decode_bytes, row_counts};
use ferry_testkit::TestContext;
use mysql_async::prelude::Queryable;

const TABLE: &str = "CREATE TABLE all_types (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30),
    b1 BIT(1), b12 BIT(12), b64 BIT(64),
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL,
    tm TIME, tm6 TIME(6), y YEAR,
    c CHAR(4), vc VARCHAR(20), vcl VARCHAR(20) CHARACTER SET latin1, tx TEXT, bl BLOB,
    bn BINARY(4), vb VARBINARY(8),
    e ENUM('small','medium','large'), st SET('red','green','blue'),
    j JSON, g POINT, n INT NULL
) DEFAULT CHARSET = utf8mb4";

const ROW_1: &str = "INSERT INTO all_types VALUES (
    1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615, 1.5, -2.25, -12345678.90,
    0.000000000000000000000000000001,
    b'1', b'101010101010', b'1111111111111111111111111111111111111111111111111111111111111111',
    '0000-00-00', '0000-00-00 00:00:00', '2024-02-29 23:59:58.123456',
    '1970-01-01 00:00:01', '2024-02-29 13:14:15.678',
    '-838:59:59', '12:34:56.000001', 0,
    'ab', 'ünï 🚀', 'café€', 'text', X'00FF10', X'01020304', X'',
    'medium', 'red,blue', '{\"a\": [1, 2.5, null]}', ST_GeomFromText('POINT(1 2)'), NULL)";

const ROW_2: &str =
    "INSERT INTO all_types (id, mi, y, e, st, dt) VALUES (2, -1, 2155, 'large', '', '2023-12-31')";

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::try_from(s.to_owned()).unwrap())
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn expected_row_1(geometry: Vec<u8>) -> Vec<Value> {
    use Value::*;
    let zero = ferry_domain::value::Date {
        year: 0,
        month: 0,
        day: 0,
    };
    vec![
        Int(1),
        Int(-128),
        UInt(255),
        Int(-32768),
        UInt(65535),
        Int(-8_388_608),
        UInt(16_777_215),
        Int(-2_147_483_648),
        UInt(4_294_967_295),
        Int(i64::MIN),
        UInt(u64::MAX),
        Float(1.5),
        Double(-2.25),
        dec("-12345678.90"),
        dec("0.000000000000000000000000000001"),
        Bit(Bits {
            width: 1,
            bytes: vec![1],
        }),
        Bit(Bits {
            width: 12,
            bytes: vec![0x0a, 0xaa],
        }),
        Bit(Bits {
            width: 64,
            bytes: vec![0xff; 8],
        }),
        Date(zero),
        DateTime(ferry_domain::value::DateTime {
            date: zero,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }),
        DateTime(ferry_domain::value::DateTime {
            date: ferry_domain::value::Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 23,
            minute: 59,
            second: 58,
            micros: 123_456,
        }),
        Timestamp(ferry_domain::value::Timestamp {
            seconds: 1,
            micros: 0,
        }),
        Timestamp(ferry_domain::value::Timestamp {
            seconds: 1_709_212_455,
            micros: 678_000,
        }),
        Time(ferry_domain::value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 0,
        }),
        Time(ferry_domain::value::Time {
            negative: false,
            hours: 12,
            minutes: 34,
            seconds: 56,
            micros: 1,
        }),
        Year(0),
        s("ab"),
        s("ünï 🚀"),
        s("café€"),
        s("text"),
        Bytes(vec![0x00, 0xff, 0x10]),
        Bytes(vec![1, 2, 3, 4]),
        Bytes(vec![]),
        Enum(EnumValue {
            index: 2,
            name: "medium".into(),
        }),
        Set(SetValue {
            mask: 0b101,
            names: vec!["red".into(), "blue".into()],
        }),
        // MariaDB's JSON is LONGTEXT: the text as written.
        s("{\"a\": [1, 2.5, null]}"),
        Geometry(geometry),
        Null,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_column_type_decodes_exactly() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut c = ctx.mysql().await.unwrap();
    c.query_drop(TABLE).await.unwrap();
    c.query_drop("SET time_zone = '+00:00', sql_mode = ''")
        .await
        .unwrap();
    let (file, offset): (String, u64) = {
        let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get("File").unwrap(), row.get("Position").unwrap())
    };
    c.query_drop(ROW_1).await.unwrap();
    c.query_drop(ROW_2).await.unwrap();
    c.query_drop("UPDATE all_types SET mi = 5, vc = NULL WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("DELETE FROM all_types WHERE id = 1")
        .await
        .unwrap();
    let (end_file, end): (String, u64) = {
        let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get("File").unwrap(), row.get("Position").unwrap())
    };
    let geometry: Vec<u8> = c
        .query_first("SELECT ST_AsBinary(ST_GeomFromText('POINT(1 2)'))")
        .await
        .unwrap()
        .unwrap();
    // MySQL's internal geometry: a 4-byte SRID (0) and the WKB.
    let stored_geometry = [vec![0, 0, 0, 0], geometry].concat();

    let env = ctx.env();
    let params = ConnectParams {
        host: env.mysql_host.clone(),
        port: env.mysql_port,
        user: env.mysql_capture_user.clone(),
        password: env.mysql_capture_password.clone(),
        database: None,
    };
    let server_id = unique_server_id();
    let start = Start::File {
        file: file.parse::<BinlogFile>().unwrap(),
        offset,
    };
    let db = ctx.mysql_database().to_owned();
    let changes = read_changes(&params, server_id, &start, &db, RowParser::Prepared).await;
    // The prepared row reader reads exactly what mysql_common's row parser (the reference)
    // reads, for every column type MariaDB writes.
    let reference = read_changes(&params, server_id, &start, &db, RowParser::Reference).await;
    assert_eq!(
        changes, reference,
        "prepared and reference row parsers agree"
    );

    // Rows a task does not carry are read past by their values' widths, not parsed: on the
    // server's own binlog file (its format description, then these writes: whole events), the
    // same rows as reading them.
    if end_file == file {
        let basename: (String, String) = c
            .query_first("SHOW VARIABLES LIKE 'log_bin_basename'")
            .await
            .unwrap()
            .unwrap();
        let dir = std::path::Path::new(&basename.1).parent().unwrap();
        let whole = std::fs::read(dir.join(&file)).unwrap();
        // The magic number (4 bytes), then the format description event (its size at 9..13).
        let description = 4 + u32::from_le_bytes(whole[13..17].try_into().unwrap()) as usize;
        let (offset, end) = (
            usize::try_from(offset).unwrap(),
            usize::try_from(end).unwrap(),
        );
        let bytes = [&whole[..description], &whole[offset..end]].concat();
        let read = decode_bytes(&bytes, file.parse().ok()).unwrap();
        let counted = count_rows(&bytes, file.parse().ok()).unwrap();
        assert_eq!(counted, row_counts(&read), "skipped rows are the rows read");
        assert!(counted.iter().sum::<u32>() >= 4, "{counted:?}");
    }

    let ops: Vec<Operation> = changes.iter().map(RowChange::operation).collect();
    assert_eq!(
        ops,
        [
            Operation::Insert,
            Operation::Insert,
            Operation::Update,
            Operation::Delete
        ]
    );
    let schema = changes[0].table();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["id", "ti", "tiu", "si"],
        "names from the FULL row metadata"
    );
    assert_eq!(schema.key(), [0], "primary key from the row metadata");

    let expected = expected_row_1(stored_geometry);
    let row_1 = changes[0].after().unwrap();
    for (i, (got, want)) in row_1.iter().zip(&expected).enumerate() {
        assert_eq!(
            got,
            want,
            "column {} ({})",
            names[i],
            schema.columns()[i].source_type
        );
    }
    assert_eq!(row_1.len(), expected.len());
    assert_eq!(
        changes[3].before().unwrap(),
        &expected[..],
        "the delete's before image is row 1"
    );

    let row_2 = changes[1].after().unwrap();
    let col = |n: &str| schema.column_index(n).unwrap();
    assert_eq!(
        row_2[col("mi")],
        Value::Int(-1),
        "MEDIUMINT -1 is sign-extended"
    );
    assert_eq!(row_2[col("y")], Value::Year(2155));
    assert_eq!(
        row_2[col("e")],
        Value::Enum(EnumValue {
            index: 3,
            name: "large".into()
        })
    );
    assert_eq!(
        row_2[col("st")],
        Value::Set(SetValue {
            mask: 0,
            names: vec![]
        })
    );
    assert_eq!(
        row_2[col("dt")],
        Value::Date(Date {
            year: 2023,
            month: 12,
            day: 31
        })
    );
    assert_eq!(row_2[col("ts")], Value::Null);

    let (before, after) = (changes[2].before().unwrap(), changes[2].after().unwrap());
    assert_eq!(before[col("mi")], Value::Int(-1));
    assert_eq!(after[col("mi")], Value::Int(5));
    assert_eq!(after[col("vc")], Value::Null);
    let _ = (
        DateTime {
            date: Date {
                year: 0,
                month: 0,
                day: 0,
            },
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        },
        Timestamp {
            seconds: 0,
            micros: 0,
        },
        Time {
            negative: false,
            hours: 0,
            minutes: 0,
            seconds: 0,
            micros: 0,
        },
    );
}

/// Our table's changes (other tests write to the same server) from `start` up to the delete's
/// commit, with rows parsed by `parser`.
async fn read_changes(
    params: &ConnectParams,
    server_id: u32,
    start: &Start,
    db: &str,
    parser: RowParser,
) -> Vec<RowChange> {
    let mut reader = BinlogReader::start(params, server_id, start.clone(), Duration::from_secs(1))
        .await
        .unwrap()
        .with_row_parser(parser);
    let mut changes: Vec<RowChange> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; got {} changes",
            changes.len()
        );
        let Ok(next) = tokio::time::timeout(Duration::from_secs(2), reader.next()).await else {
            continue;
        };
        let e = next.unwrap().expect("the stream ended");
        match e.event {
            SourceEvent::Rows(rows) => {
                changes.extend(rows.into_iter().filter(|r| r.table().name().database == db))
            }
            SourceEvent::Commit { .. }
                if changes.iter().any(|c| c.operation() == Operation::Delete) =>
            {
                break;
            }
            _ => {}
        }
    }
    reader.close().await.ok();
    changes
}

/// A replica server id no other test's reader uses at the same time (MariaDB drops a replica
/// connection when another connects with the same id).
fn unique_server_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    100_000 + (std::process::id() % 1000) * 1000 + nanos % 1000
}

/// A reader that stops reading for longer than the server's `net_write_timeout` (its
/// destination slow, its read-ahead full) is not cut off by the server: the dump's session
/// waits an hour (`ferry_mysql::binlog`). Without it the server closes the connection once a
/// write has waited its timeout — every minute by default, which under load kept a task
/// restarting from the same checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_reading_a_while_is_not_cut_off() {
    let ctx = TestContext::spawn().await.unwrap();
    // A server that gives up on a write after 2 s (by default).
    let server =
        ferry_testkit::ThrowawayMariaDb::capture_source(ctx.env(), &["--net-write-timeout=2"])
            .unwrap();
    server.create_shop().unwrap();
    server
        .sql("CREATE TABLE shop.blobs (id INT PRIMARY KEY, body LONGBLOB)")
        .unwrap();
    let file: BinlogFile = server
        .binlog_files()
        .unwrap()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    // 24 MB of binlog: more than the socket buffers on both sides hold, so the server's
    // writes block while the reader does not read.
    let mut db = server.shop_writer().await.unwrap();
    for i in 0..400 {
        db.query_drop(format!(
            "INSERT INTO blobs VALUES ({i}, REPEAT('x', 60000))"
        ))
        .await
        .unwrap();
    }
    let params = ConnectParams {
        host: "127.0.0.1".into(),
        port: server.port(),
        user: "ferry_capture".into(),
        password: "capture-Secret1".into(),
        database: None,
    };
    let start = Start::File { file, offset: 4 };
    let mut reader =
        BinlogReader::start(&params, unique_server_id(), start, Duration::from_secs(1))
            .await
            .unwrap();
    reader.next().await.unwrap().expect("a first event");
    // Stalled three times the server's timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut rows = 0;
    while rows < 400 {
        let event = tokio::time::timeout(Duration::from_secs(60), reader.next())
            .await
            .expect("the stream goes on")
            .expect("the server did not cut the stalled reader off")
            .expect("the stream ended");
        if let SourceEvent::Rows(r) = event.event {
            rows += r.len();
        }
    }
    reader.close().await.ok();
}
