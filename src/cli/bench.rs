//! `trainyard bench`: runs `trainyard-bench`, the system benchmark, which is a binary of the
//! test kit (`crates/testkit`), not part of this library. Cargo builds both binaries into the
//! same folder; this one runs the one beside it, with every argument as given, and tells it to
//! start its nodes from this very binary (`TRAINYARD_BIN`).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

/// Every argument of `trainyard-bench` (see `trainyard bench --help`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Runs `trainyard-bench ARGS` beside this binary and fails as it fails.
pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bench = bench_binary(&exe);
    if !bench.is_file() {
        bail!(
            "{} not found: build it with `cargo build --workspace` (or `--release`)",
            bench.display()
        );
    }
    let status = std::process::Command::new(&bench)
        .args(&args.args)
        .env("TRAINYARD_BIN", &exe)
        .status()
        .with_context(|| format!("cannot run {}", bench.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", bench.display());
    }
    Ok(())
}

/// `trainyard-bench` in the folder of `exe`.
fn bench_binary(exe: &std::path::Path) -> PathBuf {
    let name = format!("trainyard-bench{}", std::env::consts::EXE_SUFFIX);
    exe.with_file_name(name)
}
