//! The task verbs: `submit` (one, or `--count N` in batches), `status`, `result`, `inspect`, `tasks`, `cancel`, `predict`,
//! with their arguments (and the hyperparameter flags `trainyard train` shares).

use clap::Args;
use serde_json::Value;

use super::events::follow;
use super::{Client, ClientError, cell, numbers, table};
use crate::api::{BatchItemRequest, PredictRequest, TrainRequest};
use crate::training::{DeviceClass, GbdtParams, ModelType};

/// The old service's model names, which the API still takes (a test checks that
/// `ModelType` reads each as an old name).
const OLD_MODEL_NAMES: [&str; 3] = ["tensorflow", "pytorch", "xgboost"];

/// The model types a request may name: ours, then the old service's.
pub fn model_names() -> Vec<&'static str> {
    let mut names = ModelType::NAMES.to_vec();
    names.extend(OLD_MODEL_NAMES);
    names
}

/// A parser of model types that lists [`model_names`] in `--help` and completions.
pub fn model_type_parser() -> impl clap::builder::TypedValueParser<Value = ModelType> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(model_names())
        // Every name offered parses: `model_names` lists the names `ModelType` reads.
        .map(|name| name.parse::<ModelType>().unwrap_or(ModelType::Mlp))
}

/// Hyperparameters shared by `train`, `submit` and `schedules create`; unset ones take the
/// spec's defaults. Their ranges are checked by the spec (`TrainSpec::validate`, which names
/// every problem at once), not by clap.
#[derive(Debug, Clone, Args)]
pub struct HyperArgs {
    /// Passes over the training rows, 1-100000 (burn models).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Adam's learning rate, above 0 and at most 10 (burn models).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Hidden layer sizes, comma separated, input side first (e.g. 64,32,16): at most 8
    /// layers of 1-4096.
    #[arg(long, value_delimiter = ',')]
    pub hidden_sizes: Option<Vec<u32>>,
    /// Rows per mini-batch, 1-65536.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Seeds the split, the shuffles and the weights: the same seed gives the same metrics.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of rows held out for the test metrics, between 0 and 1 (default 0.2).
    #[arg(long)]
    pub test_fraction: Option<f64>,
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
            test_fraction: self.test_fraction,
            ..TrainRequest::default()
        }
    }
}

/// The gradient-boosted trees' flags (gbdt and all).
#[derive(Debug, Clone, Args)]
pub struct TreeArgs {
    /// Trees of the gradient-boosted model, 1-10000 (default 100).
    #[arg(long)]
    pub trees: Option<u32>,
    /// Learning rate of the gradient-boosted model (default 0.1).
    #[arg(long)]
    pub tree_learning_rate: Option<f64>,
    /// Depth of each tree, 1-16 (default 6).
    #[arg(long)]
    pub max_depth: Option<u32>,
    /// Fewest training rows a leaf may hold (default 1).
    #[arg(long)]
    pub min_samples_leaf: Option<u32>,
}

impl TreeArgs {
    /// The trees' parameters, if any flag is set (the others at their defaults).
    pub fn gbdt(&self) -> Option<GbdtParams> {
        if self.trees.is_none()
            && self.tree_learning_rate.is_none()
            && self.max_depth.is_none()
            && self.min_samples_leaf.is_none()
        {
            return None;
        }
        let g = GbdtParams::default();
        Some(GbdtParams {
            n_trees: self.trees.unwrap_or(g.n_trees),
            learning_rate: self.tree_learning_rate.unwrap_or(g.learning_rate),
            max_depth: self.max_depth.unwrap_or(g.max_depth),
            min_samples_leaf: self.min_samples_leaf.unwrap_or(g.min_samples_leaf),
        })
    }
}

/// Every field of a training request ([`TrainRequest`]), as flags.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// A built-in data set (friedman1, diabetes, winequality) or an uploaded data set's id.
    #[arg(long)]
    pub dataset: Option<String>,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[command(flatten)]
    pub trees: TreeArgs,
    /// Priority, 0-9 (default 0); higher runs first.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: Option<u8>,
    /// Attempts after the first, 0-10 (the node's [tasks] max_retries when unset).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub max_retries: Option<u32>,
    /// Wall-clock limit of the training in seconds, at most the node's [tasks] time_limit_s.
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// The kind of trainer to run on.
    #[arg(long, value_parser = ["any", "cpu", "gpu"])]
    pub device: Option<String>,
    /// Where to POST the final status when the task ends (the node's allowed hosts only).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Answer from an earlier success with the same spec, data set content and seed, if one
    /// is kept: SUCCESS at once, no training.
    #[arg(long)]
    pub cache: bool,
    /// Milliseconds a noop task sleeps, 0-600000 (noop only; the node must allow noop).
    #[arg(long)]
    pub sleep_ms: Option<u64>,
}

impl RequestArgs {
    /// The request these flags make; unset fields stay unset (the server's defaults).
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            dataset: self.dataset.clone(),
            gbdt: self.trees.gbdt(),
            priority: self.priority,
            max_retries: self.max_retries,
            time_limit_s: self.time_limit_s,
            device: self.device.as_deref().and_then(|d| {
                DeviceClass::ALL
                    .into_iter()
                    .find(|class| class.as_str() == d)
            }),
            callback_url: self.callback_url.clone(),
            cache: self.cache.then_some(true),
            sleep_ms: self.sleep_ms,
            ..self.hyper.request()
        }
    }
}

