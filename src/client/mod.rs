//! The CLI's HTTP client verbs, each with its arguments, against a node's API
//! (`crate::api` holds the request and answer types they send and read):
//!
//! - `http`: [`Client`], the options every verb shares (`--server`, `TRAINYARD_SERVER`,
//!   `--token`, `TRAINYARD_TOKEN`, `--ca-file`, `--json`) and the requests.
//! - `error`: [`ClientError`], and the exit code of each failure ([`EXIT_CODES`]).
//! - `tasks`: `submit` (with `--wait` or `--follow`), `status`, `result`, `inspect`, `tasks`,
//!   `cancel`, `predict`; `events`: following a task's event stream to its end.
//! - `cluster`: `nodes`, `health`, `purge`, `drain`, `resume`.
//! - `schedules`, `datasets` and `models` (the model registry): their subcommands.
//! - `sweeps`: `sweep` (a hyperparameter sweep, with `--follow`) and the `sweeps`
//!   subcommands; `sweep_table`: a sweep as text, and following one to its end.
//!
//! Each verb prints text (a line or a table) or, with `--json`, the server's answer.

mod cluster;
mod datasets;
mod error;
mod events;
mod http;
mod models;
mod schedules;
mod sweep_table;
mod sweeps;
mod tasks;

pub use cluster::{DrainArgs, ResumeArgs, drain, health, nodes, purge};
pub use datasets::{DatasetsCommand, datasets};
pub use error::{ClientError, EXIT_CODES};
pub use http::{Body, Client, ClientOpts, DEFAULT_SERVER};
pub use models::{ModelsCommand, models};
pub use schedules::{SchedulesCommand, schedules};
pub use sweeps::{SweepArgs, SweepsArgs, SweepsCommand, sweep, sweeps};
pub use tasks::{
    HyperArgs, PredictArgs, RequestArgs, StatusArgs, SubmitArgs, TaskArgs, TasksArgs, TreeArgs,
    cancel, inspect, model_names, model_type_parser, predict, result, status, submit, tasks,
};

use serde_json::Value;

/// Rows of cells as columns aligned with two spaces, the first row the header.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
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

/// A JSON value as a table cell: text as is, null as `-`.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The numbers of a nested object as `a.b=1.2345` pairs (metrics), in the object's order.
pub(crate) fn numbers(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                numbers(v, &key, out);
            }
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push(format!("{prefix}={f:.4}")),
            _ => out.push(format!("{prefix}={n}")),
        },
        _ => {}
    }
}
