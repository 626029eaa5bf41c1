//! The system under test: clusters of `trainyard node` processes on one Redis, what the
//! bench asks of them (drain, purge, a data set), and the JSON client it asks with.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use trainyard_testkit::{NodeProcess, RedisServer, free_port, trainyard_bin};

use crate::{FEATURES, ROWS};

/// The load generator's HTTP client. Its timeouts are per phase, not one global timeout: with
/// a global one, ureq looks up the host of every request on a thread of its own (to bound the
/// lookup), and on these loopback addresses that only took CPU from the node under test (a
/// sixth of the load generator's own CPU in the throughput run).
pub fn agent() -> ureq::Agent {
    let limit = Some(Duration::from_secs(60));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_send_request(limit)
        .timeout_send_body(limit)
        .timeout_recv_response(limit)
        .timeout_recv_body(limit)
        .max_idle_connections_per_host(4)
        .build()
        .into()
}

pub fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = agent.get(url).call()?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
}

pub fn post(agent: &ureq::Agent, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = agent.post(url).send_json(body)?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
}

pub fn read_delete(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = agent.delete(url).call()?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
}

/// What the bench asks of a node besides its load.
pub trait NodeAdmin {
    /// Drains the node (its trainers take no new tasks) or resumes it. Draining waits for the
    /// leader to see it (its next reconcile, within a second).
    fn set_draining(&self, draining: bool) -> anyhow::Result<()>;
    /// Purges the queue; returns how many tasks it held. Purging takes about a minute per
    /// 100,000 tasks on 2 cores: no timeout.
    fn purge(&self) -> anyhow::Result<u64>;
}

impl NodeAdmin for NodeProcess {
    fn set_draining(&self, draining: bool) -> anyhow::Result<()> {
        let action = if draining { "drain" } else { "resume" };
        let url = format!("{}/cluster/nodes/{}/{action}", self.url, self.name);
        let (status, answer) = post(&agent(), &url, &Value::Null)?;
        if !(200..300).contains(&status) {
            bail!("{action} answered {status}: {answer}");
        }
        if draining {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok(())
    }

    fn purge(&self) -> anyhow::Result<u64> {
        let patient: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .build()
            .into();
        let (status, purged) = read_delete(&patient, &format!("{}/queue", self.url))?;
        if !(200..300).contains(&status) {
            bail!("purge answered {status}: {purged}");
        }
        Ok(purged["purged"].as_u64().unwrap_or(0))
    }
}

/// Nodes of one cluster on `redis` under key prefix `prefix`; node i has `trainers[i]` CPU
/// trainers. The nodes run the `trainyard` binary of [`trainyard_bin`].
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
}

impl Cluster {
    pub fn start(
        redis: &RedisServer,
        dir: &Path,
        prefix: &str,
        trainers: &[usize],
    ) -> anyhow::Result<Cluster> {
        Self::start_with(redis, dir, prefix, trainers, "", "")
    }

    /// With `store` and `tasks`: more lines of each node's `[store]` and `[tasks]` sections.
    pub fn start_with(
        redis: &RedisServer,
        dir: &Path,
        prefix: &str,
        trainers: &[usize],
        store: &str,
        tasks: &str,
    ) -> anyhow::Result<Cluster> {
        let bin = trainyard_bin();
        let ports: Vec<(u16, u16)> = trainers
            .iter()
            .map(|_| (free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, count) in trainers.iter().enumerate() {
            let name = format!("{prefix}-{i}");
            let (cluster_port, http_port) = ports[i];
            let seeds = if i == 0 {
                String::new()
            } else {
                format!("\"127.0.0.1:{}\"", ports[0].0)
            };
            let devices = vec!["\"cpu\""; *count].join(", ");
            let config = format!(
                "[node]\nname = \"{name}\"\nlisten = \"127.0.0.1:{cluster_port}\"\n\
                 cookie = \"bench-cookie\"\nseeds = [{seeds}]\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\nrate_limit_per_s = 0\n\
                 max_in_flight_per_client = 100000\n\
                 [store]\nurl = \"{}\"\nprefix = \"{prefix}\"\n{store}\n\
                 [trainers]\ndevices = [{devices}]\n\
                 [tasks]\nqueue_limit = 1000000\n{tasks}\n",
                redis.url
            );
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, config)?;
            let log = dir.join(format!("{name}.log"));
            nodes.push(NodeProcess::start(&bin, &name, &path, http_port, &log));
        }
        // Every trainer of every node known to the leader.
        let want: usize = trainers.iter().sum();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, health) = get(&agent(), &format!("{}/cluster/health", nodes[0].url))?;
            let known = health["cluster"]["idle"].as_u64().unwrap_or(0) as usize;
            if known >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {known} of {want} trainers joined: {health}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Cluster { nodes })
    }
}

/// Uploads the 200-row data set; returns its id.
pub fn upload_dataset(url: &str) -> anyhow::Result<String> {
    let mut csv = (0..FEATURES).map(|i| format!("x{i}")).collect::<Vec<_>>();
    csv.push("y".into());
    let mut text = csv.join(",") + "\n";
    let mut state = 12_345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..ROWS {
        let x: Vec<f64> = (0..FEATURES).map(|_| next()).collect();
        let y: f64 = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i + 1) as f64)
            .sum::<f64>()
            + 0.1 * next();
        let row: Vec<String> = x.iter().chain([&y]).map(|v| format!("{v:.6}")).collect();
        text.push_str(&(row.join(",") + "\n"));
    }
    let response = agent()
        .post(format!("{url}/datasets?name=bench&target=y"))
        .header("content-type", "text/csv")
        .send(text.as_bytes())?;
    let answer: Value = response.into_body().read_json()?;
    answer["dataset"]["id"]
        .as_str()
        .or(answer["id"].as_str())
        .map(String::from)
        .with_context(|| format!("upload answered {answer}"))
}

pub fn tiny_training(dataset: &str) -> Value {
    json!({"epochs": 1, "dataset": dataset})
}

/// Passed as the data set of the load runs: submit no-op tasks (`POST /train/noop/async`,
/// `{}`) instead of tiny trainings. The nodes must allow them (`allow_noop = true`).
pub const NOOP: &str = "noop";

/// The path and body a load run submits for `dataset` (an uploaded data set's id for tiny
/// trainings, or [`NOOP`]).
pub fn submission(dataset: &str) -> (&'static str, String) {
    if dataset == NOOP {
        ("/train/noop/async", "{}".into())
    } else {
        ("/train/linear/async", tiny_training(dataset).to_string())
    }
}
