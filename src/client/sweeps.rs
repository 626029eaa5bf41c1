//! `trainyard sweep MODEL --space FILE.json`: a hyperparameter sweep (`POST /sweeps`), and
//! with `--follow` its live table to its end; `trainyard sweeps`: list, show, follow and
//! cancel them. The tables and the following live in `sweep_table.rs`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::sweep_table::{follow_sweep, print_list, print_sweep};
use super::tasks::TreeArgs;
use super::{Body, Client, ClientError};
use crate::api::{SweepRequest, TrainRequest};
use crate::store::RegisterRule;
use crate::training::DeviceClass;

/// The ids of [`FixedArgs`]' flags, which `--request FILE.json` replaces.
const FIXED_FLAGS: [&str; 14] = [
    "dataset",
    "epochs",
    "learning_rate",
    "hidden_sizes",
    "batch_size",
    "train_seed",
    "test_fraction",
    "trees",
    "tree_learning_rate",
    "max_depth",
    "min_samples_leaf",
    "max_retries",
    "time_limit_s",
    "device",
];

/// `trainyard sweep MODEL`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The model type every trial trains.
    #[arg(value_parser = ["mlp", "linear", "gbdt"])]
    pub model: String,
    /// A JSON file with the search space: per parameter (learning_rate, hidden_sizes,
    /// batch_size, epochs, n_trees, max_depth, min_samples_leaf) one of {"uniform": [a, b]},
    /// {"loguniform": [a, b]}, {"int": [a, b]}, {"choice": [...]}.
    #[arg(long, value_name = "FILE.json")]
    pub space: PathBuf,
    /// A JSON file with the fixed part of every trial (the body of POST /train/MODEL/async),
    /// instead of the training flags.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = FIXED_FLAGS)]
    pub request: Option<PathBuf>,
    #[command(flatten)]
    pub fixed: FixedArgs,
    /// Trials to draw (random; default 16); a grid has as many as its points.
    #[arg(long)]
    pub trials: Option<u32>,
    /// Most trials running at once (default 4).
    #[arg(long)]
    pub parallel: Option<u32>,
    /// random (default) or grid (every combination once; choice and int only).
    #[arg(long, value_parser = ["random", "grid"])]
    pub strategy: Option<String>,
    /// The metric trials are ranked by, on held-out training rows: val_loss (default),
    /// val_r2 or val_rmse.
    #[arg(long)]
    pub metric: Option<String>,
    /// min or max (default: what the metric says is better).
    #[arg(long, value_parser = ["min", "max"])]
    pub mode: Option<String>,
    /// Early stopping by ASHA: min resource, max resource (epochs, or trees for gbdt) and
    /// reduction factor, e.g. 1,27,3.
    #[arg(long, value_name = "MIN,MAX,RF", value_delimiter = ',',
        conflicts_with_all = ["asha_min", "asha_max", "asha_rf"])]
    pub asha: Option<Vec<u64>>,
    /// ASHA's smallest resource, a trial's first rung (default 1).
    #[arg(long, requires = "asha_max")]
    pub asha_min: Option<u64>,
    /// ASHA's largest resource: what every trial trains up to (turns early stopping on).
    #[arg(long)]
    pub asha_max: Option<u64>,
    /// ASHA's reduction factor: a trial goes on at a rung if in the top 1/RF (default 3).
    #[arg(long, requires = "asha_max")]
    pub asha_rf: Option<u64>,
    /// Seeds the draws of the trials' parameters (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The sweep's name: 1 to 64 letters, digits, '-', '_' or '.' (default sweep).
    #[arg(long)]
    pub name: Option<String>,
    /// Share of the training rows held out to rank trials by (default 0.2).
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// The trials' priority, 0-9 (default: the request's).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: Option<u8>,
    /// Once it ends, register the best trial's model as the next version of this model.
    #[arg(long, value_name = "MODEL_NAME")]
    pub register: Option<String>,
    /// With --register: move this alias to the new version when it beats the one it points
    /// at on the sweep's metric.
    #[arg(long, requires = "register")]
    pub promote_alias: Option<String>,
    /// Follow the sweep to its end with a live table of the best trials, then print the best.
    #[arg(long)]
    pub follow: bool,
}

