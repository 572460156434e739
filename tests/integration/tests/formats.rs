//! Wire-format scenarios: every folder of `tests/scenarios/formats/` (setup SQL, workload SQL,
//! and per format the records the tool the format is named after writes for it) runs against
//! the stack's MariaDB through a real change-tracking task per format, and each scenario's
//! tables must hold exactly its expected records, in order, value for value: keys in the same
//! order, numbers with the same digits. The fields a tool's own test runner leaves out (they
//! hold times and server numbers) are left out here too; `tests/scenarios/formats/README.md`
//! says which, where the facts come from, and which of the tool's fixtures do not apply.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_domain::change::split_part;
use ferry_domain::task_config::Values;
use ferry_testkit::json::Json;
use ferry_testkit::{Step, TestContext, TopicRecord, progressing};
use mysql_async::prelude::Queryable;
use serde_json::json;

/// One scenario folder.
struct Scenario {
    name: String,
    setup: Vec<String>,
    workload: Vec<String>,
    /// The tables the scenario creates: its records are theirs.
    tables: Vec<String>,
    /// The expected records, `$db` replaced.
    expected: Vec<Json>,
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/formats")
}

/// The statements of a SQL file: separated by `;` at a line's end; `--` lines are comments.
fn statements(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The table a `CREATE TABLE` statement creates.
fn created_table(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let at = words
        .windows(2)
        .position(|w| w[0].eq_ignore_ascii_case("create") && w[1].eq_ignore_ascii_case("table"))?;
    words
        .get(at + 2)
        .map(|t| t.trim_matches('`').trim_end_matches('(').to_owned())
}

/// Every scenario with expected records for `format`, database name `db`.
fn load(format: &str, db: &str) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let expected_path = dir.join(format!("{format}.jsonl"));
        if !expected_path.exists() {
            continue;
        }
        let setup = statements(&dir.join("setup.sql"));
        let workload = statements(&dir.join("workload.sql"));
        let tables = setup
            .iter()
            .chain(&workload)
            .filter_map(|s| created_table(s))
            .collect();
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                Json::parse(&l.replace("$db", db))
                    .unwrap_or_else(|e| panic!("{}: {e}: {l}", expected_path.display()))
            })
            .collect();
        out.push(Scenario {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            setup,
            workload,
            tables,
            expected,
        });
    }
    out
}

/// Runs every scenario of `format` through one task; `ignored` are the record fields left
/// out of the comparison; `table_of` finds a record's table.
async fn run(format: &str, ignored: &[&str], table_of: fn(&Json) -> Option<String>) {
    run_decoded(format, ignored, table_of, json_record).await;
}

