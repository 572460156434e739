//! Running a verification of a sync task (see `ferry_domain::verify` and
//! `ferry_target::verify`), beside the sync loop, with connections of its own.
//!
//! Each table's target rows are read once into a map by key; the source is then read chunk by
//! chunk (the copy plan's chunks, each in a consistent snapshot) and every row looked up. The
//! two sides are read at slightly different moments: on a task applying changes, a row changed
//! in between shows as a difference. A table with differences is therefore compared a second
//! time once the task has applied everything the source had written when the first pass ended
//! (its checkpoint past the source's position then; at most [`CATCH_UP`] is waited for), and
//! that second pass is the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::AppState;
use ferry_domain::change::ObjectName;
use ferry_domain::id::InstanceId;
use ferry_domain::schema::TableDef;
use ferry_domain::sync::TargetTable;
use ferry_domain::value::Value;
use ferry_domain::verify::{ChunkDiff, MAX_KEYS, TableVerify, VerifyReport, VerifyState};
use ferry_mysql::ConnectParams;
use ferry_mysql::snapshot;
use ferry_target::verify::source_row;
use ferry_target::{Target, TargetParams};

use ferry_domain::schema::SchemaCatalog;

use crate::copy::Copies;
use crate::error::TaskError;
use crate::source::AbortOnDrop;

/// One table to compare: its target form, definition and chunk bounds.
pub(crate) struct VerifyTable {
    pub(crate) name: ObjectName,
    pub(crate) target: TargetTable,
    pub(crate) def: Arc<TableDef>,
    pub(crate) bounds: Vec<Vec<Value>>,
    /// The table's row filter as a condition: the source side compares only the rows that pass.
    pub(crate) filter: Option<String>,
}

/// How long a table with differences waits at least before its second pass.
const RECHECK_AFTER: Duration = Duration::from_secs(3);

/// How long a second pass waits at most for the task to apply what the source had written:
/// a task further behind is compared anyway (its lag shows as differences).
const CATCH_UP: Duration = Duration::from_secs(120);