/// The fixed part of every trial, as flags (the parameters the space draws override them).
#[derive(Debug, Args)]
pub struct FixedArgs {
    /// A built-in data set (friedman1, diabetes, winequality) or an uploaded data set's id.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Passes over the training rows (burn models); with ASHA, leave it out or give its max.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Adam's learning rate (burn models).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Hidden layer sizes, comma separated, input side first (e.g. 64,32).
    #[arg(long, value_delimiter = ',')]
    pub hidden_sizes: Option<Vec<u32>>,
    /// Rows per mini-batch.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Seeds every trial's split, shuffles and weights (the same for all trials).
    #[arg(long)]
    pub train_seed: Option<u64>,
    /// Share of rows held out for the test metrics (default 0.2).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[command(flatten)]
    pub trees: TreeArgs,
    /// Attempts after the first, 0-10 (the node's [tasks] max_retries when unset).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub max_retries: Option<u32>,
    /// Wall-clock limit of each trial in seconds.
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// The kind of trainer to run on.
    #[arg(long, value_parser = ["any", "cpu", "gpu"])]
    pub device: Option<String>,
}

impl FixedArgs {
    /// The request these flags make: unset fields stay out (the server's defaults), and so
    /// do the unset trees' parameters (so that ASHA may set `n_trees`).
    fn request(&self) -> Result<Value, ClientError> {
        let request = TrainRequest {
            dataset: self.dataset.clone(),
            epochs: self.epochs,
            learning_rate: self.learning_rate,
            hidden_sizes: self.hidden_sizes.clone(),
            batch_size: self.batch_size,
            seed: self.train_seed,
            test_fraction: self.test_fraction,
            max_retries: self.max_retries,
            time_limit_s: self.time_limit_s,
            device: self.device.as_deref().and_then(|d| {
                DeviceClass::ALL
                    .into_iter()
                    .find(|class| class.as_str() == d)
            }),
            ..TrainRequest::default()
        };
        let mut value = to_value(&request)?;
        let t = &self.trees;
        let mut gbdt = Map::new();
        let fields = [
            ("n_trees", t.trees.map(Value::from)),
            ("learning_rate", t.tree_learning_rate.map(Value::from)),
            ("max_depth", t.max_depth.map(Value::from)),
            ("min_samples_leaf", t.min_samples_leaf.map(Value::from)),
        ];
        for (key, v) in fields {
            if let Some(v) = v {
                gbdt.insert(key.into(), v);
            }
        }
        if !gbdt.is_empty()
            && let Value::Object(fields) = &mut value
        {
            fields.insert("gbdt".into(), Value::Object(gbdt));
        }
        Ok(value)
    }
}

impl SweepArgs {
    /// The body of `POST /sweeps`.
    fn body(&self) -> Result<SweepRequest, ClientError> {
        let request = match &self.request {
            Some(path) => read_json(path)?,
            None => self.fixed.request()?,
        };
        Ok(SweepRequest {
            name: self.name.clone(),
            model_type: Some(self.model.clone()),
            dataset: None,
            request: Some(request),
            space: Some(read_json(&self.space)?),
            strategy: self.strategy.clone(),
            trials: self.trials,
            parallel: self.parallel,
            metric: self.metric.clone(),
            mode: self.mode.clone(),
            early_stopping: self.asha()?,
            seed: self.seed,
            priority: self.priority,
            validation_fraction: self.validation_fraction,
            register: self.register.as_ref().map(|name| RegisterRule {
                name: name.clone(),
                promote_alias: self.promote_alias.clone(),
                metric: None,
                mode: None,
            }),
        })
    }

    /// `{"asha": {...}}` from `--asha` or the `--asha-*` flags (the server checks the bounds).
    fn asha(&self) -> Result<Option<Value>, ClientError> {
        let (min, max, rf) = match &self.asha {
            Some(values) => match values[..] {
                [min, max, rf] => (Some(min), Some(max), Some(rf)),
                _ => {
                    return Err(ClientError::Usage(format!(
                        "--asha takes three numbers MIN,MAX,RF (e.g. 1,27,3), got {} of them",
                        values.len()
                    )));
                }
            },
            None if self.asha_max.is_some() => (self.asha_min, self.asha_max, self.asha_rf),
            None => return Ok(None),
        };
        let mut asha = Map::new();
        for (key, v) in [
            ("min_resource", min),
            ("max_resource", max),
            ("reduction_factor", rf),
        ] {
            if let Some(v) = v {
                asha.insert(key.into(), v.into());
            }
        }
        Ok(Some(serde_json::json!({ "asha": asha })))
    }
}

#[derive(Debug, Subcommand)]
pub enum SweepsCommand {
    /// List the sweeps, newest first: state, trial counts, best metric.
    List,
    /// Show a sweep: every trial, its parameters, resource and metrics, and the best.
    Show(IdArgs),
    /// Follow a sweep to its end with a live table of the best trials.
    Follow(IdArgs),
    /// Cancel a sweep: no more trials start, the running ones are revoked.
    Cancel(IdArgs),
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The sweep's id.
    pub id: String,
}

/// `trainyard sweeps [SUBCOMMAND]` (list when none is given).
#[derive(Debug, Args)]
pub struct SweepsArgs {
    #[command(subcommand)]
    pub command: Option<SweepsCommand>,
}

