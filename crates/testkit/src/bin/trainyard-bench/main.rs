//! `trainyard-bench` (also run as `trainyard bench`): the benchmark of the whole system, run
//! on this machine from scratch. It starts a `redis-server` (AOF on, `appendfsync everysec`)
//! on a free port and `trainyard node` processes, drives them over HTTP like real clients,
//! prints a table and writes it as JSON. See BENCHMARKS.md for the figures and what bounds
//! each.
//!
//! The nodes run the `trainyard` binary at `$TRAINYARD_BIN` (which `trainyard bench` sets to
//! itself), else the one beside this executable.
//!
//! - `cluster.rs`: the nodes under test, and what the bench asks of them besides load.
//! - `load.rs`: the load generator (raw keep-alive HTTP/1.1 connections, one thread).
//! - `runs.rs`: the measured runs (throughput, latency, predict, dispatch).
//! - `batch.rs`: submissions through `POST /tasks`, and no-op tasks end to end.
//! - `memory.rs`: Redis's memory per finished task, and the soak run.
//! - `report.rs`: Redis's work per task, and the table.
//! - `nodes.rs`: many node processes on one Redis: formation, dispatch, failover, mesh.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use trainyard_testkit::{RedisServer, procfs, temp_dir};

use crate::cluster::{Cluster, NodeAdmin, upload_dataset};
use crate::load::{status_load, submit_all};
use crate::runs::{dispatch_cost, predict_load, submit_to_start, throughput, throughput_on};

mod batch;
mod cluster;
mod load;
mod memory;
mod nodes;
mod report;
mod runs;

/// Features of the benchmark's data set (200 rows, a linear target with noise).
const FEATURES: usize = 8;
const ROWS: usize = 200;

