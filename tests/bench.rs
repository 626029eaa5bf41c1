//! `trainyard bench --quick` runs end to end (redis-server, nodes, every workload) and writes
//! its JSON. Only that it works is checked here; its figures are in BENCHMARKS.md.

mod common;

use std::process::Command;

use common::temp_dir;
use serde_json::Value;

#[test]
fn the_quick_benchmark_runs_every_workload_and_writes_its_report() {
    let out = temp_dir("bench").join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(["bench", "--quick", "--tasks", "2000", "--out"])
        .arg(&out)
        .output()
        .expect("trainyard runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
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
    assert!(stdout.contains("| measure | trainyard |"));
}
