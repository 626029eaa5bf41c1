//! The measured runs: end-to-end throughput with every task checked for exactly one result,
//! submit-to-start latency, predictions, and the cost of dispatch from a deep queue.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use trainyard_testkit::{NodeProcess, RedisServer, metrics, procfs};

use crate::FEATURES;
use crate::cluster::{NodeAdmin, agent, get, post, tiny_training, upload_dataset};
use crate::load::{host_port, http_load, submit_all};
use crate::report::{RedisCounters, percentile, redis_per_task, round};

/// Follows `/events` and records each task's terminal events.
/// Task id -> (final state, terminal events seen, when the first arrived).
type EndsSeen = Arc<Mutex<HashMap<String, (String, u32, Instant)>>>;

pub struct Ends {
    ended: EndsSeen,
    lagged: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Ends {
    pub fn follow(url: &str) -> anyhow::Result<Ends> {
        let ends = Ends {
            ended: Arc::default(),
            lagged: Arc::default(),
            stop: Arc::default(),
        };
        let response = ureq::Agent::config_builder()
            .timeout_global(None)
            .build()
            .new_agent()
            .get(format!("{url}/events"))
            .call()?;
        let (ended, lagged, stop) = (ends.ended.clone(), ends.lagged.clone(), ends.stop.clone());
        std::thread::spawn(move || {
            let reader = std::io::BufReader::new(response.into_body().into_reader());
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_string();
                    if event == "lagged" {
                        lagged.store(true, Ordering::Relaxed);
                    }
                } else if let Some(data) = line.strip_prefix("data:")
                    && event == "state"
                {
                    // Only the two fields it needs, borrowed: this thread shares the
                    // machine with the node under test.
                    #[derive(serde::Deserialize)]
                    struct StateEvent<'a> {
                        task_id: &'a str,
                        state: &'a str,
                    }
                    let Ok(data) = serde_json::from_str::<StateEvent>(data.trim()) else {
                        continue;
                    };
                    if matches!(data.state, "SUCCESS" | "FAILURE" | "REVOKED") {
                        let mut ended = ended.lock().unwrap();
                        let entry = ended.entry(data.task_id.to_string()).or_insert((
                            data.state.to_string(),
                            0,
                            Instant::now(),
                        ));
                        entry.1 += 1;
                    }
                }
            }
        });
        Ok(ends)
    }

    /// How many tasks ended, of any run.
    pub fn seen(&self) -> usize {
        self.ended.lock().unwrap().len()
    }

    /// How many of `ids` ended.
    pub fn count_of(&self, ids: &HashSet<String>) -> usize {
        let ended = self.ended.lock().unwrap();
        ids.iter().filter(|id| ended.contains_key(*id)).count()
    }

    /// Whether the stream said it skipped events.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }

    /// How many tasks were seen to end more than once.
    pub fn twice(&self) -> usize {
        self.ended
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.1 > 1)
            .count()
    }
}

impl Drop for Ends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn throughput(
    url: &str,
    dataset: &str,
    n: usize,
    clients: usize,
    watched: &[(&str, u32)],
    redis: &RedisServer,
) -> anyhow::Result<Value> {
    throughput_on(
        &[url.to_string()],
        dataset,
        n,
        clients,
        watched,
        Some(redis),
    )
}

