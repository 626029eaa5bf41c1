//! The report: Redis's work per task from its counters, and the Markdown table printed at the
//! end of a run.

use std::collections::HashMap;

use serde_json::{Value, json};
use trainyard_testkit::RedisServer;

/// What a Redis server has done so far: calls per command (those made inside scripts too),
/// bytes received and sent, and the size of its append-only file.
pub struct RedisCounters {
    calls: HashMap<String, f64>,
    net_in: f64,
    net_out: f64,
    aof: f64,
}

impl RedisCounters {
    /// The counters of `redis` now.
    pub fn read(redis: &RedisServer) -> anyhow::Result<RedisCounters> {
        let info = redis.query_info("all")?;
        let mut counters = RedisCounters {
            calls: HashMap::new(),
            net_in: 0.0,
            net_out: 0.0,
            aof: 0.0,
        };
        for line in info.lines() {
            let Some((key, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            let number = || value.parse::<f64>().unwrap_or(0.0);
            match key {
                "total_net_input_bytes" => counters.net_in = number(),
                "total_net_output_bytes" => counters.net_out = number(),
                "aof_current_size" => counters.aof = number(),
                _ => {
                    // cmdstat_set:calls=1,usec=4,...
                    let Some(command) = key.strip_prefix("cmdstat_") else {
                        continue;
                    };
                    let calls = value
                        .split(',')
                        .find_map(|field| field.strip_prefix("calls="))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0.0);
                    counters.calls.insert(command.to_string(), calls);
                }
            }
        }
        Ok(counters)
    }
}

/// Redis's work per task between two readings of its counters: commands (those run by
/// scripts counted one by one), scripts run, and kilobytes received, sent and appended to the
/// AOF. The `INFO` readings themselves are left out.
pub fn redis_per_task(before: &RedisCounters, after: &RedisCounters, tasks: usize) -> Value {
    let per_task = |a: f64, b: f64| round((a - b) / tasks.max(1) as f64, 2);
    let mut by_command: Vec<(String, f64)> = after
        .calls
        .iter()
        .filter(|(command, _)| !command.starts_with("info"))
        .map(|(command, calls)| {
            let earlier = before.calls.get(command).copied().unwrap_or(0.0);
            (command.clone(), per_task(*calls, earlier))
        })
        .filter(|(_, calls)| *calls > 0.0)
        .collect();
    by_command.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let commands: f64 = by_command.iter().map(|(_, calls)| calls).sum();
    let scripts: f64 = by_command
        .iter()
        .filter(|(command, _)| ["evalsha", "eval", "fcall"].contains(&command.as_str()))
        .map(|(_, calls)| calls)
        .sum();
    let kb = |a: f64, b: f64| round((a - b) / 1024.0 / tasks.max(1) as f64, 2);
    json!({
        "commands": round(commands, 1),
        "scripts": round(scripts, 2),
        "aof_kb": kb(after.aof, before.aof),
        "received_kb": kb(after.net_in, before.net_in),
        "sent_kb": kb(after.net_out, before.net_out),
        "by_command": by_command
            .into_iter()
            .map(|(command, calls)| (command, json!(calls)))
            .collect::<serde_json::Map<String, Value>>(),
    })
}

pub fn shown(figure: &Value) -> String {
    if figure.is_null() {
        "-".into()
    } else {
        figure.to_string()
    }
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

pub fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// The report as a Markdown table.
pub fn table(r: &Value) -> String {
    let mut out = String::from("| measure | trainyard |\n|---|---|\n");
    let mut row = |name: &str, value: String| out.push_str(&format!("| {name} | {value} |\n"));
    if let Some(t) = r.get("throughput") {
        row(
            &format!(
                "tiny trainings end to end ({} tasks, Redis AOF)",
                t["tasks"]
            ),
            format!(
                "{} tasks/s (submit {} /s; ended {} /s while submitting, {} /s after)",
                t["tasks_per_s"],
                t["submit_per_s"],
                t["ended_per_s_while_submitting"],
                t["ended_per_s_after"]
            ),
        );
        let cpu = &t["cpu_ms_per_task"];
        if cpu.is_object() {
            row(
                "CPU per tiny task (the run above)",
                format!(
                    "node {} ms, Redis {} ms, load generator {} ms; machine idle {}",
                    cpu["node"], cpu["redis"], cpu["load_generator"], t["machine_idle_share"]
                ),
            );
        }
        let redis = &t["redis_per_task"];
        if redis.is_object() {
            row(
                "Redis per tiny task (the run above)",
                format!(
                    "{} commands ({} scripts), {} KB received, {} KB sent, {} KB appended to the AOF",
                    redis["commands"],
                    redis["scripts"],
                    redis["received_kb"],
                    redis["sent_kb"],
                    redis["aof_kb"]
                ),
            );
        }
    }
    for b in r
        .get("batch")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let redis = &b["redis_per_submission"];
        row(
            &format!(
                "batch submission ({} no-ops, {} a call, {} clients, node drained)",
                b["submissions"], b["batch"], b["clients"]
            ),
            format!(
                "{} submissions/s; a call p50 {} ms, p99 {} ms; CPU per submission node {} us, \
                 Redis {} us; Redis {} commands, {} KB AOF per submission",
                b["submissions_per_s"],
                b["call_ms_p50"],
                b["call_ms_p99"],
                b["cpu_us_per_submission"]["node"],
                b["cpu_us_per_submission"]["redis"],
                redis["commands"],
                redis["aof_kb"]
            ),
        );
    }
    if let Some(t) = r.get("noop") {
        let cpu = &t["cpu_ms_per_task"];
        let redis = &t["redis_per_task"];
        row(
            &format!("no-op tasks end to end ({} tasks, Redis AOF)", t["tasks"]),
            format!(
                "{} tasks/s (submit {} /s); CPU per task node {} ms, Redis {} ms, load \
                 generator {} ms; Redis {} commands ({} scripts), {} KB AOF per task",
                t["tasks_per_s"],
                t["submit_per_s"],
                cpu["node"],
                cpu["redis"],
                cpu["load_generator"],
                redis["commands"],
                redis["scripts"],
                redis["aof_kb"]
            ),
        );
    }
    for p in r
        .get("predict")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        row(
            &format!(
                "predict, 1 row of the default MLP ({}, {} connections)",
                p["setup"].as_str().unwrap_or("?"),
                p["connections"]
            ),
            format!(
                "{} requests/s, p50 {} ms, p99 {} ms ({} errors)",
                p["requests_per_s"], p["p50_ms"], p["p99_ms"], p["errors"]
            ),
        );
    }
    if let Some(l) = r.get("submit_to_start") {
        row(
            &format!("submit to start, {} sequential", l["tasks"]),
            format!("p50 {} ms, p99 {} ms", l["p50_ms"], l["p99_ms"]),
        );
    }
    for (key, tasks) in [("status", "finished"), ("status_queued", "queued")] {
        if let Some(s) = r.get(key) {
            row(
                &format!(
                    "GET /task/{{id}}/status of {tasks} tasks, {} connections",
                    s["connections"]
                ),
                format!(
                    "{} req/s, p50 {} ms, p99 {} ms",
                    s["requests_per_s"], s["p50_ms"], s["p99_ms"]
                ),
            );
        }
    }
    if let Some(m) = r.get("memory_mb") {
        row(
            "node resident memory",
            format!(
                "idle {} MB, after throughput {} MB",
                m["idle"], m["after_throughput"]
            ),
        );
    }
    for d in r["dispatch"].as_array().into_iter().flatten() {
        row(
            &format!("dispatch with {} queued", d["queued"]),
            format!(
                "claim {} ms (leader, or trainer claiming ahead), claim and finish {} ms \
                 (trainer running on), finish {} ms, {} tasks/s dispatched",
                shown(&d["claim_mean_ms"]),
                shown(&d["claim_and_finish_mean_ms"]),
                shown(&d["finish_mean_ms"]),
                d["dispatched_per_s"]
            ),
        );
    }
    for s in r["replicas"].as_array().into_iter().flatten() {
        let latency = &s["submit_to_start"];
        row(
            s["setup"].as_str().unwrap_or(""),
            format!(
                "{} tasks/s (submit {} /s); submit to start p50 {} ms, p99 {} ms",
                s["tasks_per_s"], s["submit_per_s"], latency["p50_ms"], latency["p99_ms"]
            ),
        );
    }
    if let Some(m) = r.get("memory") {
        row(
            &format!(
                "Redis per finished tiny task ({} more tasks, results kept, histories expired)",
                m["tasks"]
            ),
            format!(
                "{} B used_memory, {} keys ({} B by MEMORY USAGE), {} B appended to the AOF",
                m["used_memory_per_task_b"],
                m["keys_per_task"],
                m["key_bytes_per_task_b"],
                m["aof_per_task_b"]
            ),
        );
        for k in m["kinds"].as_array().into_iter().flatten() {
            row(
                &format!(
                    "  of which {} (histories not yet expired)",
                    k["kind"].as_str().unwrap_or("")
                ),
                format!(
                    "{} keys, {} B per task",
                    k["keys_per_task"], k["bytes_per_task"]
                ),
            );
        }
    }
    for s in r["scaling"].as_array().into_iter().flatten() {
        row(
            &format!("scaling: {}", s["setup"].as_str().unwrap_or("")),
            format!("{} tasks/s", s["tasks_per_s"]),
        );
    }
    for n in r["nodes"].as_array().into_iter().flatten() {
        let name = format!("{} nodes x {}", n["nodes"], n["trainers_per_node"]);
        row(
            &format!("{name}: the cluster forms"),
            format!(
                "all answer in {} s, every node sees all in {} s",
                n["all_answering_s"], n["formed_s"]
            ),
        );
        let (idle, busy) = (&n["idle"], &n["busy"]);
        row(
            &format!("{name}: idle"),
            format!(
                "node CPU {} ms/s mean, {} max, {} in all; Redis {} ms/s, {} commands/s; \
                 node RSS {} MB mean, {} max; cluster connections {} a node, {} KB/s a node",
                idle["node_cpu_ms_per_s"]["mean"],
                idle["node_cpu_ms_per_s"]["max"],
                idle["node_cpu_ms_per_s"]["sum"],
                idle["redis_cpu_ms_per_s"],
                idle["redis_commands_per_s"],
                idle["node_rss_mb"]["mean"],
                idle["node_rss_mb"]["max"],
                idle["cluster_connections"]["mean"],
                idle["cluster_kb_per_s"]["mean"]
            ),
        );
        row(
            &format!("{name}: every trainer busy, no-ops of 500 ms"),
            format!(
                "{} of {} ended; {} tasks/s steady, {} overall (ideal {}); node CPU {} ms/s \
                 in all, Redis {} ms/s, bench {} ms/s; Redis {} commands a task; cluster {} \
                 KB/s a node ({} max)",
                busy["ended"],
                busy["tasks"],
                shown(&busy["steady_per_s"]),
                busy["ended_per_s"],
                busy["ideal_per_s"],
                busy["node_cpu_ms_per_s"]["sum"],
                busy["redis_cpu_ms_per_s"],
                busy["bench_cpu_ms_per_s"],
                busy["redis_per_task"]["commands"],
                busy["cluster_kb_per_s"]["mean"],
                busy["cluster_kb_per_s"]["max"]
            ),
        );
        let f = &n["failover"];
        row(
            &format!("{name}: kill -9 of the leader"),
            format!(
                "a new leader after {} s, the next task started after {} s",
                f["kill_to_new_leader_s"], f["kill_to_task_started_s"]
            ),
        );
    }
    out
}