/// [`run`] for records that `decode` turns into JSON (Avro).
async fn run_decoded(
    format: &str,
    ignored: &[&str],
    table_of: fn(&Json) -> Option<String>,
    decode: fn(&TopicRecord) -> Option<Json>,
) {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let db = ctx.mysql_database().to_owned();
    let scenarios = load(format, &db);
    assert!(
        !scenarios.is_empty(),
        "no scenario has expected {format} records"
    );
    let mut conn = ctx.mysql().await.unwrap();
    for s in &scenarios {
        for statement in &s.setup {
            conn.query_drop(statement)
                .await
                .unwrap_or_else(|e| panic!("{} setup `{statement}`: {e}", s.name));
        }
    }
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": db}]},
        "delivery": {"format": format, "values": "compatible"},
    });
    let (id, topic, worker) = api.running_task(config).await.unwrap();
    let mut rows = 0;
    for s in &scenarios {
        // Each workload in a session of its own (its SET statements stay in it), in UTC as
        // the tools' own test servers run.
        let mut conn = ctx.mysql().await.unwrap();
        conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
            .await
            .unwrap();
        for statement in &s.workload {
            conn.query_drop(statement)
                .await
                .unwrap_or_else(|e| panic!("{} workload `{statement}`: {e}", s.name));
        }
        // Row and DDL records of the scenario's tables alike.
        rows += s.expected.len();
    }
    let tables: std::collections::HashSet<&String> =
        scenarios.iter().flat_map(|s| &s.tables).collect();
    let records = progressing(
        &format!("{rows} records in {topic}"),
        Duration::from_secs(90),
        || async {
            let records: Vec<Json> = ctx
                .topic_records(&topic)?
                .iter()
                .filter_map(decode)
                // The topic's name (in Debezium's schema names and `source.name`) varies by
                // test: `$topic` in the expected records.
                .filter_map(|r| Json::parse(&r.to_string().replace(&topic, "$topic")).ok())
                .collect();
            let have = records
                .iter()
                .filter(|r| table_of(r).is_some_and(|t| tables.contains(&t)))
                .count();
            Ok(if have >= rows {
                Step::Done(records)
            } else {
                Step::At(have.to_string())
            })
        },
    )
    .await
    .unwrap();
    worker.stop().await.unwrap();
    let _ = id;

    let mut by_table: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for record in records {
        if let Some(table) = table_of(&record) {
            by_table.entry(table).or_default().push(record);
        }
    }
    let mut failures = Vec::new();
    for s in &scenarios {
        let actual: Vec<Json> = s
            .tables
            .iter()
            .flat_map(|t| by_table.get(t).cloned().unwrap_or_default())
            .map(|r| r.without(ignored))
            .collect();
        let expected: Vec<Json> = s
            .expected
            .iter()
            .map(|r| r.clone().without(ignored))
            .collect();
        if actual != expected {
            let show = |v: &[Json]| {
                v.iter()
                    .map(|r| format!("    {r}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            failures.push(format!(
                "{}:\n  expected\n{}\n  got\n{}",
                s.name,
                show(&expected),
                show(&actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {format} scenarios differ:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}

/// A JSON record; a tombstone (a key and no value) as `{"tombstone": <key>}`.
fn json_record(r: &TopicRecord) -> Option<Json> {
    if r.is_tombstone() {
        let key = String::from_utf8_lossy(r.row_key.as_deref()?).into_owned();
        return Json::parse(&format!("{{\"tombstone\":{key}}}")).ok();
    }
    Json::parse(&String::from_utf8_lossy(&r.payload)).ok()
}

fn top_level_table(record: &Json) -> Option<String> {
    record.get("table")?.as_str().map(str::to_owned)
}

/// Maxwell's scenarios, compared as Maxwell's own test runner does, without `ts` and `xid`
/// (it also leaves out `xoffset` and `commit`; these are compared here).
#[tokio::test(flavor = "multi_thread")]
async fn maxwell_json_writes_what_maxwell_writes() {
    run("maxwell-json", &["ts", "xid"], top_level_table).await;
}

/// Canal's scenarios, without the fields that hold times and stream numbers (`es`, `ts`, `id`)
/// and the GTID set.
#[tokio::test(flavor = "multi_thread")]
async fn canal_json_writes_what_canal_writes() {
    run("canal-json", &["es", "ts", "id", "gtid"], top_level_table).await;
}

/// A row of `accounts` as text: id, owner, balance, opened, tags, note.
type AccountRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A consumer that is not Ferry's (`tests/clients/<script>`: kafka-python, rows identified the
/// way the format's users identify them, applied to a SQLite table) reads a topic of `format`
/// with inserts, updates (one changing the primary key), deletes and multi-statement
/// transactions, and ends with exactly the source's rows. `tags` renders a SET value (members
/// comma-separated) the way the format writes it.
async fn a_consumer_applies_the_stream(format: &str, script: &str, tags: fn(&str) -> String) {
    a_consumer_applies_the_stream_with(format, script, tags, 23, json!({}), json!({})).await;
}

/// [`a_consumer_applies_the_stream`] where the consumer shows DATETIME values with
/// `datetime_len` characters (23: milliseconds; 26: microseconds), is given `spec` besides
/// the topic, and the task's `delivery` has `delivery` besides the format.
async fn a_consumer_applies_the_stream_with(
    format: &str,
    script: &str,
    tags: fn(&str) -> String,
    datetime_len: usize,
    spec: serde_json::Value,
    delivery: serde_json::Value,
) {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let db = ctx.mysql_database().to_owned();
    let mut conn = ctx.mysql().await.unwrap();
    conn.query_drop(
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(20), balance DECIMAL(12,2), \
         opened DATETIME(3), tags SET('a','b','c'), note TEXT)",
    )
    .await
    .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": db, "tables": [{"name": "accounts"}]}]},
        "delivery": merged(json!({"format": format, "values": "compatible"}), &delivery),
    });
    let (_id, topic, worker) = api.running_task(config).await.unwrap();
    let workload = [
        "INSERT INTO accounts VALUES (1, 'ann', 10.50, '2026-01-01 10:00:00.125', 'a,c', 'x'), \
         (2, 'bob', 0.00, '2026-01-02 00:00:00', '', NULL), (3, 'cy', -3.25, NULL, 'b', 'üñï')",
        "UPDATE accounts SET balance = balance + 1, tags = 'a,b' WHERE id = 1",
        "UPDATE accounts SET id = 20, owner = 'bobby' WHERE id = 2",
        "BEGIN",
        "INSERT INTO accounts VALUES (4, 'dee', 99.99, '2026-03-01 12:34:56.789', 'c', 'y')",
        "DELETE FROM accounts WHERE id = 3",
        "UPDATE accounts SET note = 'changed' WHERE id IN (1, 4)",
        "COMMIT",
        "INSERT INTO accounts VALUES (5, 'eve', 5.00, NULL, NULL, NULL)",
        "DELETE FROM accounts WHERE id = 5",
    ];
    let mut changes = 0u64;
    for statement in workload {
        conn.query_drop(statement).await.unwrap();
        changes += conn.affected_rows();
    }
    // The worker's pace depends on the machine: wait while the topic grows, then give the
    // consumer a topic that already holds every change. A change is one record, or several
    // (Debezium writes a key change as a delete and a create, each delete followed by a
    // tombstone): its first record's idempotency key has no part (`#n`). The consumer applies
    // every record that is not a tombstone.
    let rows = usize::try_from(changes).unwrap();
    let records = progressing(
        &format!("{rows} rows in {topic}"),
        Duration::from_secs(90),
        || async {
            let records = ctx.topic_records(&topic)?;
            let row_records = || records.iter().filter(|r| r.row_key.is_some());
            let have = row_records().filter(|r| split_part(&r.key).1 == 0).count();
            Ok(if have >= rows {
                Step::Done(row_records().filter(|r| !r.is_tombstone()).count())
            } else {
                Step::At(have.to_string())
            })
        },
    )
    .await
    .unwrap();
    let spec = merged(
        json!({"bootstrap": ctx.env().kafka_bootstrap, "topic": topic,
               "records": records, "timeout_s": 120, "datetime_len": datetime_len}),
        &spec,
    );
    let clients = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients");
    // DTS's demo reads with its own pinned libraries and the published schema.
    let (python, schema) = if format == "dts-avro" {
        let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/ferry-kafka/src/format/dts_record_compatible.avsc");
        (ctx.env().dts_python.clone(), Some(schema))
    } else if script == "flink_apply.py" {
        (ctx.env().flink_python.clone(), None)
    } else {
        (ctx.env().kafka_python.clone(), None)
    };
    let out = tokio::process::Command::new(&python)
        .arg(clients.join(script))
        .args(schema)
        .arg(spec.to_string())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    worker.stop().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the consumer failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut applied: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["row"].clone())
        .collect();
    applied.sort_by_key(|r| r["id"].as_str().unwrap().parse::<i64>().unwrap());

    let rows: Vec<AccountRow> = conn
        .query(
            format!("SELECT id, owner, CAST(balance AS CHAR), LEFT(DATE_FORMAT(opened, '%Y-%m-%d %H:%i:%s.%f'), {datetime_len}), \
             tags, note FROM accounts ORDER BY id"),
        )
        .await
        .unwrap();
    let source: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, owner, balance, opened, set, note)| {
            json!({"id": id.to_string(), "owner": owner, "balance": balance,
                   "opened": opened, "tags": set.map(|t| tags(&t)), "note": note})
        })
        .collect();
    assert_eq!(applied, source, "the consumer's table is the source's");
    assert_eq!(source.len(), 3, "rows 1, 4 and 20 remain");
}

