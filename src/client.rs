//! The CLI's HTTP client verbs: submit (with --follow), status, result, cancel, predict,
//! nodes, purge, drain and resume, each with its arguments.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::api::{ErrorBody, PredictRequest, TrainRequest};

/// The server the client verbs ask when no `--server` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5000";

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// mlp, linear, gbdt or all (or the old service's tensorflow, pytorch, xgboost).
    pub model: String,
    /// A built-in data set name or an uploaded data set's id.
    #[arg(long)]
    pub dataset: Option<String>,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[arg(long)]
    pub priority: Option<u8>,
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// Show a progress bar until the task ends, then its result.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// Hyperparameters shared by `train` and `submit`; unset ones take the spec's defaults.
#[derive(Debug, Args)]
pub struct HyperArgs {
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Hidden layer sizes, comma separated (e.g. 64,32,16).
    #[arg(long, value_delimiter = ',')]
    pub hidden_sizes: Option<Vec<u32>>,
    #[arg(long)]
    pub batch_size: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl HyperArgs {
    /// The request these flags make (unset ones stay unset: the server's defaults).
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            epochs: self.epochs,
            learning_rate: self.learning_rate,
            hidden_sizes: self.hidden_sizes.clone(),
            batch_size: self.batch_size,
            seed: self.seed,
            ..TrainRequest::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Follow the task's live events with a progress bar until it ends, then show its result.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    pub id: String,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// `trainyard nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `trainyard purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// `trainyard drain NODE`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    pub node: String,
    /// Wait until the node's running tasks have ended.
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// `trainyard resume NODE`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub node: String,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// `trainyard predict ID --row ...`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    pub id: String,
    #[arg(long = "row", required = true)]
    pub rows: Vec<String>,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// The TLS settings of every request: the CAs of `--ca-file`, or the built-in web roots.
static TLS: std::sync::OnceLock<ureq::tls::TlsConfig> = std::sync::OnceLock::new();

/// Trusts the CA certificates of the PEM file `ca_file` (only them) for `https://` servers.
pub fn trust(ca_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = ca_file else {
        return Ok(());
    };
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    let config = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::from(certs))
        .build();
    let _ = TLS.set(config);
    Ok(())
}

fn tls() -> ureq::tls::TlsConfig {
    TLS.get().cloned().unwrap_or_default()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// Sends a request and returns the JSON answer; an error status becomes an error with the
/// server's message.
/// Sends the bearer token from `TRAINYARD_TOKEN` when it is set.
fn call(method: &str, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let agent = agent();
    let auth = authorization();
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            request.call()
        }
        ("DELETE", _) => {
            let mut request = agent.delete(url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            request.call()
        }
        (_, body) => {
            let mut request = agent.post(url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            match body {
                Some(body) => request.send_json(body),
                None => request.send_empty(),
            }
        }
    }
    .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let value: Value = response
        .into_body()
        .read_json()
        .with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        return Err(refusal(status.as_u16(), value));
    }
    Ok(value)
}

/// The error of a refused request: `STATUS CODE: MESSAGE` from its [`ErrorBody`].
fn refusal(status: u16, answer: Value) -> anyhow::Error {
    match serde_json::from_value::<ErrorBody>(answer) {
        Ok(body) => anyhow::anyhow!("{status} {}: {}", body.error.code, body.error.message),
        Err(_) => anyhow::anyhow!("{status} error: "),
    }
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("json prints")
    );
}

pub fn show(server: &str, path: &str) -> anyhow::Result<()> {
    print(&call("GET", &format!("{server}{path}"), None)?);
    Ok(())
}

/// `trainyard purge`: revokes every pending task.
pub fn purge(server: &str) -> anyhow::Result<()> {
    let answer = call("DELETE", &format!("{server}/queue"), None)?;
    println!("{} pending tasks revoked", answer["purged"]);
    Ok(())
}