/// Runs `trainyard sweep`: creates the sweep and prints its id (or, with `--follow`, its
/// table to its end and the best trial).
pub fn sweep(client: &Client, args: &SweepArgs) -> Result<(), ClientError> {
    let body = to_value(&args.body()?)?;
    let answer = client.call("POST", "/sweeps", &[], Body::Json(body))?;
    let id = answer["sweep"]["sweep_id"].as_str().unwrap_or_default();
    if args.follow {
        if !client.json {
            eprintln!("{}: sweep {id}", cell_str(&answer["message"]));
        }
        return follow_sweep(client, id);
    }
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{id}");
    }
    Ok(())
}

/// Runs one `trainyard sweeps` subcommand.
pub fn sweeps(client: &Client, args: &SweepsArgs) -> Result<(), ClientError> {
    let list = SweepsCommand::List;
    let command = args.command.as_ref().unwrap_or(&list);
    let answer = match command {
        SweepsCommand::List => client.get("/sweeps")?,
        SweepsCommand::Show(IdArgs { id }) => client.get(&format!("/sweeps/{id}"))?,
        SweepsCommand::Follow(IdArgs { id }) => return follow_sweep(client, id),
        SweepsCommand::Cancel(IdArgs { id }) => client.post(&format!("/sweeps/{id}/cancel"))?,
    };
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    match command {
        SweepsCommand::List => print_list(&answer),
        SweepsCommand::Cancel(IdArgs { id }) => {
            println!("sweep {id}: {}", cell_str(&answer["message"]));
        }
        _ => print_sweep(&answer, usize::MAX),
    }
    Ok(())
}

fn cell_str(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(value).map_err(|e| ClientError::Usage(e.to_string()))
}

/// The JSON in the file at `path`.
fn read_json(path: &Path) -> Result<Value, ClientError> {
    let local = |reason: String| ClientError::LocalFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| local(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| local(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    /// A space file of the test `name` (tests run at once: one file each).
    fn space_file(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "trainyard-sweep-space-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, r#"{"learning_rate": {"loguniform": [0.001, 0.1]}}"#).unwrap();
        path
    }

    #[test]
    fn the_flags_make_a_body_the_api_reads() {
        let space = space_file("flags");
        let cli = Cli::parse_from([
            "x",
            "gbdt",
            "--space",
            space.to_str().unwrap(),
            "--dataset",
            "diabetes",
            "--max-depth",
            "3",
            "--trials",
            "8",
            "--parallel",
            "2",
            "--asha",
            "10,90,3",
            "--seed",
            "7",
            "--train-seed",
            "5",
            "--mode",
            "min",
        ]);
        let body = to_value(&cli.sweep.body().unwrap()).unwrap();
        let read: SweepRequest = serde_json::from_value(body).unwrap();
        assert_eq!(read.model_type.as_deref(), Some("gbdt"));
        assert_eq!(
            (read.trials, read.parallel, read.seed),
            (Some(8), Some(2), Some(7))
        );
        let request = read.request.unwrap();
        assert_eq!(request["dataset"], "diabetes");
        assert_eq!(request["seed"], 5);
        // Only the trees' flags given: n_trees is left for ASHA's max.
        assert_eq!(request["gbdt"], serde_json::json!({"max_depth": 3}));
        assert_eq!(
            read.early_stopping.unwrap(),
            serde_json::json!({"asha": {"min_resource": 10, "max_resource": 90,
                "reduction_factor": 3}})
        );
        assert_eq!(read.space.unwrap()["learning_rate"]["loguniform"][1], 0.1);
    }

    #[test]
    fn asha_takes_three_numbers_or_its_own_flags() {
        let space = space_file("asha");
        let space = space.to_str().unwrap();
        let cli = Cli::parse_from(["x", "mlp", "--space", space, "--asha", "1,9"]);
        let err = cli.sweep.body().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("MIN,MAX,RF"), "{err}");
        let cli = Cli::parse_from(["x", "mlp", "--space", space, "--asha-max", "9"]);
        assert_eq!(
            cli.sweep.body().unwrap().early_stopping.unwrap(),
            serde_json::json!({"asha": {"max_resource": 9}})
        );
        assert!(Cli::try_parse_from(["x", "mlp", "--space", space, "--asha-rf", "2"]).is_err());
        assert!(
            Cli::try_parse_from([
                "x",
                "mlp",
                "--space",
                space,
                "--request",
                space,
                "--epochs",
                "3"
            ])
            .is_err()
        );
        let missing = Cli::parse_from(["x", "mlp", "--space", "/nonexistent/space.json"]);
        assert!(matches!(
            missing.sweep.body(),
            Err(ClientError::LocalFile { .. })
        ));
    }
}
