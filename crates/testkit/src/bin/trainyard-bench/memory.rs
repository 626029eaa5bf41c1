//! What a task costs to keep: Redis's memory per finished task, by kind of key (`--only
//! memory`), and the soak run (`--soak MINUTES`) that prints node and Redis memory, the AOF's
//! size and tasks/s every 30 s under full load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trainyard_testkit::{RedisServer, procfs, temp_dir};

use crate::BenchArgs;
use crate::cluster::{Cluster, upload_dataset};
use crate::report::round;
use crate::runs::throughput_on;

/// How long the soak run keeps results (and then remembers expired ids), so that both expire
/// during the run and Redis's memory levels off.
const SOAK_RESULT_EXPIRES_S: u64 = 60;
/// How often the soak run prints a row.
const SOAK_EVERY: Duration = Duration::from_secs(30);
/// Tasks per round of the soak run.
const SOAK_ROUND: usize = 2_000;

/// Redis's `INFO` numbers by name.
fn info(url: &str) -> anyhow::Result<HashMap<String, f64>> {
    let client = ::redis::Client::open(url)?;
    let mut connection = client.get_connection()?;
    let info: String = ::redis::cmd("INFO").arg("all").query(&mut connection)?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (key, value) = l.trim_end().split_once(':')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// The kind of a key under `prefix:`: its first segment, with a task's own event stream
/// (`events:ID`) apart from the stream of every event (`events`).
fn kind_of(key: &str, prefix: &str) -> String {
    let rest = key
        .strip_prefix(prefix)
        .and_then(|k| k.strip_prefix(':'))
        .unwrap_or(key);
    match rest.split_once(':') {
        Some(("events", _)) => "events:ID (a task's events)".into(),
        Some((kind, _)) => format!("{kind}:ID"),
        None => rest.to_string(),
    }
}

/// Keys and bytes (`MEMORY USAGE`, every element counted) of each kind of key under
/// `prefix`, the most bytes first.
fn breakdown(url: &str, prefix: &str) -> anyhow::Result<Vec<(String, usize, u64)>> {
    let client = ::redis::Client::open(url)?;
    let mut connection = client.get_connection()?;
    let mut kinds: HashMap<String, (usize, u64)> = HashMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut connection)?;
        cursor = next;
        let mut pipe = ::redis::pipe();
        for key in &keys {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        let sizes: Vec<Option<u64>> = if keys.is_empty() {
            Vec::new()
        } else {
            pipe.query(&mut connection)?
        };
        for (key, size) in keys.iter().zip(sizes) {
            let entry = kinds.entry(kind_of(key, prefix)).or_default();
            entry.0 += 1;
            entry.1 += size.unwrap_or(0);
        }
        if cursor == 0 {
            break;
        }
    }
    let mut rows: Vec<(String, usize, u64)> =
        kinds.into_iter().map(|(k, (n, b))| (k, n, b)).collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.2));
    Ok(rows)
}

/// How long the memory run's node keeps an ended task's event history, so that the second
/// round is measured both with it and after it expired.
const MEMORY_HISTORY_S: f64 = 10.0;

/// Redis's memory for keys: `used_memory` less what clients' buffers and the AOF buffer hold
/// at the moment (they come and go with the load, not with what is kept).
fn kept_memory(info: &HashMap<String, f64>) -> f64 {
    let get = |key: &str| info.get(key).copied().unwrap_or(0.0);
    get("used_memory") - get("mem_clients_normal") - get("mem_aof_buffer")
}

