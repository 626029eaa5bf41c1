//! The `trainyard` command line: the commands and where each one runs. Each command's
//! arguments live beside the code that runs it:
//!
//! - [`train`]: `train`, one training in this process.
//! - [`serve`]: `up` and `node`, a node in this process.
//! - [`crate::client`]: the HTTP verbs against a node (`submit`, `status`, `result`,
//!   `inspect`, `tasks`, `cancel`, `predict`, `nodes`, `health`, `purge`, `drain`, `resume`,
//!   `schedules`, `datasets`, `models`, `sweep`, `sweeps`), with the options they share
//!   (`--server`, `--json`, ...).
//! - [`bench`]: `bench`, which runs the `trainyard-bench` binary beside this one.
//! - `completions SHELL` and `man`: generated from these very definitions.
//!
//! This module only parses and dispatches; none of those imports it.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{
    self, Client, ClientError, ClientOpts, DatasetsCommand, DrainArgs, ModelsCommand, PredictArgs,
    ResumeArgs, SchedulesCommand, StatusArgs, SubmitArgs, SweepArgs, SweepsArgs, TaskArgs,
    TasksArgs,
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
    about = "Train machine-learning models as jobs on a cluster",
    after_help = client::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model in this process and print its metrics (--json: as one JSON object).
    Train(TrainArgs),
    /// Run one node with the embedded store: the API, the trainers, the panel.
    Up(UpArgs),
    /// Benchmark the whole system on this machine: starts redis-server and nodes, prints a
    /// table and writes it as JSON (see BENCHMARKS.md).
    ///
    /// Runs `trainyard-bench` (built beside this binary) with the same arguments.
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
    /// Run a node from a config file (flags over TRAINYARD_* variables over the file).
    Node(NodeArgs),
    /// Submit a training to a server; prints the task's id.
    Submit(SubmitArgs),
    /// Show a task's state and progress.
    Status(StatusArgs),
    /// Show a task's result.
    Result(TaskArgs),
    /// Show everything known about a task: request, attempts, timings, result.
    Inspect(TaskArgs),
    /// List tasks, newest first.
    Tasks(TasksArgs),
    /// Cancel a task.
    Cancel(TaskArgs),
    /// Show the cluster: nodes, their trainers and what each runs, and the leader.
    Nodes,
    /// Show the cluster's health; exit 4 when it is unhealthy.
    Health,
    /// Revoke every pending task (they become REVOKED, code `purged`).
    Purge,
    /// Stop giving NODE new work; its running tasks finish.
    Drain(DrainArgs),
    /// Give a drained NODE work again.
    Resume(ResumeArgs),
    /// Predict with a task's trained model: one row per --row, values comma separated.
    Predict(PredictArgs),
    /// Periodic trainings: create, list, show, pause, resume, delete.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Uploaded data sets: upload, list, delete.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// The model registry: list, show, register, alias, delete, predict.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Start a hyperparameter sweep over a space of parameters (each trial a task); prints
    /// its id, or with --follow a live table of the best trials and then the best one.
    Sweep(Box<SweepArgs>),
    /// Hyperparameter sweeps: list (the default), show, follow, cancel.
    Sweeps(SweepsArgs),
    /// Print the API's OpenAPI 3.1 document (what `GET /openapi.json` serves).
    Openapi,
    /// Print a completion script for SHELL (e.g. `trainyard completions bash >
    /// /etc/bash_completion.d/trainyard`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `trainyard man > trainyard.1; man ./trainyard.1`.
    Man,
}

/// Runs a parsed command line; errors are printed on stderr, and the exit code tells what
/// failed (see [`client::EXIT_CODES`]).
pub fn run(cli: Cli) -> ExitCode {
    crate::tls::init();
    let json = cli.client.json;
    let local = match cli.command {
        Command::Train(args) => train::train(&args, json),
        Command::Up(args) => serve::up(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Node(args) => serve::from_config(&args),
        Command::Openapi => {
            print!("{}", crate::api::openapi::json());
            Ok(())
        }
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a write error, and a reader that
            // stops early (`| head`) closes the pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "trainyard", &mut script);
            write_out(&script)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
        verb => return exit(run_client(&cli.client, verb)),
    };
    match local {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client verb against the server of `opts`.
fn run_client(opts: &ClientOpts, verb: Command) -> Result<(), ClientError> {
    let c = &Client::new(opts)?;
    match verb {
        Command::Submit(args) => client::submit(c, &args),
        Command::Status(args) => client::status(c, &args),
        Command::Result(args) => client::result(c, &args),
        Command::Inspect(args) => client::inspect(c, &args),
        Command::Tasks(args) => client::tasks(c, &args),
        Command::Cancel(args) => client::cancel(c, &args),
        Command::Nodes => client::nodes(c),
        Command::Health => client::health(c),
        Command::Purge => client::purge(c),
        Command::Drain(DrainArgs { node, wait }) => client::drain(c, &node, "drain", wait),
        Command::Resume(ResumeArgs { node }) => client::drain(c, &node, "resume", false),
        Command::Predict(args) => client::predict(c, &args),
        Command::Schedules(command) => client::schedules(c, &command),
        Command::Datasets(command) => client::datasets(c, &command),
        Command::Models(command) => client::models(c, &command),
        Command::Sweep(args) => client::sweep(c, &args),
        Command::Sweeps(args) => client::sweeps(c, &args),
        // The local commands never get here (`run` handles them).
        _ => Ok(()),
    }
}

/// The exit code of a client verb's outcome, its error printed.
fn exit(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// Writes `bytes` to standard output; a reader that closed the pipe early is no error.
fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
