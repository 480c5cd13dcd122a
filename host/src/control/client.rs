//! The admin API's client, as the `wasmtel integrations` commands use it: requests, errors, and
//! tables for people.

use std::path::Path;

use serde_json::{Value, json};

/// A client for one host's admin API.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Why a command failed: the API's own error message, or why it could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl AdminClient {
    /// A client for `base`, with `token`, or else `WASMTEL_ADMIN_TOKEN`'s, or else the one in
    /// `<data_dir>/admin.token`.
    pub fn new(base: &str, token: Option<String>, data_dir: &Path) -> Result<Self, ClientError> {
        let token = match token.or_else(|| std::env::var("WASMTEL_ADMIN_TOKEN").ok()) {
            Some(t) => t,
            None => {
                let path = data_dir.join(super::token::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        ClientError(format!(
                            "no admin token: give --token, set WASMTEL_ADMIN_TOKEN, or point --data-dir at the host's data directory ({}: {e})",
                            path.display()
                        ))
                    })?
            }
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        })
    }

    /// Calls `method path` with an optional JSON body; the API's error message on failure.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.send(method, path, body).await
    }

    /// PUTs `bytes` (a plugin component) to `path`; the API's error message on failure.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        self.send("PUT", path, Some(("application/wasm", bytes)))
            .await
    }

    /// Calls `method path` with an optional body of a content type.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Value, ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError(format!("bad method {method}")))?;
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request.send().await.map_err(|e| {
            ClientError(format!("cannot reach the admin API at {}: {e}", self.base))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_owned);
        Err(ClientError(message))
    }
}

/// The body of a create request.
pub fn create_body(
    kind: &str,
    kind_type: &str,
    name: &str,
    preset: Option<&str>,
    endpoint: Option<&str>,
    headers: &[(String, String)],
    extra: Option<&Value>,
) -> Value {
    let mut body = json!({ "kind": kind, "type": kind_type, "name": name });
    if let Some(p) = preset {
        body["preset"] = json!(p);
    }
    if let Some(e) = endpoint {
        body["endpoint"] = json!(e);
    }
    if !headers.is_empty() {
        body["headers"] = headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            body[k] = v.clone();
        }
    }
    body
}

/// Sets `key=value` in a request body: a dotted key (`delivery.interval`) reaches into nested
/// objects, and the value is read as TOML (`7`, `true`, `["a"]`, `{ path = "/x" }`), else taken as
/// text, so that any key of a config entry can be given on the command line.
pub fn set(body: &mut Value, assignment: &str) -> Result<(), ClientError> {
    let (key, value) = key_value(assignment).map_err(ClientError)?;
    let value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::String(value));
    let mut here = body;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if !here.is_object() {
            *here = json!({});
        }
        let slot = &mut here[part];
        if parts.peek().is_none() {
            *slot = value;
            return Ok(());
        }
        here = slot;
    }
    Ok(())
}

/// Adds `key=pattern` to the resource selection of a request body: the resource attribute
/// `key` (dots and all) must match `pattern`; a key given twice matches either pattern.
pub fn select(body: &mut Value, assignment: &str) -> Result<(), ClientError> {
    let (key, pattern) = key_value(assignment).map_err(ClientError)?;
    let resource = &mut body["select"]["resource"];
    if !resource.is_object() {
        *resource = json!({});
    }
    let slot = &mut resource[key.as_str()];
    *slot = match slot.take() {
        Value::Null => json!(pattern),
        Value::Array(mut many) => {
            many.push(json!(pattern));
            Value::Array(many)
        }
        one => json!([one, pattern]),
    };
    Ok(())
}