/// `trainyard submit MODEL`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The model type.
    #[arg(value_parser = model_names())]
    pub model: String,
    #[command(flatten)]
    pub request: RequestArgs,
    /// The Idempotency-Key header: the same key and request give the same task (letters,
    /// digits, '-', '_', '.', ':'; up to 255).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Submit N such tasks in batches (`POST /tasks`, up to 1000 a call) and print their ids,
    /// one a line; with --idempotency-key KEY, the N tasks are keyed KEY-0 to KEY-(N-1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with_all = ["wait", "follow"])]
    pub count: Option<u64>,
    /// Wait until the task ends (no progress bar), print its result, exit per its state.
    #[arg(long, conflicts_with = "follow")]
    pub wait: bool,
    /// Show a progress bar until the task ends, then its result; exit per its state.
    #[arg(long)]
    pub follow: bool,
}

/// `trainyard status ID`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task's id.
    pub id: String,
    /// Follow the task's live events with a progress bar until it ends, then show its result;
    /// exit per its state.
    #[arg(long)]
    pub follow: bool,
}

/// A verb on one task: `result ID`, `inspect ID`, `cancel ID`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task's id.
    pub id: String,
}

/// `trainyard tasks`: the query of `GET /tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks in this state.
    #[arg(long, value_parser = ["PENDING", "STARTED", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"])]
    pub state: Option<String>,
    /// Only tasks of this model type.
    #[arg(long, value_parser = ModelType::NAMES)]
    pub model_type: Option<String>,
    /// Only tasks that ran on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Most tasks listed, newest first, 1-1000 (the server's default: 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// `trainyard predict ID --row ...`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The task whose model predicts.
    pub id: String,
    /// One row of features, comma separated, in the data set's column order without the
    /// target; repeat for more rows.
    #[arg(long = "row", required = true, value_name = "V1,V2,...")]
    pub rows: Vec<String>,
}

/// Most items the CLI sends in one `POST /tasks` (the server's default `[tasks] max_batch`).
pub const BATCH_ITEMS: u64 = 1_000;

/// `trainyard submit --count N`: N tasks in batches, their ids printed one a line (or each
/// batch's answer).
fn submit_many(client: &Client, args: &SubmitArgs, count: u64) -> Result<(), ClientError> {
    let request = args.request.request();
    let mut from = 0;
    while from < count {
        let to = (from + BATCH_ITEMS).min(count);
        let items: Vec<BatchItemRequest> = (from..to)
            .map(|i| BatchItemRequest {
                model_type: args.model.clone(),
                idempotency_key: args.idempotency_key.as_ref().map(|k| format!("{k}-{i}")),
                request: request.clone(),
            })
            .collect();
        let answer = client.post_json("/tasks", &[], &items)?;
        if client.json {
            Client::print_json(&answer);
        } else {
            for id in answer["task_ids"].as_array().into_iter().flatten() {
                println!("{}", id.as_str().unwrap_or_default());
            }
        }
        from = to;
    }
    Ok(())
}