/// What Redis keeps per finished tiny task, at the margin: two rounds of `n` tiny trainings
/// on a node of its own (the stream of every event, capped, is full after the first), each
/// measured once its tasks ended. Per task: the second round's growth of Redis's memory for
/// keys, after the tasks' event histories expired (what a task keeps for `result_expires_s`),
/// keys, AOF bytes, and the bytes of each kind of key, histories included (measured at once).
pub fn memory(redis: &RedisServer, dir: &Path, n: usize, clients: usize) -> anyhow::Result<Value> {
    let prefix = "mem";
    let tasks = format!("history_after_end_s = {MEMORY_HISTORY_S}");
    let cluster = Cluster::start_with(redis, dir, prefix, &[2], "", &tasks)?;
    let node = &cluster.nodes[0];
    let dataset = upload_dataset(&node.url)?;
    let urls = [node.url.clone()];
    // Reading every key (the breakdown) also removes those that expired.
    let settle = || -> anyhow::Result<(Vec<(String, usize, u64)>, HashMap<String, f64>)> {
        std::thread::sleep(Duration::from_secs_f64(MEMORY_HISTORY_S + 1.5));
        let kinds = breakdown(&redis.url, prefix)?;
        std::thread::sleep(Duration::from_millis(200));
        Ok((kinds, info(&redis.url)?))
    };
    throughput_on(&urls, &dataset, n, clients, &[], None)?;
    let (before_kinds, before) = settle()?;
    throughput_on(&urls, &dataset, n, clients, &[], None)?;
    // Writes that end a task go on for a moment after its end event.
    std::thread::sleep(Duration::from_millis(500));
    let with_history = breakdown(&redis.url, prefix)?;
    let (after_kinds, after) = settle()?;
    let per_task = |v: f64| round(v / n as f64, 0);
    let grown = |key: &str| after.get(key).unwrap_or(&0.0) - before.get(key).unwrap_or(&0.0);
    let count = |kinds: &[(String, usize, u64)]| -> (usize, u64) {
        kinds
            .iter()
            .fold((0, 0), |(k, b), row| (k + row.1, b + row.2))
    };
    let ((keys_before, bytes_before), (keys_after, bytes_after)) =
        (count(&before_kinds), count(&after_kinds));
    let old = |kind: &str| {
        before_kinds
            .iter()
            .find(|row| row.0 == kind)
            .map_or((0, 0), |row| (row.1, row.2))
    };
    Ok(json!({
        "tasks": n,
        "used_memory_per_task_b": per_task(kept_memory(&after) - kept_memory(&before)),
        "keys_per_task": round((keys_after as f64 - keys_before as f64) / n as f64, 2),
        "key_bytes_per_task_b": per_task(bytes_after as f64 - bytes_before as f64),
        "aof_per_task_b": per_task(grown("aof_current_size")),
        "history_kept_s": MEMORY_HISTORY_S,
        "kinds": with_history.iter().map(|(kind, keys, bytes)| {
            let (old_keys, old_bytes) = old(kind);
            json!({
                "kind": kind,
                "keys": keys,
                "bytes": bytes,
                "keys_per_task": round((*keys as f64 - old_keys as f64) / n as f64, 2),
                "bytes_per_task": per_task(*bytes as f64 - old_bytes as f64),
            })
        }).collect::<Vec<_>>(),
    }))
}

/// The soak run: tiny trainings at full load for `minutes` on one node with
/// `SOAK_RESULT_EXPIRES_S` of result retention; a row every 30 s.
pub fn soak(args: &BenchArgs, minutes: f64) -> anyhow::Result<()> {
    let dir = temp_dir("soak");
    let redis = RedisServer::durable();
    let tasks = format!(
        "result_expires_s = {SOAK_RESULT_EXPIRES_S}\nexpired_memory_s = {SOAK_RESULT_EXPIRES_S}"
    );
    let cluster = Cluster::start_with(&redis, &dir, "soak", &[args.trainers], "", &tasks)?;
    let node = &cluster.nodes[0];
    let dataset = upload_dataset(&node.url)?;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    eprintln!(
        "soak: {minutes} min of tiny trainings, {} trainers, results and expired ids kept \
         {SOAK_RESULT_EXPIRES_S} s",
        args.trainers
    );
    let monitor = std::thread::spawn({
        let (done, stop, pid, url) = (
            done.clone(),
            stop.clone(),
            node.child.id(),
            redis.url.clone(),
        );
        move || -> anyhow::Result<Vec<Value>> {
            let mut rows = Vec::new();
            let mut last = (Instant::now(), 0usize);
            let mut next = Instant::now() + SOAK_EVERY;
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                next += SOAK_EVERY;
                let info = info(&url)?;
                let count = done.load(Ordering::Relaxed);
                let rate = (count - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), count);
                let row = json!({
                    "minute": round(started.elapsed().as_secs_f64() / 60.0, 1),
                    "tasks": count,
                    "tasks_per_s": round(rate, 0),
                    "node_rss_mb": procfs::rss_mb(pid),
                    "redis_used_mb": round(info.get("used_memory").copied().unwrap_or(0.0) / 1e6, 1),
                    "aof_mb": round(info.get("aof_current_size").copied().unwrap_or(0.0) / 1e6, 1),
                });
                eprintln!("   {row}");
                rows.push(row);
            }
            Ok(rows)
        }
    });
    let urls = [node.url.clone()];
    let mut failure = None;
    while Instant::now() < deadline {
        match throughput_on(&urls, &dataset, SOAK_ROUND, args.clients, &[], None) {
            Ok(_) => {
                done.fetch_add(SOAK_ROUND, Ordering::Relaxed);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rows = monitor.join().expect("the soak monitor runs")?;
    if let Some(e) = failure {
        return Err(e.context("a soak round failed"));
    }
    let mut out = String::from(
        "| minute | tasks | tasks/s | node RSS MB | Redis used MB | AOF MB |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r["minute"],
            r["tasks"],
            r["tasks_per_s"],
            r["node_rss_mb"],
            r["redis_used_mb"],
            r["aof_mb"]
        ));
    }
    println!("{out}");
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&json!({"soak": rows}))?,
    )?;
    eprintln!("written to {}", args.out.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_kind() {
        assert_eq!(kind_of("mem:task:1234", "mem"), "task:ID");
        assert_eq!(
            kind_of("mem:events:1234", "mem"),
            "events:ID (a task's events)"
        );
        assert_eq!(kind_of("mem:events", "mem"), "events");
        assert_eq!(kind_of("mem:tasks", "mem"), "tasks");
    }
}
