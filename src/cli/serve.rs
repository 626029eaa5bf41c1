//! `trainyard up` and `trainyard node`: run one node in this process until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::node;

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
pub struct NodeArgs {
    #[arg(long)]
    pub config: PathBuf,
}

/// `trainyard node --config PATH`: a node from its config file.
pub fn from_config(args: &NodeArgs) -> anyhow::Result<()> {
    run_node(Config::load(Some(&args.config), std::env::vars())?)
}

/// `trainyard up`: a node on the embedded store, its settings from the flags.
pub fn up(args: &UpArgs) -> anyhow::Result<()> {
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
    crate::logging::init(config.log.format, &config.node.name);
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