/// Waits until `instance`'s checkpoint is at or past the source's current position (at most
/// [`CATCH_UP`], and at least [`RECHECK_AFTER`]).
async fn applied_up_to_now(state: &AppState, instance: &InstanceId, source: &ConnectParams) {
    let started = tokio::time::Instant::now();
    tokio::time::sleep(RECHECK_AFTER).await;
    let Ok(now) = crate::source::current_position(source).await else {
        return;
    };
    while started.elapsed() < CATCH_UP {
        match state.store().get_checkpoint(instance).await {
            Ok(Some(c)) if c.position.cmp_file_offset(&now).is_ge() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::info!(instance = %instance, position = %now, "verification: the task did not apply up to the source's position in time; comparing again anyway");
}

async fn compare(
    conn: &mut mysql_async::Conn,
    target: &mut Target,
    t: &VerifyTable,
    postgres: bool,
) -> Result<TableVerify, String> {
    let mut on_target = target
        .target_rows(&t.target)
        .await
        .map_err(|e| e.to_string())?;
    let target_total: u64 = on_target.values().map(|(_, n)| u64::from(*n)).sum();
    let chunks = u32::try_from(t.bounds.len() + 1).unwrap_or(u32::MAX);
    let mut report = TableVerify {
        table: t.name.clone(),
        target: format!("{}.{}", t.target.schema, t.target.name),
        chunks,
        source_rows: 0,
        target_rows: target_total,
        differing_chunks: Vec::new(),
        extra_rows: 0,
        extra_keys: Vec::new(),
        rechecked: false,
    };
    for i in 0..chunks {
        let idx = i as usize;
        let lower = idx
            .checked_sub(1)
            .and_then(|p| t.bounds.get(p))
            .map(Vec::as_slice);
        let upper = t.bounds.get(idx).map(Vec::as_slice);
        let rows = snapshot::read_chunk(conn, &t.name, &t.def, (lower, upper), t.filter.as_deref())
            .await
            .map_err(|e| e.to_string())?
            .rows;
        let mut diff = ChunkDiff {
            chunk: i,
            source_rows: rows.len() as u64,
            target_rows: 0,
            source_checksum: String::new(),
            target_checksum: String::new(),
            missing_rows: 0,
            missing_keys: Vec::new(),
            different_rows: 0,
            different_keys: Vec::new(),
        };
        let (mut source_sum, mut target_sum) = (0u64, 0u64);
        for row in &rows {
            let (key, hash) = source_row(&t.target, row, postgres);
            source_sum = source_sum.wrapping_add(hash);
            let found = match on_target.get_mut(&key) {
                // A keyless table's equal rows share a key (all columns): one is taken per
                // source row.
                Some((h, n)) if *n > 1 => {
                    *n -= 1;
                    Some(*h)
                }
                Some(_) => on_target.remove(&key).map(|(h, _)| h),
                None => None,
            };
            match found {
                Some(h) => {
                    diff.target_rows += 1;
                    target_sum = target_sum.wrapping_add(h);
                    if h != hash {
                        tracing::debug!(table = %t.name, key = %key, source = ?ferry_target::verify::source_texts(&t.target, row, postgres), "a row differs");
                        diff.different_rows += 1;
                        if diff.different_keys.len() < MAX_KEYS {
                            diff.different_keys.push(key);
                        }
                    }
                }
                None => {
                    diff.missing_rows += 1;
                    if diff.missing_keys.len() < MAX_KEYS {
                        diff.missing_keys.push(key);
                    }
                }
            }
        }
        report.source_rows += rows.len() as u64;
        if diff.missing_rows + diff.different_rows > 0 {
            diff.source_checksum = format!("{source_sum:016x}");
            diff.target_checksum = format!("{target_sum:016x}");
            report.differing_chunks.push(diff);
        }
    }
    for (key, (_, n)) in on_target {
        report.extra_rows += u64::from(n);
        if report.extra_keys.len() < MAX_KEYS {
            report.extra_keys.push(key);
        }
    }
    report.extra_keys.sort();
    Ok(report)
}

/// Compares every table and writes the report to the task's verification `id`.
pub(crate) async fn run(
    state: AppState,
    instance: InstanceId,
    id: String,
    source: ConnectParams,
    target: TargetParams,
    tables: Vec<VerifyTable>,
) {
    let postgres = target.engine == ferry_domain::convert::TargetEngine::Postgresql;
    let outcome: Result<VerifyReport, String> = async {
        let mut conn = ferry_mysql::connect(&source).await.map_err(|e| e.message)?;
        snapshot::prepare(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut target = Target::connect(&target).await.map_err(|e| e.to_string())?;
        let mut report = VerifyReport::default();
        for t in &tables {
            let mut table = compare(&mut conn, &mut target, t, postgres).await?;
            if table.differences() > 0 {
                applied_up_to_now(&state, &instance, &source).await;
                table = compare(&mut conn, &mut target, t, postgres).await?;
                table.rechecked = true;
            }
            report.differences += table.differences();
            report.tables.push(table);
        }
        let _ = conn.disconnect().await;
        target.close().await;
        Ok(report)
    }
    .await;
    if let Err(e) = finish(&state, &instance, &id, outcome).await {
        tracing::warn!(instance = %instance, verification = %id, error = %e, "writing the verification report failed");
    }
}

async fn finish(
    state: &AppState,
    instance: &InstanceId,
    id: &str,
    outcome: Result<VerifyReport, String>,
) -> Result<(), TaskError> {
    let Some((mut v, version)) = state.store().get_verification(instance).await? else {
        return Ok(());
    };
    if v.id != id {
        return Ok(());
    }
    v.finished_at = Some(state.now());
    match outcome {
        Ok(report) => {
            tracing::info!(instance = %instance, verification = %id, differences = report.differences, "verification done");
            v.state = VerifyState::Done;
            v.report = Some(report);
        }
        Err(e) => {
            tracing::warn!(instance = %instance, verification = %id, error = %e, "verification failed");
            v.state = VerifyState::Failed;
            v.error = Some(e);
        }
    }
    state
        .store()
        .put_verification(instance, &v, Some(version))
        .await?;
    Ok(())
}
/// Starts the task's pending verification, if there is one, on a task of its own. Called only
/// when no verification of this loop runs.
pub(crate) async fn start_verification(
    state: &AppState,
    instance: &InstanceId,
    params: &ferry_mysql::ConnectParams,
    tparams: &TargetParams,
    tables: &HashMap<ObjectName, TargetTable>,
    copies: &Copies,
    catalog: &SchemaCatalog,
) -> Result<Option<AbortOnDrop>, TaskError> {
    let Some((mut v, version)) = state.store().get_verification(instance).await? else {
        return Ok(None);
    };
    // Pending, or running without a task: this loop runs none, so a running one was left by a
    // loop that ended (a restart, a takeover) before finishing it. It starts again.
    if !matches!(v.state, VerifyState::Pending | VerifyState::Running) {
        return Ok(None);
    }
    if v.state == VerifyState::Running {
        tracing::info!(instance = %instance, verification = %v.id, "a verification left running by an earlier loop starts again");
    }
    v.state = VerifyState::Running;
    match state
        .store()
        .put_verification(instance, &v, Some(version))
        .await
    {
        Ok(_) => {}
        // Another request replaced it meanwhile: seen at the next check.
        Err(ferry_store::StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut tables: Vec<VerifyTable> = tables
        .iter()
        .filter_map(|(name, target)| {
            let def = catalog.get(name)?;
            Some(VerifyTable {
                name: name.clone(),
                target: target.clone(),
                filter: copies.filter_sql(name, def).ok().flatten(),
                def: Arc::new(def.clone()),
                bounds: copies.bounds(name),
            })
        })
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tracing::info!(instance = %instance, verification = %v.id, tables = tables.len(), "verification starting");
    Ok(Some(AbortOnDrop(tokio::spawn(run(
        state.clone(),
        instance.clone(),
        v.id,
        params.clone(),
        tparams.clone(),
        tables,
    )))))
}