/// Maxwell's users key rows by its hash key (`pk.<column>`); SET values are JSON arrays.
#[tokio::test(flavor = "multi_thread")]
async fn a_maxwell_consumer_applies_the_stream_and_ends_with_the_source_rows() {
    a_consumer_applies_the_stream("maxwell-json", "maxwell_apply.py", |set| {
        let members: Vec<&str> = set.split(',').filter(|m| !m.is_empty()).collect();
        serde_json::to_string(&members).unwrap()
    })
    .await;
}

/// Canal's users key rows by `pkNames`; SET values are their bitmask (`a,c` → `5`).
#[tokio::test(flavor = "multi_thread")]
async fn a_canal_consumer_applies_the_stream_and_ends_with_the_source_rows() {
    a_consumer_applies_the_stream("canal-json", "canal_apply.py", canal_set_mask).await;
}

/// Canal's text of a SET value of `accounts.tags` (`SET('a','b','c')`): its bitmask.
fn canal_set_mask(set: &str) -> String {
    let mask: u64 = set
        .split(',')
        .filter(|m| !m.is_empty())
        .map(|m| 1u64 << (u32::from(m.as_bytes()[0]) - u32::from(b'a')))
        .sum();
    mask.to_string()
}

/// DTS's users read its Avro records as its Python demo does (fastavro's `schemaless_reader`
/// with the published schema, the demo's pinned libraries), key rows by `pk_uk_info`; SET
/// values are TextObjects of the member names.
#[tokio::test(flavor = "multi_thread")]
async fn a_dts_consumer_decodes_with_the_published_schema_and_ends_with_the_source_rows() {
    a_consumer_applies_the_stream_with(
        "dts-avro",
        "dts_apply.py",
        str::to_owned,
        26,
        json!({}),
        json!({}),
    )
    .await;
}

