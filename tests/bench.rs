//! `trainyard bench --quick` runs end to end (redis-server, nodes, every workload) and writes
//! its JSON. Only that it works is checked here; its figures are in BENCHMARKS.md.
//!
//! `trainyard bench` runs `trainyard-bench`, the test kit's binary (`crates/testkit`), from
//! beside itself, so these tests need the whole workspace built first (`cargo build
//! --all-targets` at the root, as `scripts/test` does): cargo builds only this package's
//! binaries for its tests.

mod common;

use std::path::Path;
use std::process::Command;

use common::temp_dir;
use serde_json::Value;

/// The `trainyard` binary, once `trainyard-bench` is known to lie beside it.
fn trainyard() -> &'static Path {
    let trainyard = Path::new(env!("CARGO_BIN_EXE_trainyard"));
    let harness =
        trainyard.with_file_name(format!("trainyard-bench{}", std::env::consts::EXE_SUFFIX));
    assert!(
        harness.is_file(),
        "{} is missing: run `cargo build --all-targets` at the workspace root first",
        harness.display()
    );
    trainyard
}

/// `trainyard bench ARGS`, which must succeed: what it printed, and the JSON it wrote.
fn bench(args: &[&str]) -> (String, Value) {
    let trainyard = trainyard();
    let out = temp_dir("bench").join("bench.json");
    let output = Command::new(trainyard)
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("trainyard runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn trainyard_bench_hands_every_argument_to_the_bench_binary() {
    let output = Command::new(trainyard())
        .args(["bench", "--help"])
        .output()
        .expect("trainyard runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Usage: trainyard-bench"), "{stdout}");
    assert!(stdout.contains("--soak <MINUTES>"), "{stdout}");
    let output = Command::new(trainyard())
        .args(["bench", "--only", "nothing"])
        .output()
        .expect("trainyard runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'nothing'"), "{stderr}");
}

