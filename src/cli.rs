//! The `trainyard` command line. `train` runs one training in this process, with a progress bar
//! on a terminal, and prints the metrics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::TrainRequest;
use crate::config::Config;
use crate::training::{
    self, CancelToken, Dataset, DeviceSpec, FRIEDMAN1_DEFAULT_ROWS, GbdtParams, ModelType,
    TrainSpec,
};
use crate::{client, node};

#[derive(Debug, Parser)]
#[command(
    name = "trainyard",
    version,
    about = "Train machine-learning models as jobs on a cluster"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// PEM file of the CA(s) to trust for an `https://` --server (instead of the built-in
    /// web roots).
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model in this process and print its metrics.
    Train(TrainArgs),
    /// Run one node with the embedded store: the API, the trainers, the panel.
    Up(UpArgs),
    /// Benchmark the whole system on this machine: starts redis-server and nodes, prints a
    /// table and writes it as JSON (see BENCHMARKS.md).
    Bench(BenchArgs),
    /// Run a node from a config file.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Submit a training to a server.
    Submit(SubmitArgs),
    /// Show a task's state and progress.
    Status(StatusArgs),
    /// Show a task's result.
    Result(TaskArgs),
    /// Cancel a task.
    Cancel(TaskArgs),
    /// Show the cluster: nodes, their trainers and what each runs, and the leader.
    Nodes {
        #[arg(long, default_value = DEFAULT_SERVER)]
        server: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke every pending task (they become REVOKED, code `purged`).
    Purge {
        #[arg(long, default_value = DEFAULT_SERVER)]
        server: String,
    },
    /// Stop giving NODE new work; its running tasks finish.
    Drain {
        node: String,
        /// Wait until the node's running tasks have ended.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = DEFAULT_SERVER)]
        server: String,
    },
    /// Give a drained NODE work again.
    Resume {
        node: String,
        #[arg(long, default_value = DEFAULT_SERVER)]
        server: String,
    },
    /// Predict with a task's trained model: one row per --row, values comma separated.
    Predict {
        id: String,
        #[arg(long = "row", required = true)]
        rows: Vec<String>,
        #[arg(long, default_value = DEFAULT_SERVER)]
        server: String,
    },
    /// Print the API's OpenAPI 3.1 document (what `GET /openapi.json` serves).
    Openapi,
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:5000";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub http: String,
    /// Folder of the embedded store.
    #[arg(long, default_value = "trainyard-data")]
    pub data: PathBuf,
    /// CPU trainers (tasks trained at once).
    #[arg(long, default_value_t = 1)]
    pub trainers: usize,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A tenth of the tasks and shorter runs, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// Tiny trainings in the throughput run.
    #[arg(long, default_value_t = 5_000)]
    pub tasks: usize,
    /// Concurrent HTTP clients submitting.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// CPU trainers of the node in the main runs.
    #[arg(long, default_value_t = 2)]
    pub trainers: usize,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench.json")]
    pub out: PathBuf,
    /// Run only these workloads (comma-separated: throughput, latency, status, dispatch,
    /// replicas, memory, scaling, predict); all by default.
    #[arg(long, value_delimiter = ',', value_parser = ["throughput", "latency", "status", "dispatch", "replicas", "memory", "scaling", "predict"])]
    pub only: Vec<String>,
    /// Instead of the workloads: tiny trainings at full load for this many minutes, printing
    /// node and Redis memory, the AOF's size and tasks/s every 30 s.
    #[arg(long, value_name = "MINUTES")]
    pub soak: Option<f64>,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    pub id: String,
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
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

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// mlp, linear, gbdt or all (or the old service's tensorflow, pytorch, xgboost).
    pub model: ModelType,
    /// A built-in data set: friedman1 (default), diabetes or winequality.
    #[arg(long, conflicts_with = "csv")]
    pub dataset: Option<String>,
    /// A CSV file with a header line; needs --target.
    #[arg(long, requires = "target")]
    pub csv: Option<PathBuf>,
    /// The CSV column to predict.
    #[arg(long, requires = "csv")]
    pub target: Option<String>,
    /// Rows of the synthetic friedman1 data set.
    #[arg(long, default_value_t = FRIEDMAN1_DEFAULT_ROWS)]
    pub rows: usize,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Trees of the gradient-boosted model.
    #[arg(long)]
    pub trees: Option<u32>,
    /// Learning rate of the gradient-boosted model.
    #[arg(long)]
    pub tree_learning_rate: Option<f64>,
    /// Depth of each tree.
    #[arg(long)]
    pub max_depth: Option<u32>,
    /// Stop with an error after this many seconds.
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// cpu or gpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Write the trained model's bytes to this file.
    #[arg(long)]
    pub save_model: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    fn spec(&self) -> TrainSpec {
        let g = GbdtParams::default();
        let request = TrainRequest {
            gbdt: Some(GbdtParams {
                n_trees: self.trees.unwrap_or(g.n_trees),
                learning_rate: self.tree_learning_rate.unwrap_or(g.learning_rate),
                max_depth: self.max_depth.unwrap_or(g.max_depth),
                ..g
            }),
            test_fraction: self.test_fraction,
            time_limit_s: self.time_limit_s,
            ..self.hyper.request()
        };
        let spec = request.spec(self.model);
        TrainSpec {
            dataset: self.dataset.clone().unwrap_or(spec.dataset.clone()),
            ..spec
        }
    }

    fn dataset(&self, spec: &TrainSpec) -> anyhow::Result<Dataset> {
        if let (Some(path), Some(target)) = (&self.csv, &self.target) {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_stem()
                .map_or("csv".into(), |s| s.to_string_lossy());
            return Ok(Dataset::from_csv(&bytes, &name, target)?);
        }
        if spec.dataset == "friedman1" {
            return Ok(Dataset::friedman1(self.rows, spec.seed));
        }
        Ok(Dataset::builtin(&spec.dataset, spec.seed)?)
    }
}