/// Splits a `K=V` argument.
pub fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{arg}` is not KEY=VALUE")),
    }
}

/// Integrations as a table: id, name, type, signal, state, source, endpoint.
pub fn integrations_table(integrations: &[Value]) -> String {
    let rows: Vec<[String; 7]> = integrations
        .iter()
        .flat_map(|i| {
            let signals = i["signals"].as_array().cloned().unwrap_or_default();
            signals.into_iter().map(move |s| {
                let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                let endpoint = i["endpoints"]
                    .as_array()
                    .and_then(|e| e.iter().find(|e| e[0] == s["signal"]))
                    .map_or_else(|| "-".to_owned(), |e| text(&e[1]));
                [
                    text(&i["id"]),
                    text(&i["name"]),
                    text(&i["type"]),
                    text(&s["signal"]),
                    text(&s["state"]),
                    text(&i["source"]),
                    endpoint,
                ]
            })
        })
        .collect();
    table(
        &[
            "ID", "NAME", "TYPE", "SIGNAL", "STATE", "SOURCE", "ENDPOINT",
        ],
        &rows,
    )
}

/// When each signal of newly created integrations first goes out, in words: metrics at the
/// end of their first interval, log records and spans as they arrive.
pub fn first_exports(created: &[Value], now_unix_nano: u64) -> String {
    let mut out = String::new();
    for i in created {
        let name = i["name"].as_str().unwrap_or("-");
        for s in i["signals"].as_array().into_iter().flatten() {
            let signal = s["signal"].as_str().unwrap_or("-");
            let line = match s["next_export_unix_nano"].as_u64() {
                Some(at) => {
                    let secs = at.saturating_sub(now_unix_nano).div_ceil(1_000_000_000);
                    let when = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at))
                        .ok()
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_else(|| "-".into());
                    format!("{name} {signal}: first export at {when} (in {secs} s)")
                }
                None if signal == "logs" || signal == "traces" => {
                    format!("{name} {signal}: records are sent as they arrive")
                }
                None => format!("{name} {signal}: not exporting ({})", text(&s["state"])),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

/// Test connection results as a table.
pub fn test_table(results: &[Value]) -> String {
    let rows: Vec<[String; 3]> = results
        .iter()
        .map(|r| {
            let ok = if r["result"] == "ok" { "ok" } else { "FAILED" };
            [
                r["signal"].as_str().unwrap_or("-").to_owned(),
                ok.to_owned(),
                r["message"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    table(&["SIGNAL", "RESULT", "DIAGNOSIS"], &rows)
}

fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(head.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_bodies_carry_every_flag() {
        let list = vec![json!({
            "id": "otlp", "name": "otlp", "type": "otlp", "source": "config",
            "endpoints": [["metrics", "http://c/v1/metrics"]],
            "signals": [{ "signal": "metrics", "state": "connected" }],
        })];
        assert_eq!(
            integrations_table(&list),
            "ID    NAME  TYPE  SIGNAL   STATE      SOURCE  ENDPOINT\n\
             otlp  otlp  otlp  metrics  connected  config  http://c/v1/metrics\n"
        );
        let body = create_body(
            "logs",
            "otlp",
            "n",
            Some("honeycomb"),
            None,
            &[("a".into(), "b".into())],
            Some(&json!({ "api_key": "k" })),
        );
        assert_eq!(
            body,
            json!({ "kind": "logs", "type": "otlp", "name": "n", "preset": "honeycomb", "headers": { "a": "b" }, "api_key": "k" })
        );
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        let created = vec![json!({
            "name": "c",
            "signals": [
                { "signal": "metrics", "state": "pending", "next_export_unix_nano": 1_800_000_060_000_000_000u64 },
                { "signal": "logs", "state": "pending" },
            ],
        })];
        assert_eq!(
            first_exports(&created, 1_800_000_000_000_000_000),
            "c metrics: first export at 2027-01-15T08:01:00Z (in 60 s)\nc logs: records are sent as they arrive\n"
        );
        assert!(key_value("=x").is_err() && key_value("x").is_err());
    }

    #[test]
    fn select_keeps_dotted_keys_whole_and_repeats_as_any_of() {
        let mut body = json!({ "kind": "metrics" });
        select(&mut body, "service.namespace=team-a").expect("one");
        select(&mut body, "k8s.namespace.name=prod-*").expect("two");
        select(&mut body, "k8s.namespace.name=ml").expect("three");
        select(&mut body, "k8s.namespace.name=gpu").expect("four");
        assert_eq!(
            body["select"],
            json!({ "resource": {
                "service.namespace": "team-a",
                "k8s.namespace.name": ["prod-*", "ml", "gpu"],
            }})
        );
        assert!(select(&mut body, "novalue").is_err());
    }
}