#[test]
fn the_quick_benchmark_runs_every_workload_and_writes_its_report() {
    let (stdout, report) = bench(&["--quick", "--tasks", "2000"]);
    eprintln!("{stdout}");
    assert_eq!(report["throughput"]["exactly_one_result"], true, "{report}");
    assert!(report["throughput"]["tasks_per_s"].as_f64().unwrap() > 0.0);
    for process in ["node", "redis", "load_generator"] {
        let ms = &report["throughput"]["cpu_ms_per_task"][process];
        assert!(ms.as_f64().unwrap() > 0.0, "{process} CPU per task: {ms}");
    }
    // Every task is submitted and finished by a script of its own, and written to the AOF.
    let redis = &report["throughput"]["redis_per_task"];
    assert!(redis["scripts"].as_f64().unwrap() >= 2.0, "{redis}");
    assert!(redis["commands"].as_f64().unwrap() > redis["scripts"].as_f64().unwrap());
    assert!(redis["aof_kb"].as_f64().unwrap() > 0.0, "{redis}");
    assert!(
        redis["by_command"]["evalsha"].as_f64().unwrap() >= 2.0,
        "{redis}"
    );
    assert_eq!(report["status"]["errors"], 0, "{report}");
    assert_eq!(report["status_queued"]["errors"], 0, "{report}");
    assert!(report["status_queued"]["requests_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["memory_mb"]["idle"].as_f64().unwrap() > 0.0);
    let dispatch = report["dispatch"].as_array().unwrap();
    assert_eq!(dispatch.len(), 2);
    for row in dispatch {
        // Claims of both kinds (the leader's, and trainers' running on) are counted.
        assert!(row["dispatched_per_s"].as_f64().unwrap() > 0.0, "{row}");
        let timed = |key: &str| row[key].as_f64().is_some_and(|ms| ms > 0.0);
        assert!(
            timed("claim_mean_ms") || timed("claim_and_finish_mean_ms"),
            "{row}"
        );
    }
    assert_eq!(report["scaling"].as_array().unwrap().len(), 5);
    // The same runs without and with `min_replicas_ack = 1`, on a primary with a replica.
    let replicas = report["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{report}");
    for row in replicas {
        assert_eq!(row["exactly_one_result"], true, "{row}");
        assert!(
            row["submit_to_start"]["p50_ms"].as_f64().unwrap() > 0.0,
            "{row}"
        );
    }
    // What Redis keeps per finished task, by kind of key, at the margin (the second of two
    // rounds): a record, a model and a history per task; two keys once histories expired.
    let memory = &report["memory"];
    assert!(
        memory["used_memory_per_task_b"].as_f64().unwrap() > 0.0,
        "{memory}"
    );
    assert_eq!(memory["keys_per_task"], 2.0, "{memory}");
    let kinds = memory["kinds"].as_array().unwrap();
    let per_task = |kind: &str| {
        kinds
            .iter()
            .find(|k| k["kind"] == kind)
            .and_then(|k| k["keys_per_task"].as_f64())
            .unwrap_or_else(|| panic!("{memory}"))
    };
    assert_eq!(per_task("task:ID"), 1.0, "{memory}");
    assert_eq!(per_task("model:ID"), 1.0, "{memory}");
    // Measured at once after the round; on a slow machine the first may have expired.
    assert!(per_task("events:ID (a task's events)") > 0.5, "{memory}");
    // Predict calls without and with the model cache.
    let predict = report["predict"].as_array().unwrap();
    assert_eq!(predict.len(), 2, "{report}");
    for row in predict {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["requests_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    // Batch submissions (1 and 2 clients), each counted queued; no-op tasks end to end.
    let batch = report["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2, "{report}");
    for row in batch {
        assert!(row["submissions_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["redis_per_submission"]["commands"].as_f64().unwrap() > 0.0,
            "{row}"
        );
    }
    assert_eq!(report["noop"]["exactly_one_result"], true, "{report}");
    assert!(report["noop"]["tasks_per_s"].as_f64().unwrap() > 0.0);
    assert!(stdout.contains("| measure | trainyard |"));
    assert!(stdout.contains("batch submission"), "{stdout}");
}

#[test]
fn the_nodes_run_forms_a_cluster_keeps_every_trainer_busy_and_fails_over() {
    let args = [
        "--quick",
        "--only",
        "nodes",
        "--nodes",
        "4",
        "--trainers-per-node",
        "2",
    ];
    let (stdout, report) = bench(&args);
    let row = &report["nodes"][0];
    assert_eq!(row["nodes"], 4, "{report}");
    assert_eq!(row["trainers"], 8, "{report}");
    assert!(row["formed_s"].as_f64().unwrap() > 0.0, "{row}");
    // A full mesh: every node holds a session with each of the 3 others, one per pair.
    let idle = &row["idle"];
    assert_eq!(idle["cluster_connections"]["min"], 3.0, "{idle}");
    assert_eq!(idle["cluster_connections"]["max"], 3.0, "{idle}");
    assert!(idle["node_rss_mb"]["max"].as_f64().unwrap() > 0.0, "{idle}");
    assert!(
        idle["redis_commands_per_s"].as_f64().unwrap() > 0.0,
        "{idle}"
    );
    // Two no-op tasks per trainer, each ended once.
    let busy = &row["busy"];
    assert_eq!(busy["tasks"], 16, "{busy}");
    assert_eq!(busy["ended"], 16, "{busy}");
    assert_eq!(busy["exactly_once"], true, "{busy}");
    assert!(
        busy["cluster_kb_per_s"]["sum"].as_f64().unwrap() > 0.0,
        "{busy}"
    );
    assert!(
        busy["store_ops"]["lead"]["per_s"].as_f64().unwrap() > 0.0,
        "{busy}"
    );
    // kill -9 of the leader: another leads, and a task starts, within the lease and a bit.
    let failover = &row["failover"];
    assert_ne!(failover["new_leader"], failover["killed"], "{failover}");
    let started = failover["kill_to_task_started_s"].as_f64().unwrap();
    assert!(started > 0.0 && started < 15.0, "{failover}");
    assert!(
        stdout.contains("4 nodes x 2: the cluster forms"),
        "{stdout}"
    );
}

#[test]
fn the_soak_run_prints_memory_every_30_s() {
    let (stdout, report) = bench(&["--soak", "0.6"]);
    let rows = report["soak"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    for key in [
        "tasks",
        "tasks_per_s",
        "node_rss_mb",
        "redis_used_mb",
        "aof_mb",
    ] {
        assert!(rows[0][key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert!(stdout.contains("| minute | tasks |"), "{stdout}");
}