/// A DTS Avro record as JSON with its fields in schema order, for the scenario runner: union
/// branches as their values, enums as their symbols, bytes as hex, `tags` kept to
/// `pk_uk_info` (the others hold times and server numbers).
fn dts_record_json(record: &TopicRecord) -> Option<Json> {
    use apache_avro::types::Value as Avro;
    let payload = &record.payload;
    fn convert(v: &Avro) -> Json {
        match v {
            Avro::Null => Json::Null,
            Avro::Boolean(b) => Json::Bool(*b),
            Avro::Int(i) => Json::Number(i.to_string()),
            Avro::Long(i) => Json::Number(i.to_string()),
            Avro::Double(d) => Json::Number(format!("{d:?}")),
            Avro::String(s) | Avro::Enum(_, s) => Json::String(s.clone()),
            Avro::Bytes(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            Avro::Union(_, inner) => convert(inner),
            Avro::Array(items) => Json::Array(items.iter().map(convert).collect()),
            Avro::Map(m) => {
                let mut members: Vec<(String, Json)> =
                    m.iter().map(|(k, v)| (k.clone(), convert(v))).collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(members)
            }
            Avro::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            ("tags", Avro::Map(m)) => Json::Object(
                                m.get("pk_uk_info")
                                    .map(|p| ("pk_uk_info".to_owned(), convert(p)))
                                    .into_iter()
                                    .collect(),
                            ),
                            _ => convert(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => Json::String(format!("{other:?}")),
        }
    }
    let schema = ferry_kafka::format::dts_avro::schema_for(Values::Compatible).ok()?;
    let datum = apache_avro::from_avro_datum(schema, &mut &payload[..], None).ok()?;
    Some(convert(&datum))
}

/// A DTS record's table: the table part of `objectName` (`db.table`), or the database of a DDL
/// record, which the scenarios leave out (DTS's DDL records name no table).
fn dts_table(record: &Json) -> Option<String> {
    let name = record.get("objectName")?.as_str()?;
    name.split_once('.').map(|(_, t)| t.to_owned())
}

/// DTS's scenarios, read as DTS's own decoders read them (the published schema), without the
/// fields that hold times, stream numbers and positions.
#[tokio::test(flavor = "multi_thread")]
async fn dts_avro_writes_what_dts_writes() {
    run_decoded(
        "dts-avro",
        &[
            "id",
            "sourceTimestamp",
            "sourcePosition",
            "safeSourcePosition",
            "bornTimestamp",
            "source",
        ],
        dts_table,
        dts_record_json,
    )
    .await;
}

/// `shared/fixtures/mysql-binlogs` of the workplace: `FERRY_FIXTURES`, or the first ancestor of
/// this crate that has it.
fn mysql_fixture(name: &str) -> PathBuf {
    let dir = std::env::var("FERRY_FIXTURES")
        .map(|d| PathBuf::from(d).join("mysql-binlogs"))
        .ok()
        .or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/fixtures/mysql-binlogs"))
                .find(|d| d.is_dir())
        })
        .expect("the MySQL binlog fixtures (shared/fixtures/mysql-binlogs); set FERRY_FIXTURES");
    dir.join(name)
}

