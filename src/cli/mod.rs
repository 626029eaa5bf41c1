//! The `trainyard` command line: the commands and where each one runs. Each command's
//! arguments live beside the code that runs it:
//!
//! - [`train`]: `train`, one training in this process.
//! - [`serve`]: `up` and `node`, a node in this process.
//! - [`crate::client`]: `submit`, `status`, `result`, `cancel`, `nodes`, `purge`, `drain`,
//!   `resume` and `predict`, HTTP requests to a node.
//! - [`bench`]: `bench`, which runs the `trainyard-bench` binary beside this one.
//!
//! This module only parses and dispatches; none of those imports it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{
    self, DrainArgs, NodesArgs, PredictArgs, PurgeArgs, ResumeArgs, StatusArgs, SubmitArgs,
    TaskArgs,
};

pub mod bench;
pub mod serve;
pub mod train;

use bench::BenchArgs;
use serve::{NodeArgs, UpArgs};
use train::TrainArgs;

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
    ///
    /// Runs `trainyard-bench` (built beside this binary) with the same arguments.
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
    /// Run a node from a config file.
    Node(NodeArgs),
    /// Submit a training to a server.
    Submit(SubmitArgs),
    /// Show a task's state and progress.
    Status(StatusArgs),
    /// Show a task's result.
    Result(TaskArgs),
    /// Cancel a task.
    Cancel(TaskArgs),
    /// Show the cluster: nodes, their trainers and what each runs, and the leader.
    Nodes(NodesArgs),
    /// Revoke every pending task (they become REVOKED, code `purged`).
    Purge(PurgeArgs),
    /// Stop giving NODE new work; its running tasks finish.
    Drain(DrainArgs),
    /// Give a drained NODE work again.
    Resume(ResumeArgs),
    /// Predict with a task's trained model: one row per --row, values comma separated.
    Predict(PredictArgs),
    /// Print the API's OpenAPI 3.1 document (what `GET /openapi.json` serves).
    Openapi,
}

/// Runs a parsed command line; errors are printed on stderr.
pub fn run(cli: Cli) -> ExitCode {
    crate::tls::init();
    if let Err(e) = client::trust(cli.ca_file.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Train(args) => train::train(&args),
        Command::Up(args) => serve::up(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Node(args) => serve::from_config(&args),
        Command::Submit(args) => client::submit(&args),
        Command::Status(args) if args.follow => client::follow(&args.server, &args.id),
        Command::Status(args) => client::show(&args.server, &format!("/task/{}/status", args.id)),
        Command::Result(args) => client::show(&args.server, &format!("/task/{}/result", args.id)),
        Command::Cancel(args) => client::cancel(&args),
        Command::Nodes(NodesArgs { server, json }) => client::nodes(&server, json),
        Command::Purge(PurgeArgs { server }) => client::purge(&server),
        Command::Drain(DrainArgs { node, wait, server }) => {
            client::drain(&server, &node, "drain", wait)
        }
        Command::Resume(ResumeArgs { node, server }) => {
            client::drain(&server, &node, "resume", false)
        }
        Command::Predict(PredictArgs { id, rows, server }) => client::predict(&server, &id, &rows),
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
