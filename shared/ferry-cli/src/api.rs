//! A small client of Ferry's HTTP API.

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
    /// Signs every request (a deployed API, `--endpoint`); none for `ferry serve`.
    signer: Option<crate::sigv4::Signer>,
}

impl Api {
    pub(crate) fn new(base: &str, signer: Option<crate::sigv4::Signer>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            signer,
        }
    }

    /// Sends a request; a non-success answer becomes an error with its code, message and hint.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if !bytes.is_empty() {
            req = req
                .header("content-type", "application/json")
                .body(bytes.clone());
        }
        if let Some(signer) = &self.signer {
            let host = crate::sigv4::host_header(&url)?;
            for (k, v) in signer
                .headers(method.as_str(), &url, &[("host", host.as_str())], &bytes)
                .await?
            {
                req = req.header(k, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => bail!(
                "cannot reach the Ferry API at {}: {e}\nhint: start it with `ferry serve`, or pass --api",
                self.base
            ),
        };
        let status = resp.status();
        let text = resp.text().await?;
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(json);
        }
        let e = &json["error"];
        let mut msg = format!(
            "{method} {path}: {} {}: {}",
            status.as_u16(),
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("(no message)")
        );
        if let Some(h) = e["hint"].as_str() {
            msg.push_str(&format!("\nhint: {h}"));
        }
        if let Some(items) = e["details"]["items"].as_array() {
            for i in items.iter().filter(|i| i["status"] != "passed") {
                msg.push_str(&format!(
                    "\n  {:<8} {:<28} {}\n           fix: {}",
                    i["status"].as_str().unwrap_or(""),
                    i["id"].as_str().unwrap_or(""),
                    i["message"].as_str().unwrap_or(""),
                    i["hint"].as_str().unwrap_or("")
                ));
            }
        }
        bail!(msg)
    }
}

/// Prints rows as aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// A JSON field as a table cell.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