/// What MariaDB cannot write, from MySQL's own binlog files: MySQL's binary JSON, in each
/// format's compatible mapping, is what its tool writes: Maxwell embeds the JSON value, Canal
/// writes MySQL's text (`{"k": v}`), Debezium the compact text (`io.debezium.data.Json`), DTS a
/// `TextObject` of type JSON.
#[test]
fn mysql_json_columns_are_written_as_each_tool_writes_them() {
    use ferry_domain::change::{ChangeEvent, ChangeKind, TransactionRef};
    use ferry_domain::selection::ColumnMask;
    use ferry_domain::task_config::Format;
    use ferry_domain::value::Value;
    use ferry_kafka::format::{Style, encode};
    use ferry_mysql::binlog::SourceEvent;

    let events = ferry_mysql::file::read_file(&mysql_fixture("json.binlog.000001")).unwrap();
    let mut checked = 0;
    for e in events {
        let SourceEvent::Rows(rows) = e.event else {
            continue;
        };
        for change in rows.changes {
            let Some(after) = change.after() else {
                continue;
            };
            let Some(j) = after.iter().position(|v| matches!(v, Value::Json(_))) else {
                continue;
            };
            let Value::Json(text) = &after[j] else {
                unreachable!()
            };
            let document: serde_json::Value = serde_json::from_str(text).unwrap();
            let name = change.table().columns()[j].name.clone();
            let event = ChangeEvent {
                position: std::sync::Arc::new(e.position.clone()),
                event_offset: e.event_offset,
                server_id: e.server_id,
                timestamp: e.timestamp,
                transaction: Some(TransactionRef {
                    id: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1".into(),
                    event_index: 1,
                    carried_index: 0,
                    last: true,
                    event_row: 0,
                }),
                kind: ChangeKind::Row(change),
            };
            let encoded = |format| {
                encode(Style::compatible(format), "t", &event, 1, &ColumnMask::All)
                    .unwrap()
                    .unwrap()
                    .payload
            };
            let maxwell: serde_json::Value =
                serde_json::from_slice(&encoded(Format::MaxwellJson)).unwrap();
            assert_eq!(maxwell["data"][&name], document, "Maxwell embeds the value");
            let canal: serde_json::Value =
                serde_json::from_slice(&encoded(Format::CanalJson)).unwrap();
            let canal_text = canal["data"][0][&name].as_str().unwrap().to_owned();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&canal_text).unwrap(),
                document,
                "Canal writes the text of the same document"
            );
            if document.as_object().is_some_and(|o| o.len() > 1) {
                assert!(canal_text.contains(", "), "MySQL's spacing: {canal_text}");
            }
            let debezium: serde_json::Value =
                serde_json::from_slice(&encoded(Format::DebeziumJson)).unwrap();
            let debezium_text = debezium["payload"]["after"][&name].as_str().unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(debezium_text).unwrap(),
                document,
                "Debezium writes the JSON text"
            );
            let dts = encoded(Format::DtsAvro);
            let schema = ferry_kafka::format::dts_avro::schema_for(
                ferry_domain::task_config::Values::Compatible,
            )
            .unwrap();
            let datum = apache_avro::from_avro_datum(schema, &mut dts.as_slice(), None).unwrap();
            let shown = format!("{datum:?}");
            assert!(
                shown.contains(r#"String("JSON")"#),
                "a TextObject of type JSON: {shown}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} JSON values in the fixture");
}

/// Debezium's users decode each field by its Connect schema (JsonConverter's `schema` part) and
/// key rows by the Kafka key; SET values are `EnumSet` strings.
#[tokio::test(flavor = "multi_thread")]
async fn a_debezium_consumer_decodes_by_the_schema_and_ends_with_the_source_rows() {
    a_consumer_applies_the_stream("debezium-json", "debezium_apply.py", str::to_owned).await;
}

