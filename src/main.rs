//! The `trainyard` binary: parse the command line and run it.

use clap::Parser;

/// mimalloc, not the system allocator: a node allocates and frees small buffers for every task
/// (JSON, Redis commands, tensors), and glibc's malloc took about a sixth of its CPU. Built
/// `no_thp`: with transparent huge pages its idle node was twice the size (28 MB, not 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trainyard::cli::run(trainyard::cli::Cli::parse())
}
