//! `trainyard models`: the model registry (`/models`): list, show, register, alias, delete
//! a version, and predict by name, version or alias.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::tasks::parse_rows;
use super::{Body, Client, ClientError, cell, numbers, table};
use crate::api::{AliasRequest, PredictRequest, RegisterRequest};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registered models: newest version, aliases.
    List,
    /// Show a model's versions: metrics, data set, task, aliases.
    Show(NameArgs),
    /// Register a finished task's model as NAME's next version.
    Register(RegisterArgs),
    /// Point an alias of a model (production, staging, any name) at a version.
    Alias(AliasArgs),
    /// Delete a version (refused while an alias points at it).
    Delete(VersionArgs),
    /// Predict with a model: its newest version, or --version, or --alias.
    Predict(PredictArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The model's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The model's name: 1 to 64 letters, digits, '.', '_' or '-'.
    pub name: String,
    /// The task (finished with SUCCESS) whose model is registered.
    pub task_id: String,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    pub name: String,
    /// The alias (e.g. production).
    pub alias: String,
    /// The version it points at.
    pub version: u32,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    pub name: String,
    pub version: u32,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    pub name: String,
    /// A version (instead of the newest).
    #[arg(long, conflicts_with = "alias")]
    pub version: Option<u32>,
    /// An alias (instead of the newest version).
    #[arg(long)]
    pub alias: Option<String>,
    /// One row of features, comma separated; repeat for more rows.
    #[arg(long = "row", required = true, value_name = "V1,V2,...")]
    pub rows: Vec<String>,
}

/// Runs one `trainyard models` subcommand.
pub fn models(client: &Client, command: &ModelsCommand) -> Result<(), ClientError> {
    let answer = match command {
        ModelsCommand::List => client.get("/models")?,
        ModelsCommand::Show(NameArgs { name }) => client.get(&format!("/models/{name}"))?,
        ModelsCommand::Register(args) => {
            let body = RegisterRequest {
                name: Some(args.name.clone()),
                task_id: Some(args.task_id.clone()),
            };
            client.call("POST", "/models", &[], Body::Json(json(&body)?))?
        }
        ModelsCommand::Alias(args) => {
            let body = AliasRequest {
                version: Some(args.version),
            };
            let path = format!("/models/{}/aliases/{}", args.name, args.alias);
            client.call("PUT", &path, &[], Body::Json(json(&body)?))?
        }
        ModelsCommand::Delete(args) => {
            client.delete(&format!("/models/{}/versions/{}", args.name, args.version))?
        }
        ModelsCommand::Predict(args) => {
            let path = match (&args.version, &args.alias) {
                (Some(v), _) => format!("/models/{}/versions/{v}/predict", args.name),
                (None, Some(a)) => format!("/models/{}/aliases/{a}/predict", args.name),
                (None, None) => format!("/models/{}/predict", args.name),
            };
            let rows = parse_rows(&args.rows)?;
            client.post_json(&path, &[], &PredictRequest { rows })?
        }
    };
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    print_answer(command, &answer);
    Ok(())
}

fn json(value: &impl serde::Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(value).map_err(|e| ClientError::Usage(e.to_string()))
}

/// The answer as text: a line, or a table.
fn print_answer(command: &ModelsCommand, answer: &Value) {
    match command {
        ModelsCommand::List => {
            let mut rows = vec![
                ["NAME", "LATEST", "VERSIONS", "ALIASES"]
                    .map(String::from)
                    .to_vec(),
            ];
            for m in answer["models"].as_array().into_iter().flatten() {
                rows.push(vec![
                    cell(&m["name"]),
                    cell(&m["latest_version"]),
                    cell(&m["versions"]),
                    aliases(&m["aliases"]),
                ]);
            }
            println!("{}", table(&rows));
        }
        ModelsCommand::Show(_) => {
            let mut rows = vec![
                ["VERSION", "TASK", "MODEL", "DATASET", "ALIASES", "METRICS"]
                    .map(String::from)
                    .to_vec(),
            ];
            for v in answer["versions"].as_array().into_iter().flatten() {
                let mut metrics = Vec::new();
                numbers(&v["metrics"], "", &mut metrics);
                metrics.retain(|m| m.contains("test_"));
                let dataset = match v["dataset_id"].as_str() {
                    Some(id) => id.to_string(),
                    None => cell(&v["spec"]["dataset"]),
                };
                rows.push(vec![
                    cell(&v["version"]),
                    cell(&v["task_id"]),
                    cell(&v["model_type"]),
                    dataset,
                    v["aliases"]
                        .as_array()
                        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    metrics.join(" "),
                ]);
            }
            println!("{}", table(&rows));
        }
        ModelsCommand::Register(args) => {
            println!(
                "{} version {}",
                args.name,
                cell(&answer["version"]["version"])
            );
        }
        ModelsCommand::Alias(args) => {
            println!("{} {} -> version {}", args.name, args.alias, args.version);
        }
        ModelsCommand::Delete(args) => {
            println!("{} version {} deleted", args.name, args.version);
        }
        ModelsCommand::Predict(_) => {
            for p in answer["predictions"].as_array().into_iter().flatten() {
                println!("{p}");
            }
        }
    }
}

/// `{"production": 2}` as `production=2`.
fn aliases(value: &Value) -> String {
    value
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}