/// `base` with the fields of `extra` (an object) set over it.
fn merged(mut base: serde_json::Value, extra: &serde_json::Value) -> serde_json::Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The Flink SQL columns of the consumer tests' `accounts` table, `opened` and `tags` as each
/// format carries them, and the query that shows them.
fn flink_spec(
    format: &str,
    opened: &str,
    tags: &str,
    options: serde_json::Value,
) -> serde_json::Value {
    let opened_shown = if opened == "BIGINT" {
        // Debezium's DATETIME(3): epoch milliseconds of the wall clock read as UTC.
        "CAST(TO_TIMESTAMP_LTZ(opened, 3) AS TIMESTAMP(3))"
    } else {
        "opened"
    };
    json!({
        "format": format,
        "options": options,
        "columns": format!("id INT, owner STRING, balance DECIMAL(12, 2), opened {opened}, tags {tags}, note STRING"),
        "query": format!("SELECT id, owner, balance, {opened_shown} AS opened, tags, note FROM src"),
    })
}

/// Apache Flink's own `debezium-json` format (PyFlink) reads the topic, schema part included,
/// as a Flink job reads Debezium's; the task writes DECIMAL as strings
/// (`decimal_handling_mode: string`), the setting Flink's format needs for Debezium's decimals.
#[tokio::test(flavor = "multi_thread")]
async fn flink_reads_debezium_json_into_the_source_rows() {
    a_consumer_applies_the_stream_with(
        "debezium-json",
        "flink_apply.py",
        str::to_owned,
        23,
        flink_spec(
            "debezium-json",
            "BIGINT",
            "STRING",
            json!({"debezium-json.schema-include": "true"}),
        ),
        json!({"debezium": {"decimal_handling_mode": "string"}}),
    )
    .await;
}

/// Apache Flink's own `maxwell-json` format reads the topic as a Flink job reads Maxwell's;
/// SET values are Maxwell's JSON arrays.
#[tokio::test(flavor = "multi_thread")]
async fn flink_reads_maxwell_json_into_the_source_rows() {
    a_consumer_applies_the_stream_with(
        "maxwell-json",
        "flink_apply.py",
        |set| {
            let members: Vec<&str> = set.split(',').filter(|m| !m.is_empty()).collect();
            serde_json::to_string(&members).unwrap()
        },
        23,
        flink_spec("maxwell-json", "TIMESTAMP(3)", "ARRAY<STRING>", json!({})),
        json!({}),
    )
    .await;
}

/// Apache Flink's own `canal-json` format reads the topic as a Flink job reads Canal's; SET
/// values are Canal's bitmask text.
#[tokio::test(flavor = "multi_thread")]
async fn flink_reads_canal_json_into_the_source_rows() {
    a_consumer_applies_the_stream_with(
        "canal-json",
        "flink_apply.py",
        canal_set_mask,
        23,
        flink_spec("canal-json", "TIMESTAMP(3)", "STRING", json!({})),
        json!({}),
    )
    .await;
}

/// A Debezium record's table: `payload.source.table`; a tombstone's from its key's schema
/// name (`<topic>.<db>.<table>.Key`).
fn debezium_table(record: &Json) -> Option<String> {
    if let Some(key) = record.get("tombstone") {
        let name = key.get("schema")?.get("name")?.as_str()?;
        let name = name.strip_suffix(".Key")?;
        return name.rsplit_once('.').map(|(_, t)| t.to_owned());
    }
    record
        .get("payload")?
        .get("source")?
        .get("table")?
        .as_str()
        .map(str::to_owned)
}

/// Debezium's scenarios with `values: compatible`, schema part included, without the fields
/// that hold times, server numbers and positions.
#[tokio::test(flavor = "multi_thread")]
async fn debezium_json_writes_what_debezium_writes() {
    run(
        "debezium-json",
        &[
            "payload.ts_ms",
            "payload.ts_us",
            "payload.ts_ns",
            "payload.source.ts_ms",
            "payload.source.ts_us",
            "payload.source.ts_ns",
            "payload.source.server_id",
            "payload.source.gtid",
            "payload.source.file",
            "payload.source.pos",
            "payload.source.version",
        ],
        debezium_table,
    )
    .await;
}
