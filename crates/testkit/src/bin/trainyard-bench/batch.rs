//! The batch runs: submissions accepted through `POST /tasks` (the node drained, so nothing
//! runs meanwhile and the figure is the store's and the API's alone), and no-op tasks end to
//! end (the queue's own cost, as Celery's no-op tasks measure Celery's).

use std::time::Instant;

use anyhow::bail;
use serde_json::{Value, json};
use trainyard_testkit::{NodeProcess, RedisServer, procfs};

use crate::cluster::{NOOP, NodeAdmin, agent};
use crate::report::{RedisCounters, redis_per_task, round};
use crate::runs::throughput_on;

/// `n` no-op submissions in batches of `batch` from `clients` threads, on a drained `node`
/// of a cluster of the run's own (the tasks stay queued). Reports submissions accepted per second, the node's and Redis's
/// CPU per submission and Redis's work per submission.
pub fn batch_submissions(
    node: &NodeProcess,
    redis: &RedisServer,
    n: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<Value> {
    node.set_draining(true)?;
    let items: Vec<Value> = (0..batch).map(|_| json!({"model_type": "noop"})).collect();
    let body = serde_json::to_vec(&items)?;
    let calls = n.div_ceil(batch);
    let url = format!("{}/tasks", node.url);
    let redis_before = RedisCounters::read(redis)?;
    let cpu_before = [
        procfs::cpu_seconds(node.child.id()),
        procfs::cpu_seconds(redis.pid()),
    ];
    let started = Instant::now();
    let mut latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients.min(calls))
            .map(|c| {
                let (url, body) = (&url, &body);
                scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let agent = agent();
                    let mut took = Vec::new();
                    for _ in (c..calls).step_by(clients) {
                        let sent = Instant::now();
                        let response = agent
                            .post(url)
                            .header("content-type", "application/json")
                            .send(&body[..])?;
                        let status = response.status().as_u16();
                        let answer: Value = response.into_body().read_json()?;
                        if status != 202
                            || answer["task_ids"].as_array().map(Vec::len) != Some(batch)
                        {
                            let text = answer.to_string();
                            bail!(
                                "POST /tasks answered {status}: {}",
                                &text[..text.len().min(200)]
                            );
                        }
                        took.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(took)
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.join().expect("a batch client panicked")?);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let submitted = calls * batch;
    let per = |after: f64, before: f64| round((after - before) * 1e6 / submitted as f64, 2);
    let cpu_us = json!({
        "node": per(procfs::cpu_seconds(node.child.id()), cpu_before[0]),
        "redis": per(procfs::cpu_seconds(redis.pid()), cpu_before[1]),
    });
    let redis_work = redis_per_task(&redis_before, &RedisCounters::read(redis)?, submitted);
    latencies.sort_by(f64::total_cmp);
    // Every submission stored and queued (they stay: the cluster is the run's own).
    let (_, health) = crate::cluster::get(&agent(), &format!("{}/cluster/health", node.url))?;
    let queued = health["queue_depth"].as_u64().unwrap_or(0) as usize;
    if queued != submitted {
        bail!("{submitted} submitted but {queued} are queued: {health}");
    }
    Ok(json!({
        "submissions": submitted,
        "batch": batch,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "submissions_per_s": round(submitted as f64 / elapsed, 0),
        "call_ms_p50": round(crate::report::percentile(&latencies, 0.5), 2),
        "call_ms_p99": round(crate::report::percentile(&latencies, 0.99), 2),
        "cpu_us_per_submission": cpu_us,
        "redis_per_submission": redis_work,
    }))
}

/// `n` no-op tasks submitted one a request by `clients` connections and run to SUCCESS, as
/// the throughput run runs tiny trainings (every one checked for exactly one result).
pub fn noop_throughput(
    node: &NodeProcess,
    redis: &RedisServer,
    n: usize,
    clients: usize,
) -> anyhow::Result<Value> {
    let watched = [
        ("node", node.child.id()),
        ("redis", redis.pid()),
        ("load_generator", std::process::id()),
    ];
    let mut row = throughput_on(
        std::slice::from_ref(&node.url),
        NOOP,
        n,
        clients,
        &watched,
        Some(redis),
    )?;
    row.as_object_mut().unwrap().remove("sample_ids");
    Ok(row)
}