/// Runs a parsed command line; errors are printed on stderr.
pub fn run(cli: Cli) -> ExitCode {
    crate::tls::init();
    if let Err(e) = client::trust(cli.ca_file.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Train(args) => train(&args),
        Command::Up(args) => up(&args),
        Command::Bench(args) => match args.soak {
            Some(minutes) => crate::bench::soak(&args, minutes),
            None => crate::bench::run(&args),
        },
        Command::Node { config } => Config::load(Some(&config), std::env::vars())
            .map_err(Into::into)
            .and_then(run_node),
        Command::Submit(args) => client::submit(&args),
        Command::Status(args) if args.follow => client::follow(&args.server, &args.id),
        Command::Status(args) => client::show(&args.server, &format!("/task/{}/status", args.id)),
        Command::Result(args) => client::show(&args.server, &format!("/task/{}/result", args.id)),
        Command::Cancel(args) => client::cancel(&args),
        Command::Nodes { server, json } => client::nodes(&server, json),
        Command::Purge { server } => client::purge(&server),
        Command::Drain { node, wait, server } => client::drain(&server, &node, "drain", wait),
        Command::Resume { node, server } => client::drain(&server, &node, "resume", false),
        Command::Predict { id, rows, server } => client::predict(&server, &id, &rows),
        Command::Openapi => {
            print!("{}", crate::api::openapi::json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(args: &UpArgs) -> anyhow::Result<()> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    let store = format!("embedded:{}", args.data.join("trainyard.redb").display());
    let devices = format!("[{}]", vec!["\"cpu\""; args.trainers.max(1)].join(", "));
    // Flags go first so that TRAINYARD_* variables still override them.
    env.splice(
        0..0,
        [
            ("TRAINYARD_HTTP__LISTEN".to_string(), args.http.clone()),
            ("TRAINYARD_STORE__URL".to_string(), store),
            ("TRAINYARD_TRAINERS__DEVICES".to_string(), devices),
        ],
    );
    let config = Config::load(None, env)?;
    let scheme = if config.http.tls_cert.is_empty() {
        "http"
    } else {
        "https"
    };
    println!(
        "trainyard is up at {scheme}://{} (Ctrl-C to stop)",
        config.http.listen
    );
    run_node(config)
}

fn run_node(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ractor=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let stopped = runtime.block_on(node::run(config, shutdown_signal()));
    // A training deaf to its cancel must not keep a stopped node's process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(stopped?)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let spec = args.spec();
    spec.validate()?;
    let dataset = args.dataset(&spec)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("template is valid"),
    );
    let mut on_progress = |p: &training::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.current);
        match p.loss {
            Some(loss) => bar.set_message(format!("{} loss {loss:.4}", p.message)),
            None => bar.set_message(p.message.clone()),
        }
    };
    let outcome = training::train(
        &spec,
        &dataset,
        &args.device,
        &mut on_progress,
        &CancelToken::new(),
    );
    bar.finish_and_clear();
    let outcome = outcome?;
    if let Some(path) = &args.save_model {
        std::fs::write(path, &outcome.model_bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let peak_rss_bytes = peak_rss_bytes();
    if args.json {
        let out = serde_json::json!({
            "success": true,
            "message": outcome.message(),
            "model_type": outcome.model_type,
            "best_model": outcome.best,
            "dataset": {"name": dataset.name, "rows": dataset.n_rows(), "features": dataset.n_features()},
            "device": args.device.to_string(),
            "metrics": outcome.metrics_json(),
            "peak_rss_bytes": peak_rss_bytes,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "data set {} ({} rows, {} features), device {}",
        dataset.name,
        dataset.n_rows(),
        dataset.n_features(),
        args.device
    );
    println!(
        "{:<8} {:>9} {:>9} {:>10} {:>10} {:>11} {:>9} {:>13}",
        "model",
        "train_r2",
        "test_r2",
        "train_rmse",
        "test_rmse",
        "final_loss",
        "seconds",
        "samples/s"
    );
    for r in &outcome.reports {
        let m = &r.metrics;
        println!(
            "{:<8} {:>9.4} {:>9.4} {:>10.4} {:>10.4} {:>11.4} {:>9.3} {:>13.0}",
            r.model_type.as_str(),
            m.train_r2,
            m.test_r2,
            m.train_rmse,
            m.test_rmse,
            m.final_loss,
            m.duration_s,
            m.samples_per_s
        );
    }
    if outcome.reports.len() > 1 {
        println!("best model: {}", outcome.best);
    }
    if let Some(bytes) = peak_rss_bytes {
        println!("peak resident memory: {:.1} MB", bytes as f64 / 1e6);
    }
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`), if the platform tells.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