/// `trainyard drain NODE` (or `resume`): with `wait`, until the node's running tasks ended.
pub fn drain(server: &str, node: &str, action: &str, wait: bool) -> anyhow::Result<()> {
    let answer = call(
        "POST",
        &format!("{server}/cluster/nodes/{node}/{action}"),
        None,
    )?;
    println!("{}", answer["message"].as_str().unwrap_or(""));
    if !(wait && action == "drain") {
        return Ok(());
    }
    loop {
        let nodes = call("GET", &format!("{server}/cluster/nodes"), None)?;
        let drained = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == node && n["drained"] == true);
        if drained {
            println!("node {node} is drained");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `trainyard nodes`: the cluster as a table, one row per trainer.
pub fn nodes(server: &str, json: bool) -> anyhow::Result<()> {
    let answer = call("GET", &format!("{server}/cluster/nodes"), None)?;
    if json {
        print(&answer);
        return Ok(());
    }
    println!("{}", nodes_table(&answer));
    Ok(())
}

fn nodes_table(answer: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut rows = vec![
        [
            "NODE", "ROLE", "LINK", "HTTP", "CLUSTER", "TRAINER", "DEVICE", "STATE", "TASK",
        ]
        .map(String::from),
    ];
    for node in answer["nodes"].as_array().into_iter().flatten() {
        let role = if node["leader"] == true {
            "leader"
        } else {
            "follower"
        };
        let link = match (node["alive"] == true, node["connected"] == true) {
            (false, _) => "down",
            (true, true) => "connected",
            (true, false) => "unreachable",
        };
        let link = if node["draining"] == true {
            format!("{link},draining")
        } else {
            link.to_string()
        };
        let trainers = node["trainers"].as_array().cloned().unwrap_or_default();
        for (i, t) in trainers.iter().enumerate() {
            let first = i == 0;
            let keep = |s: String| if first { s } else { String::new() };
            rows.push([
                keep(text(&node["name"])),
                keep(role.to_string()),
                keep(link.clone()),
                keep(text(&node["http"])),
                keep(text(&node["cluster"])),
                text(&t["name"]),
                text(&t["device"]),
                text(&t["state"]),
                text(&t["task_id"]),
            ]);
        }
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn cancel(args: &TaskArgs) -> anyhow::Result<()> {
    print(&call(
        "POST",
        &format!("{}/task/{}/cancel", args.server, args.id),
        None,
    )?);
    Ok(())
}

pub fn predict(server: &str, id: &str, rows: &[String]) -> anyhow::Result<()> {
    let rows = rows
        .iter()
        .map(|r| {
            r.split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .with_context(|| format!("{v:?} is not a number"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    print(&call(
        "POST",
        &format!("{server}/models/{id}/predict"),
        Some(json!(PredictRequest { rows })),
    )?);
    Ok(())
}

pub fn submit(args: &SubmitArgs) -> anyhow::Result<()> {
    let body = TrainRequest {
        dataset: args.dataset.clone(),
        priority: args.priority,
        time_limit_s: args.time_limit_s,
        ..args.hyper.request()
    };
    let answer = call(
        "POST",
        &format!("{}/train/{}/async", args.server, args.model),
        Some(json!(body)),
    )?;
    if !args.follow {
        print(&answer);
        return Ok(());
    }
    let id = answer["task_id"]
        .as_str()
        .context("answer has no task_id")?
        .to_string();
    eprintln!("task {id} submitted");
    follow(&args.server, &id)
}

/// The bearer token from `TRAINYARD_TOKEN`, as an `Authorization` value.
fn authorization() -> Option<String> {
    std::env::var("TRAINYARD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"))
}

/// Most times `follow` reconnects to a stream that dropped before the task ended.
const MAX_RECONNECTS: u32 = 20;

/// Follows task `id` over its event stream (`GET /task/{id}/events`) with a progress bar until
/// it ends, then prints its result. A dropped connection resumes with `Last-Event-ID`.
pub fn follow(server: &str, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}").expect("template is valid"),
    );
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    while !read_events(server, id, &mut last_id, &bar)? {
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            bail!("the event stream of task {id} kept dropping");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
    let result = call("GET", &format!("{server}/task/{id}/result"), None)?;
    print(&result);
    if result["state"] != "SUCCESS" {
        bail!("task {id} ended as {}", result["state"]);
    }
    Ok(())
}

/// Reads task `id`'s events into `bar` until the stream ends; true if the task ended. A
/// refusal (unknown task, bad token) is an error; a dropped connection is `false`.
fn read_events(
    server: &str,
    id: &str,
    last_id: &mut Option<String>,
    bar: &ProgressBar,
) -> anyhow::Result<bool> {
    use std::io::BufRead;
    let url = format!("{server}/task/{id}/events");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls())
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.get(&url).header("accept", "text/event-stream");
    if let Some(auth) = authorization() {
        request = request.header("authorization", auth);
    }
    if let Some(last) = last_id.as_deref() {
        request = request.header("last-event-id", last);
    }
    let Ok(response) = request.call() else {
        return Ok(false);
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let value: Value = response.into_body().read_json().unwrap_or(Value::Null);
        return Err(refusal(status, value));
    }
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let (mut event_id, mut data) = (None, String::new());
    for line in reader.lines() {
        let Ok(line) = line else { return Ok(false) };
        if let Some(value) = line.strip_prefix("id:") {
            event_id = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        } else if line.is_empty() && !data.is_empty() {
            let event: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            data.clear();
            if let Some(id) = event_id.take() {
                *last_id = Some(id);
            }
            let state = event["state"].as_str().unwrap_or("");
            if let Some(percent) = event["progress"]["percent"].as_f64() {
                bar.set_position(percent as u64);
            }
            bar.set_message(format!(
                "{state} {}",
                event["progress"]["message"].as_str().unwrap_or("")
            ));
            if matches!(state, "SUCCESS" | "FAILURE" | "REVOKED") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_print_as_a_table() {
        let answer = serde_json::json!({"nodes": [
            {"name": "node-a", "leader": true, "alive": true, "connected": true,
             "http": "127.0.0.1:5000", "cluster": "127.0.0.1:4700", "trainers": [
                {"name": "node-a/cpu-0", "device": "cpu", "state": "busy", "task_id": "t1"},
                {"name": "node-a/cpu-1", "device": "cpu", "state": "idle", "task_id": null}]},
            {"name": "node-b", "leader": false, "alive": false, "connected": false,
             "http": "127.0.0.1:5001", "cluster": "127.0.0.1:4701", "trainers": [
                {"name": "node-b/cpu-0", "device": "cpu", "state": "down", "task_id": null}]}
        ]});
        let table = nodes_table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("NODE"));
        assert!(
            lines[1].contains("leader") && lines[1].contains("busy") && lines[1].contains("t1")
        );
        assert!(lines[2].trim_start().starts_with("node-a/cpu-1"));
        assert!(lines[3].contains("down") && lines[3].contains("follower"));
    }
}
