//! `ferry task status`: the task's state and, for a sync task, its full sync per table; with
//! `--watch`, progress bars (indicatif) refreshed until the full sync is done or the task
//! stops. And `ferry task verify`: a sync task's verification report.

use anyhow::Result;
use axum::http::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::api::Api;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn line(t: &Value) -> String {
    let mut s = format!("{} {}", text(&t["id"]), text(&t["state"]));
    if let Some(e) = t.get("error") {
        s.push_str(&format!(
            " — {}: {} (fix: {})",
            text(&e["code"]),
            text(&e["message"]),
            text(&e["hint"])
        ));
    }
    if let Some(c) = t["checkpoint"].get("position") {
        s.push_str(&format!(" at {}", text(c)));
    }
    s
}

fn tables(t: &Value) -> Vec<Value> {
    t["full_sync"].as_array().cloned().unwrap_or_default()
}

fn rows(p: &Value) -> String {
    format!(
        "{}/{} chunks, {} rows of ~{}",
        text(&p["chunks_done"]),
        text(&p["chunks_total"]),
        text(&p["rows_done"]),
        text(&p["rows_total"])
    )
}

/// Whether a watch has nothing left to wait for.
fn settled(t: &Value) -> bool {
    let state = t["state"].as_str().unwrap_or_default();
    let copying = tables(t).iter().any(|p| p["state"] != "done");
    matches!(state, "failed" | "stopped" | "precheck_failed" | "expired")
        || (state == "incremental" && !copying)
}

pub(crate) async fn status(
    api: &Api,
    json_out: bool,
    id: &str,
    watch: bool,
    interval: u64,
) -> Result<()> {
    let path = format!("/v1/instances/{id}/task");
    if json_out || !watch {
        let t = api.call(Method::GET, &path, None).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&t)?);
            return Ok(());
        }
        println!("{}", line(&t));
        for p in tables(&t) {
            println!(
                "  {:<40} {:<8} {}",
                text(&p["table"]["database"]) + "." + &text(&p["table"]["table"]),
                text(&p["state"]),
                rows(&p)
            );
        }
        return Ok(());
    }
    let multi = MultiProgress::new();
    let header = multi.add(ProgressBar::new_spinner());
    let style = ProgressStyle::with_template("  {prefix:<32} [{bar:30}] {pos}/{len} chunks {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    loop {
        let t = api.call(Method::GET, &path, None).await?;
        header.set_message(line(&t));
        header.tick();
        for p in tables(&t) {
            let name = text(&p["table"]["database"]) + "." + &text(&p["table"]["table"]);
            let bar = match bars.iter().find(|(n, _)| *n == name) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = multi.add(ProgressBar::new(0).with_style(style.clone()));
                    b.set_prefix(name.clone());
                    bars.push((name, b.clone()));
                    b
                }
            };
            bar.set_length(p["chunks_total"].as_u64().unwrap_or(0));
            bar.set_position(p["chunks_done"].as_u64().unwrap_or(0));
            bar.set_message(format!(
                "{} rows of ~{}",
                text(&p["rows_done"]),
                text(&p["rows_total"])
            ));
            if p["state"] == "done" && !bar.is_finished() {
                bar.finish();
            }
        }
        if settled(&t) {
            header.finish();
            for (_, b) in &bars {
                b.finish();
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(interval.max(1))).await;
    }
}

/// Asks for a verification and, with `wait`, prints its report once done.
pub(crate) async fn verify(api: &Api, json_out: bool, id: &str, wait: bool) -> Result<()> {
    let path = format!("/v1/instances/{id}/task/verify");
    let mut v = api.call(Method::POST, &path, None).await?;
    while wait && matches!(v["state"].as_str(), Some("pending" | "running")) {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        v = api.call(Method::GET, &path, None).await?;
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("verification {} {}", text(&v["id"]), text(&v["state"]));
    if let Some(e) = v.get("error") {
        println!("  {}", text(e));
    }
    let Some(report) = v.get("report") else {
        return Ok(());
    };
    println!("differences {}", text(&report["differences"]));
    for t in report["tables"].as_array().into_iter().flatten() {
        println!(
            "  {}.{} -> {}: {} source rows, {} target rows, {} chunks{}",
            text(&t["table"]["database"]),
            text(&t["table"]["table"]),
            text(&t["target"]),
            text(&t["source_rows"]),
            text(&t["target_rows"]),
            text(&t["chunks"]),
            if t["rechecked"] == true {
                " (checked twice)"
            } else {
                ""
            }
        );
        for c in t["differing_chunks"].as_array().into_iter().flatten() {
            println!(
                "    chunk {}: {} missing {:?}, {} different {:?}",
                text(&c["chunk"]),
                text(&c["missing_rows"]),
                c["missing_keys"],
                text(&c["different_rows"]),
                c["different_keys"]
            );
        }
        if t["extra_rows"].as_u64().unwrap_or(0) > 0 {
            println!(
                "    extra on the target: {} {:?}",
                text(&t["extra_rows"]),
                t["extra_keys"]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_watch_ends_when_the_copy_is_done_or_the_task_stopped() {
        let copying = json!({"state": "incremental", "full_sync": [{"state": "copying"}]});
        assert!(!settled(&copying));
        assert!(settled(
            &json!({"state": "incremental", "full_sync": [{"state": "done"}]})
        ));
        assert!(settled(&json!({"state": "failed"})));
        assert!(!settled(&json!({"state": "full_sync"})));
    }
}