/// End-to-end throughput: `n` tiny trainings submitted over HTTP, timed until every one is
/// SUCCESS; then every task is checked for exactly one result. With `redis`, Redis's work
/// per task over the timed run is counted too.
pub fn throughput_on(
    urls: &[String],
    dataset: &str,
    n: usize,
    clients: usize,
    watched: &[(&str, u32)],
    redis: Option<&RedisServer>,
) -> anyhow::Result<Value> {
    let ends = Ends::follow(&urls[0])?;
    let redis_before = redis.map(RedisCounters::read).transpose()?;
    let cpu_before: Vec<f64> = watched
        .iter()
        .map(|(_, pid)| procfs::cpu_seconds(*pid))
        .collect();
    let machine_before = procfs::machine_ticks();
    let started = Instant::now();
    let ids = submit_all(urls, dataset, n, clients)?;
    let submitted_s = started.elapsed().as_secs_f64();
    let ended_while_submitting = ends.seen().min(n);
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_count = 0;
    let mut last_change = Instant::now();
    loop {
        // Only the follower's count is read while waiting: checking every id each time would
        // take a core from the node on this 2-core machine.
        let mut count = ends.seen();
        if count >= n {
            count = ends.count_of(&wanted);
            if count == n {
                break;
            }
        }
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        }
        // Events missed (a lagged stream): ask for the rest directly.
        if ends.lagged.load(Ordering::Relaxed) || last_change.elapsed() > Duration::from_secs(5) {
            wait_by_status(&urls[0], &wanted, &ends, deadline)?;
            break;
        }
        if Instant::now() > deadline {
            bail!("only {count} of {n} tasks ended in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // CPU over the timed run only, not the checks below.
    let (busy, idle) = procfs::machine_ticks();
    let idle_share = (idle - machine_before.1)
        / ((busy + idle) - (machine_before.0 + machine_before.1)).max(1.0);
    let cpu_ms_per_task: serde_json::Map<String, Value> = watched
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| {
            let ms = (procfs::cpu_seconds(*pid) - before) * 1000.0 / n.max(1) as f64;
            (name.to_string(), json!(round(ms, 3)))
        })
        .collect();
    let redis_work = match (redis, &redis_before) {
        (Some(redis), Some(before)) => {
            Some(redis_per_task(before, &RedisCounters::read(redis)?, n))
        }
        _ => None,
    };
    // Exactly one result each (one terminal event, SUCCESS with a result); attempts that were
    // retried are counted, with why.
    let agent = agent();
    let mut bad = Vec::new();
    let mut retried: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let (_, task) = get(&agent, &format!("{}/task/{id}", urls[0]))?;
        if task["state"] != "SUCCESS" || !task["result"].is_object() {
            bad.push(format!("{id}: {} {}", task["state"], task["error"]));
        }
        for attempt in task["attempts"].as_array().into_iter().flatten() {
            let code = attempt["error"]["code"].as_str().unwrap_or("?").to_string();
            *retried.entry(code).or_default() += 1;
        }
    }
    let twice = ends
        .ended
        .lock()
        .unwrap()
        .values()
        .filter(|e| e.1 > 1)
        .count();
    drop(ends);
    if !bad.is_empty() || twice > 0 {
        bail!(
            "{} tasks did not succeed, {twice} ended twice: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
    }
    let mut row = json!({
        "tasks": n,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(n as f64 / elapsed, 1),
        "submit_per_s": round(n as f64 / submitted_s, 1),
        // The two phases: while the clients submit, and after (only trainers at work).
        "ended_per_s_while_submitting": round(ended_while_submitting as f64 / submitted_s, 1),
        "ended_per_s_after": round(
            (n - ended_while_submitting) as f64 / (elapsed - submitted_s).max(1e-9),
            1
        ),
        "exactly_one_result": true,
        "retried_attempts": retried,
        "sample_ids": ids.iter().take(1000).collect::<Vec<_>>(),
    });
    if !cpu_ms_per_task.is_empty() {
        row["cpu_ms_per_task"] = Value::Object(cpu_ms_per_task);
    }
    row["machine_idle_share"] = json!(round(idle_share, 3));
    if let Some(work) = redis_work {
        row["redis_per_task"] = work;
    }
    Ok(row)
}

fn wait_by_status(
    url: &str,
    wanted: &HashSet<String>,
    ends: &Ends,
    deadline: Instant,
) -> anyhow::Result<()> {
    let agent = agent();
    let remaining: Vec<String> = {
        let ended = ends.ended.lock().unwrap();
        wanted
            .iter()
            .filter(|id| !ended.contains_key(*id))
            .cloned()
            .collect()
    };
    for id in remaining {
        loop {
            let (_, status) = get(&agent, &format!("{url}/task/{id}/status"))?;
            if matches!(
                status["state"].as_str(),
                Some("SUCCESS" | "FAILURE" | "REVOKED")
            ) {
                break;
            }
            if Instant::now() > deadline {
                bail!("task {id} did not end in time: {status}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Submit-to-start latency of `n` tasks, one at a time on an idle node: the time from the
/// API accepting a task to a trainer claiming it (the task's own `submitted_at` and
/// `started_at`).
pub fn submit_to_start(url: &str, dataset: &str, n: usize) -> anyhow::Result<Value> {
    let agent = agent();
    let submit = format!("{url}/train/linear/async");
    let mut waits_ms = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, answer) = post(&agent, &submit, &tiny_training(dataset))?;
        if status != 202 {
            bail!("submit answered {status}: {answer}");
        }
        let id = answer["task_id"].as_str().unwrap_or("");
        // The task's event stream ends when the task does.
        agent
            .get(format!("{url}/task/{id}/events"))
            .call()?
            .into_body()
            .read_to_string()?;
        let (_, task) = get(&agent, &format!("{url}/task/{id}"))?;
        if task["state"] != "SUCCESS" {
            bail!("task {id} ended {}", task["state"]);
        }
        let timings = &task["timings"];
        let started = timings["started_at"].as_f64().unwrap_or(0.0);
        let submitted = timings["submitted_at"].as_f64().unwrap_or(0.0);
        waits_ms.push((started - submitted) * 1000.0);
    }
    waits_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "tasks": n,
        "p50_ms": round(percentile(&waits_ms, 0.50), 3),
        "p99_ms": round(percentile(&waits_ms, 0.99), 3),
        "max_ms": round(*waits_ms.last().unwrap_or(&0.0), 3),
    }))
}

/// Trains the default MLP (8 -> 64 -> 32 -> 16 -> 1) on the bench data set, then asks it for
/// predictions of one row from `connections` keep-alive connections for `duration`.
pub fn predict_load(url: &str, connections: usize, duration: Duration) -> anyhow::Result<Value> {
    let agent = agent();
    let dataset = upload_dataset(url)?;
    let (status, answer) = post(
        &agent,
        &format!("{url}/train/mlp?wait_s=120"),
        &json!({"epochs": 5, "dataset": dataset}),
    )?;
    if status != 200 {
        bail!("training the model answered {status}: {answer}");
    }
    let id = answer["task_id"]
        .as_str()
        .with_context(|| format!("no task id in {answer}"))?;
    let row: Vec<f64> = (0..FEATURES).map(|i| i as f64 / 10.0).collect();
    let body = json!({"rows": [row]}).to_string();
    let addr = host_port(url)?.to_string();
    let request = format!(
        "POST /models/{id}/predict HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_load(&addr, Arc::from(vec![request]), connections, duration)
}

pub fn dispatch_cost(
    node: &NodeProcess,
    dataset: &str,
    depth: usize,
    clients: usize,
) -> anyhow::Result<Value> {
    node.set_draining(true)?;
    submit_all(std::slice::from_ref(&node.url), dataset, depth, clients)?;
    node.set_draining(false)?;
    // The leader sees the resume within its next reconcile (up to a second): wait for the
    // first claims, then count claims (from the node's own metrics) while the first half of the
    // queue is dispatched, for at most 3 s, so every claim counted finds a task.
    let before = claims(&claim_metrics(&node.url)?);
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = loop {
        let now = claim_metrics(&node.url)?;
        if claims(&now) > before || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let window = Instant::now();
    let end = loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = claim_metrics(&node.url)?;
        if claims(&now) - claims(&start) >= (depth / 2) as f64
            || window.elapsed() > Duration::from_secs(3)
        {
            break now;
        }
    };
    let rate = (claims(&end) - claims(&start)) / window.elapsed().as_secs_f64();
    let purged = node.purge()?;
    // Mean time of each kind of claim in the window, in ms (null: none of that kind).
    let mean = |kind: usize| {
        let (count, sum) = (end[kind].0 - start[kind].0, end[kind].1 - start[kind].1);
        (count > 0.0).then(|| round(sum / count * 1000.0, 3))
    };
    Ok(json!({
        "queued": depth,
        "claim_mean_ms": mean(0),
        "claim_and_finish_mean_ms": mean(1),
        "finish_mean_ms": mean(2),
        "dispatched_per_s": round(rate, 1),
        "purged_after": purged,
    }))
}

/// `(count, sum)` of the node's store operation histograms that claim a task: `claim` (the
/// leader's claims, and those of a trainer claiming ahead) and `claim_and_finish` (a trainer
/// running on, when it has no task claimed ahead), then `finish` (the end of a task written on
/// its own, by a trainer that claims ahead), in that order.
fn claim_metrics(url: &str) -> anyhow::Result<[(f64, f64); 3]> {
    let text = agent()
        .get(format!("{url}/metrics"))
        .call()?
        .into_body()
        .read_to_string()?;
    let find = |suffix: &str, op: &str| {
        let name = format!("trainyard_store_operation_duration_seconds_{suffix}");
        metrics::sum(&text, &name, "op", op)
    };
    Ok(["claim", "claim_and_finish", "finish"].map(|op| (find("count", op), find("sum", op))))
}

/// Claims counted by `claim_metrics`, of both kinds.
fn claims(metrics: &[(f64, f64); 3]) -> f64 {
    metrics[0].0 + metrics[1].0
}