/// `trainyard submit`: the task's id (or the answer), then with `--wait` or `--follow` its
/// result; with `--count N`, N tasks.
pub fn submit(client: &Client, args: &SubmitArgs) -> Result<(), ClientError> {
    if let Some(count) = args.count {
        return submit_many(client, args, count);
    }
    let headers: Vec<(&str, &str)> = args
        .idempotency_key
        .as_deref()
        .map(|key| ("idempotency-key", key))
        .into_iter()
        .collect();
    let answer = client.post_json(
        &format!("/train/{}/async", args.model),
        &headers,
        &args.request.request(),
    )?;
    let id = answer["task_id"].as_str().unwrap_or_default().to_string();
    if !(args.wait || args.follow) {
        if client.json {
            Client::print_json(&answer);
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    eprintln!("task {id} submitted");
    follow(client, &id, args.follow)
}

/// `trainyard status ID`: one line (or the answer); with `--follow`, until the task ends.
pub fn status(client: &Client, args: &StatusArgs) -> Result<(), ClientError> {
    if args.follow {
        return follow(client, &args.id, true);
    }
    let answer = client.get(&format!("/task/{}/status", args.id))?;
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    let progress = &answer["progress"];
    println!(
        "{}  {}  {:.0}%  {}",
        cell(&answer["task_id"]),
        cell(&answer["state"]),
        progress["percent"].as_f64().unwrap_or(0.0),
        progress["message"].as_str().unwrap_or("")
    );
    if let Some(waiting) = answer["waiting_for"].as_str() {
        println!("waiting for: {waiting}");
    }
    Ok(())
}

/// `trainyard result ID`.
pub fn result(client: &Client, args: &TaskArgs) -> Result<(), ClientError> {
    let answer = client.get(&format!("/task/{}/result", args.id))?;
    print_result(client, &answer);
    Ok(())
}

/// A task's result (`GET /task/{id}/result`) as text or JSON.
pub fn print_result(client: &Client, answer: &Value) {
    if client.json {
        Client::print_json(answer);
        return;
    }
    println!("{}  {}", cell(&answer["task_id"]), cell(&answer["state"]));
    if let Some(message) = answer["result"]["message"].as_str() {
        println!("{message}");
    }
    let mut metrics = Vec::new();
    numbers(&answer["result"]["metrics"], "", &mut metrics);
    if !metrics.is_empty() {
        println!("metrics: {}", metrics.join(" "));
    }
    if answer["error"].is_object() {
        println!(
            "error: {} {}",
            cell(&answer["error"]["code"]),
            cell(&answer["error"]["message"])
        );
    }
}

/// `trainyard inspect ID`: everything known about a task.
pub fn inspect(client: &Client, args: &TaskArgs) -> Result<(), ClientError> {
    let answer = client.get(&format!("/task/{}", args.id))?;
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    let timings = &answer["timings"];
    let mut rows = vec![
        ("task", cell(&answer["task_id"])),
        ("state", cell(&answer["state"])),
        ("model type", cell(&answer["model_type"])),
        ("data set", cell(&answer["request"]["spec"]["dataset"])),
        ("priority", cell(&answer["request"]["priority"])),
        ("device", cell(&answer["request"]["device"])),
        ("attempt", cell(&answer["attempt"])),
        ("resumed at", cell(&answer["resumed_from"])),
        ("node", cell(&answer["node"])),
        ("trainer", cell(&answer["trainer"])),
        ("progress", cell(&answer["progress"]["message"])),
        ("waited s", seconds(&timings["waited_s"])),
        ("ran s", seconds(&timings["ran_s"])),
    ];
    if answer["error"].is_object() {
        rows.push(("error", cell(&answer["error"]["message"])));
    }
    for (name, value) in rows {
        println!("{name:<11} {value}");
    }
    for attempt in answer["attempts"].as_array().into_iter().flatten() {
        println!(
            "attempt {} on {} from step {}: {}",
            cell(&attempt["attempt"]),
            cell(&attempt["trainer"]),
            cell(&attempt["resumed_from"]),
            cell(&attempt["error"]["message"])
        );
    }
    Ok(())
}

/// Seconds to the millisecond, or `-`.
fn seconds(value: &Value) -> String {
    value.as_f64().map_or("-".into(), |s| format!("{s:.3}"))
}

/// `trainyard tasks`: the newest tasks as a table.
pub fn tasks(client: &Client, args: &TasksArgs) -> Result<(), ClientError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let limit = args.limit.map(|l| l.to_string());
    for (key, value) in [
        ("state", &args.state),
        ("model_type", &args.model_type),
        ("node", &args.node),
        ("limit", &limit),
    ] {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    let query = query.finish();
    let path = if query.is_empty() {
        "/tasks".to_string()
    } else {
        format!("/tasks?{query}")
    };
    let answer = client.get(&path)?;
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    let mut rows = vec![
        [
            "TASK", "STATE", "MODEL", "PRIORITY", "ATTEMPT", "TRAINER", "PROGRESS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in answer["tasks"].as_array().into_iter().flatten() {
        rows.push(vec![
            cell(&t["task_id"]),
            cell(&t["state"]),
            cell(&t["model_type"]),
            cell(&t["priority"]),
            cell(&t["attempt"]),
            cell(&t["trainer"]),
            format!("{:.0}%", t["progress"]["percent"].as_f64().unwrap_or(0.0)),
        ]);
    }
    println!("{}", table(&rows));
    Ok(())
}

/// `trainyard cancel ID`.
pub fn cancel(client: &Client, args: &TaskArgs) -> Result<(), ClientError> {
    let answer = client.post(&format!("/task/{}/cancel", args.id))?;
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{}: {}", cell(&answer["state"]), cell(&answer["message"]));
    }
    Ok(())
}

/// `trainyard predict ID --row ...`: one prediction a line.
pub fn predict(client: &Client, args: &PredictArgs) -> Result<(), ClientError> {
    let rows = parse_rows(&args.rows)?;
    let answer = client.post_json(
        &format!("/models/{}/predict", args.id),
        &[],
        &PredictRequest { rows },
    )?;
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    for p in answer["predictions"].as_array().into_iter().flatten() {
        println!("{p}");
    }
    Ok(())
}

/// `--row` values (`V1,V2,...`) as rows of numbers.
pub(super) fn parse_rows(rows: &[String]) -> Result<Vec<Vec<f32>>, ClientError> {
    rows.iter()
        .map(|r| {
            r.split(',')
                .map(|v| {
                    v.trim().parse::<f32>().map_err(|_| {
                        ClientError::Usage(format!("--row {r:?}: {v:?} is not a number"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_name_offered_is_one_the_api_reads() {
        for name in ModelType::NAMES {
            assert_eq!(ModelType::parse_requested(name).unwrap().1, None, "{name}");
        }
        for old in OLD_MODEL_NAMES {
            assert_eq!(ModelType::parse_requested(old).unwrap().1, Some(old));
        }
    }
}
