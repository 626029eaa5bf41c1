//! The `trainyard` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    trainyard::cli::run(trainyard::cli::Cli::parse())
}