/// Benchmark the whole system on this machine: starts redis-server and nodes, prints a table
/// and writes it as JSON (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "trainyard-bench", version)]
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
    /// replicas, memory, scaling, predict, batch, noop, nodes); all but nodes by default.
    #[arg(long, value_delimiter = ',', value_parser = ["throughput", "latency", "status", "dispatch", "replicas", "memory", "scaling", "predict", "batch", "noop", "nodes"])]
    pub only: Vec<String>,
    /// Node processes of the nodes run, one run per number (comma-separated: 10,25,50,100).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub nodes: Vec<usize>,
    /// CPU trainers of each node in the nodes run.
    #[arg(long, default_value_t = 8)]
    pub trainers_per_node: usize,
    /// Submissions of the batch run (no-op tasks through `POST /tasks`).
    #[arg(long, default_value_t = 100_000)]
    pub batch_submissions: usize,
    /// Items per `POST /tasks` call in the batch run.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Instead of the workloads: tiny trainings at full load for this many minutes, printing
    /// node and Redis memory, the AOF's size and tasks/s every 30 s.
    #[arg(long, value_name = "MINUTES")]
    pub soak: Option<f64>,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let result = match args.soak {
        Some(minutes) => memory::soak(&args, minutes),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = temp_dir("bench");
    let redis = RedisServer::durable();
    let scale = |n: usize| if args.quick { n / 10 } else { n };
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), json!(procfs::machine()));

    // The nodes run starts a hundred processes: only when asked for.
    let wants = |workload: &str| {
        (args.only.is_empty() && workload != "nodes") || args.only.iter().any(|w| w == workload)
    };

    eprintln!("== one node, {} trainers", args.trainers);
    if ["throughput", "latency", "status", "dispatch"]
        .iter()
        .any(|w| wants(w))
    {
        let cluster = Cluster::start(&redis, &dir, "one", &[args.trainers])?;
        let node = &cluster.nodes[0];
        eprintln!("   node pid {}", node.child.id());
        std::thread::sleep(Duration::from_secs(2));
        let idle_rss = node.rss_mb();
        let dataset = upload_dataset(&node.url)?;
        // The status load reads tasks of the throughput run; without that run, a few hundred.
        let tasks = if wants("throughput") {
            scale(args.tasks)
        } else {
            200
        };
        let processes = [
            ("node", node.child.id()),
            ("redis", redis.pid()),
            ("load_generator", std::process::id()),
        ];
        let mut throughput =
            throughput(&node.url, &dataset, tasks, args.clients, &processes, &redis)?;
        let after_rss = node.rss_mb();
        let sample_ids = throughput.as_object_mut().unwrap().remove("sample_ids");
        if wants("throughput") {
            eprintln!("   {throughput}");
            report.insert("throughput".into(), throughput);
            report.insert(
                "memory_mb".into(),
                json!({"idle": idle_rss, "after_throughput": after_rss}),
            );
        }
        if wants("latency") {
            let latency = submit_to_start(&node.url, &dataset, scale(500))?;
            eprintln!("   {latency}");
            report.insert("submit_to_start".into(), latency);
        }
        if wants("status") {
            let ids: Vec<String> = sample_ids
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let seconds = if args.quick { 3 } else { 10 };
            let status = status_load(&node.url, &ids, 64, Duration::from_secs(seconds))?;
            eprintln!("   {status}");
            report.insert("status".into(), status);
            // Tasks still queued (the node drained, so none runs): every answer reads Redis.
            node.set_draining(true)?;
            let queued = submit_all(std::slice::from_ref(&node.url), &dataset, 1_000, 16)?;
            let status = status_load(&node.url, &queued, 64, Duration::from_secs(seconds))?;
            node.purge()?;
            node.set_draining(false)?;
            eprintln!("   queued: {status}");
            report.insert("status_queued".into(), status);
        }
        if wants("dispatch") {
            let depths: Vec<usize> = if args.quick {
                vec![1_000, 10_000]
            } else {
                vec![1_000, 10_000, 100_000]
            };
            let mut dispatch = Vec::new();
            for depth in depths {
                let row = dispatch_cost(node, &dataset, depth, args.clients)?;
                eprintln!("   {row}");
                dispatch.push(row);
            }
            report.insert("dispatch".into(), json!(dispatch));
        }
    }

    if wants("replicas") {
        // The price of `min_replicas_ack = 1`: the same runs on a primary with one replica,
        // without and with each submission and result waiting for the replica (`WAIT`).
        let replica = redis.replica();
        let mut rows = Vec::new();
        for (name, store) in [
            ("replica, no wait", ""),
            ("replica, min_replicas_ack = 1", "min_replicas_ack = 1"),
        ] {
            eprintln!("== {name}");
            let prefix = format!("r{}", rows.len());
            let cluster = Cluster::start_with(&redis, &dir, &prefix, &[args.trainers], store, "")?;
            let node = &cluster.nodes[0];
            let dataset = upload_dataset(&node.url)?;
            let urls = [node.url.clone()];
            let mut row =
                throughput_on(&urls, &dataset, scale(args.tasks), args.clients, &[], None)?;
            row.as_object_mut().unwrap().remove("sample_ids");
            let latency = submit_to_start(&node.url, &dataset, scale(500))?;
            row["setup"] = json!(name);
            row["submit_to_start"] = latency;
            eprintln!("   {row}");
            rows.push(row);
        }
        drop(replica);
        report.insert("replicas".into(), json!(rows));
    }

    if wants("memory") {
        eprintln!("== memory: what Redis keeps per finished task");
        let memory = memory::memory(&redis, &dir, scale(args.tasks), args.clients)?;
        eprintln!("   {memory}");
        report.insert("memory".into(), memory);
    }

    if wants("scaling") {
        let mut scaling = Vec::new();
        for (name, trainers) in [
            ("1 node x 1", vec![1]),
            ("1 node x 2", vec![2]),
            ("1 node x 4", vec![4]),
            ("1 node x 8", vec![8]),
            ("3 nodes x 1", vec![1, 1, 1]),
        ] {
            eprintln!("== scaling: {name}");
            let prefix = format!("s{}", scaling.len());
            let cluster = Cluster::start(&redis, &dir, &prefix, &trainers)?;
            let dataset = upload_dataset(&cluster.nodes[0].url)?;
            let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url.clone()).collect();
            let mut row = throughput_on(&urls, &dataset, scale(2_000), args.clients, &[], None)?;
            row.as_object_mut().unwrap().remove("sample_ids");
            row["setup"] = json!(name);
            eprintln!("   {row}");
            scaling.push(row);
        }
        report.insert("scaling".into(), json!(scaling));
    }

    if wants("batch") {
        eprintln!("== batch: no-op submissions through POST /tasks, the node drained");
        let mut rows = Vec::new();
        for clients in [1, 2] {
            let prefix = format!("b{clients}");
            let tasks = format!("allow_noop = true\nmax_batch = {}", args.batch.max(1));
            let cluster = Cluster::start_with(&redis, &dir, &prefix, &[1], "", &tasks)?;
            let row = batch::batch_submissions(
                &cluster.nodes[0],
                &redis,
                scale(args.batch_submissions),
                args.batch.min(scale(args.batch_submissions)).max(1),
                clients,
            )?;
            eprintln!("   {row}");
            rows.push(row);
        }
        report.insert("batch".into(), json!(rows));
    }

    if wants("noop") {
        eprintln!(
            "== noop: no-op tasks end to end, {} trainers",
            args.trainers
        );
        let cluster =
            Cluster::start_with(&redis, &dir, "n", &[args.trainers], "", "allow_noop = true")?;
        let row = batch::noop_throughput(
            &cluster.nodes[0],
            &redis,
            scale(args.tasks * 4),
            args.clients,
        )?;
        eprintln!("   {row}");
        report.insert("noop".into(), row);
    }

    if wants("predict") {
        // `POST /models/{id}/predict` of one row, without and with the node's model cache.
        let mut rows = Vec::new();
        for (name, tasks) in [
            ("no model cache", "model_cache_bytes = 0"),
            ("model cache", ""),
        ] {
            eprintln!("== predict: {name}");
            let prefix = format!("p{}", rows.len());
            let cluster = Cluster::start_with(&redis, &dir, &prefix, &[1], "", tasks)?;
            let seconds = if args.quick { 3 } else { 10 };
            let mut row = predict_load(&cluster.nodes[0].url, 16, Duration::from_secs(seconds))?;
            row["setup"] = json!(name);
            eprintln!("   {row}");
            rows.push(row);
        }
        report.insert("predict".into(), json!(rows));
    }

    if wants("nodes") {
        let mut rows = Vec::new();
        for &n in &args.nodes {
            eprintln!(
                "== nodes: {n} nodes x {} trainers, no-op tasks of 500 ms",
                args.trainers_per_node
            );
            let (rounds, idle_s) = if args.quick { (2, 2) } else { (8, 5) };
            let row = nodes::nodes_run(
                &redis,
                &dir,
                n.max(1),
                args.trainers_per_node.max(1),
                rounds,
                idle_s,
            )?;
            rows.push(row);
        }
        report.insert("nodes".into(), json!(rows));
    }

    let report = Value::Object(report);
    println!("{}", report::table(&report));
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {}", args.out.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
