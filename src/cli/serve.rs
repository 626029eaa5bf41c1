//! `trainyard up` and `trainyard node`: run one node in this process until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::node;

/// `--log-format`: how the node writes its log (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Lines for people.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

impl LogFormatArg {
    fn as_str(self) -> &'static str {
        match self {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        }
    }
}

/// `trainyard up`. Each flag given overrides the `TRAINYARD_*` variable of its key; one not
/// given leaves the variable (or, without one, the default shown) in force.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address of the API [default: 127.0.0.1:5000] (key TRAINYARD_HTTP__LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Folder of the embedded store [default: trainyard-data]; it takes the place of an
    /// embedded TRAINYARD_STORE__URL, and leaves a Redis one alone.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// CPU trainers, 1-1024 [default: 1] (key TRAINYARD_TRAINERS__DEVICES).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub trainers: Option<u32>,
    /// How the node logs (overrides TRAINYARD_LOG__FORMAT) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// `trainyard node --config PATH`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's TOML config (every key: config/trainyard.toml); TRAINYARD_SECTION__KEY
    /// variables override it.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// How the node logs (overrides TRAINYARD_LOG__FORMAT and [log] format).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// `trainyard node --config PATH`: a node from its config file.
pub fn from_config(args: &NodeArgs) -> anyhow::Result<()> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(format) = args.log_format {
        env.push(("TRAINYARD_LOG__FORMAT".into(), format.as_str().into()));
    }
    run_node(Config::load(Some(&args.config), env)?)
}

/// `trainyard up`: a node on the embedded store, its settings from the flags.
pub fn up(args: &UpArgs) -> anyhow::Result<()> {
    let config = Config::load(None, up_env(args, std::env::vars().collect()))?;
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

/// The settings of `up` as `TRAINYARD_*` pairs, later ones winning: `up`'s defaults, then the
/// environment `env`, then the flags given.
fn up_env(args: &UpArgs, env: Vec<(String, String)>) -> Vec<(String, String)> {
    const STORE: &str = "TRAINYARD_STORE__URL";
    let store =
        |dir: &std::path::Path| format!("embedded:{}", dir.join("trainyard.redb").display());
    let devices = |n: u32| format!("[{}]", vec!["\"cpu\""; n as usize].join(", "));
    let mut all: Vec<(String, String)> = vec![
        ("TRAINYARD_HTTP__LISTEN".into(), "127.0.0.1:5000".into()),
        (STORE.into(), store(std::path::Path::new("trainyard-data"))),
        ("TRAINYARD_TRAINERS__DEVICES".into(), devices(1)),
    ];
    // `--data` names the embedded store's folder: it does not turn a Redis store into one.
    let redis = env
        .iter()
        .any(|(k, v)| k == STORE && !v.trim().starts_with("embedded:"));
    all.extend(env);
    if let Some(http) = &args.http {
        all.push(("TRAINYARD_HTTP__LISTEN".into(), http.clone()));
    }
    if let Some(data) = args.data.as_deref().filter(|_| !redis) {
        all.push((STORE.into(), store(data)));
    }
    if let Some(n) = args.trainers {
        all.push(("TRAINYARD_TRAINERS__DEVICES".into(), devices(n)));
    }
    if let Some(format) = args.log_format {
        all.push(("TRAINYARD_LOG__FORMAT".into(), format.as_str().into()));
    }
    all
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Config {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            up: UpArgs,
        }
        let cli =
            <Cli as clap::Parser>::parse_from(std::iter::once("up").chain(args.iter().copied()));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, up_env(&cli.up, env)).unwrap()
    }

    #[test]
    fn up_takes_flags_over_the_environment_over_its_defaults() {
        let config = load(&[], &[]);
        assert_eq!(config.http.listen, "127.0.0.1:5000");
        assert_eq!(config.store.url, "embedded:trainyard-data/trainyard.redb");
        assert_eq!(config.trainers.devices.len(), 1);
        assert_eq!(config.log.format, crate::config::LogFormat::Text);

        let env = [
            ("TRAINYARD_HTTP__LISTEN", "127.0.0.1:7001"),
            ("TRAINYARD_TRAINERS__DEVICES", "[\"cpu\", \"cpu\"]"),
            ("TRAINYARD_LOG__FORMAT", "json"),
            ("TRAINYARD_STORE__URL", "embedded:/env/s.redb"),
        ];
        let config = load(&[], &env);
        assert_eq!(config.http.listen, "127.0.0.1:7001");
        assert_eq!(config.trainers.devices.len(), 2);
        assert_eq!(config.log.format, crate::config::LogFormat::Json);
        assert_eq!(config.store.url, "embedded:/env/s.redb");

        let flags = [
            "--http",
            "127.0.0.1:7002",
            "--trainers",
            "3",
            "--log-format",
            "text",
            "--data",
            "/flag",
        ];
        let config = load(&flags, &env);
        assert_eq!(config.http.listen, "127.0.0.1:7002");
        assert_eq!(config.trainers.devices.len(), 3);
        assert_eq!(config.log.format, crate::config::LogFormat::Text);
        assert_eq!(config.store.url, "embedded:/flag/trainyard.redb");

        // --data does not replace a Redis store named in the environment.
        let config = load(
            &["--data", "/flag"],
            &[
                ("TRAINYARD_STORE__URL", "redis://127.0.0.1:6379/0"),
                ("TRAINYARD_NODE__COOKIE", "0123456789abcdef0123"),
            ],
        );
        assert_eq!(config.store.url, "redis://127.0.0.1:6379/0");
    }
}
