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

use ferry_testkit::json::Json;
use ferry_testkit::{Step, TestContext, progressing};
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
        "delivery": {"format": format},
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
        // Row and DDL records alike (the tasks write no transaction or heartbeat records).
        rows += s.expected.len();
    }
    let records = progressing(
        &format!("{rows} records in {topic}"),
        Duration::from_secs(90),
        || async {
            let records = ctx.topic_records(&topic)?;
            let have = records.len();
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
    for r in &records {
        let text = String::from_utf8_lossy(&r.payload);
        let Ok(record) = Json::parse(&text) else {
            continue;
        };
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
    a_consumer_applies_the_stream_with(format, script, tags, 23).await;
}

/// [`a_consumer_applies_the_stream`] where the consumer shows DATETIME values with
/// `datetime_len` characters (23: milliseconds; 26: microseconds).
async fn a_consumer_applies_the_stream_with(
    format: &str,
    script: &str,
    tags: fn(&str) -> String,
    datetime_len: usize,
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
        "delivery": {"format": format},
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
    let spec = json!({"bootstrap": ctx.env().kafka_bootstrap, "topic": topic,
                      "records": changes, "timeout_s": 120});
    let clients = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients");
    // DTS's demo reads with its own pinned libraries and the published schema.
    let (python, schema) = if format == "dts-avro" {
        let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/ferry-kafka/src/format/dts_record_compatible.avsc");
        (ctx.env().dts_python.clone(), Some(schema))
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
    a_consumer_applies_the_stream("canal-json", "canal_apply.py", |set| {
        let mask: u64 = set
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| 1u64 << (u32::from(m.as_bytes()[0]) - u32::from(b'a')))
            .sum();
        mask.to_string()
    })
    .await;
}

/// DTS's users read its Avro records as its Python demo does (fastavro's `schemaless_reader`
/// with the published schema, the demo's pinned libraries), key rows by `pk_uk_info`; SET
/// values are TextObjects of the member names.
#[tokio::test(flavor = "multi_thread")]
async fn a_dts_consumer_decodes_with_the_published_schema_and_ends_with_the_source_rows() {
    a_consumer_applies_the_stream_with("dts-avro", "dts_apply.py", str::to_owned, 26).await;
}
