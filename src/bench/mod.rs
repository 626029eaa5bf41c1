//! `trainyard bench`: the benchmark of the whole system, run on this machine from scratch. It
//! starts a `redis-server` (AOF on, `appendfsync everysec`) on a free port and `trainyard node`
//! processes of this binary, drives them over HTTP like real clients, prints a table and
//! writes it as JSON. See BENCHMARKS.md for the figures and what bounds each.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::BenchArgs;

mod memory;
pub use memory::soak;

/// Features of the benchmark's data set (200 rows, a linear target with noise).
const FEATURES: usize = 8;
const ROWS: usize = 200;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("trainyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let redis = Redis::start(&dir)?;
    let scale = |n: usize| if args.quick { n / 10 } else { n };
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), json!(machine()));

    let wants = |workload: &str| args.only.is_empty() || args.only.iter().any(|w| w == workload);

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
            ("redis", redis.child.id()),
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
        let replica = redis.replica(&dir)?;
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

    let report = Value::Object(report);
    println!("{}", table(&report));
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {}", args.out.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{cores} cores, {memory} GB")
}

/// A loopback port free now, for a process this one starts next. Ports come from below the
/// kernel's ephemeral range (32768 and up on Linux), each process counting up from its own
/// offset in 20000-32767: a port the kernel hands out as `:0` may be taken again by any
/// outgoing connection before the process meant to bind it does, and load tests open many.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port in {FIRST}-{}", FIRST + COUNT - 1)
}

/// The load generator's HTTP client. Its timeouts are per phase, not one global timeout: with
/// a global one, ureq looks up the host of every request on a thread of its own (to bound the
/// lookup), and on these loopback addresses that only took CPU from the node under test (a
/// sixth of the load generator's own CPU in the throughput run).
fn agent() -> ureq::Agent {
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

fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = agent.get(url).call()?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = agent.post(url).send_json(body)?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
}

/// A `redis-server` on a free port with AOF on, killed on drop.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start(dir: &Path) -> anyhow::Result<Redis> {
        Self::start_with(dir, &[])
    }

    /// A replica of `self` (its own AOF in `dir`): the primary's writes reach it, and
    /// `WAIT` counts it.
    fn replica(&self, dir: &Path) -> anyhow::Result<Redis> {
        let port = self
            .url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap_or_default();
        let dir = dir.join("replica");
        std::fs::create_dir_all(&dir)?;
        let replica = Self::start_with(&dir, &["--replicaof", "127.0.0.1", port])?;
        let client = ::redis::Client::open(replica.url.as_str())?;
        let mut connection = client.get_connection()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info: String = ::redis::cmd("INFO")
                .arg("replication")
                .query(&mut connection)?;
            if info.contains("master_link_status:up") {
                return Ok(replica);
            }
            if Instant::now() > deadline {
                bail!("the replica did not sync with its primary");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_with(dir: &Path, extra: &[&str]) -> anyhow::Result<Redis> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let redis = Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }
}

/// What a Redis server has done so far: calls per command (those made inside scripts too),
/// bytes received and sent, and the size of its append-only file.
struct RedisCounters {
    calls: HashMap<String, f64>,
    net_in: f64,
    net_out: f64,
    aof: f64,
}

impl Redis {
    fn counters(&self) -> anyhow::Result<RedisCounters> {
        let client = ::redis::Client::open(self.url.as_str())?;
        let mut connection = client.get_connection()?;
        let info: String = ::redis::cmd("INFO").arg("all").query(&mut connection)?;
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
fn redis_per_task(before: &RedisCounters, after: &RedisCounters, tasks: usize) -> Value {
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

/// The whole machine's CPU ticks so far, (busy, idle), from `/proc/stat` (zeros elsewhere).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (ticks.iter().sum::<f64>() - idle, idle)
}

/// CPU seconds a process has used, with those of its children it has waited for (Redis's AOF
/// rewrites); 0 if unknown. Its threads' own time is read to the nanosecond (each thread's
/// `schedstat`): the process-wide counters count in ticks of 10 ms, coarser than the load
/// generator's whole share of a short run. A thread that exits meanwhile takes its time with
/// it; the processes measured keep theirs.
fn cpu_seconds(pid: u32) -> f64 {
    let threads_ns: f64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("schedstat")).ok())
        .filter_map(|schedstat| schedstat.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the state on: cutime and
    // cstime are the 14th and 15th, in ticks of 1/100 s.
    let children_ticks: f64 = stat.rsplit_once(')').map_or(0.0, |(_, fields)| {
        fields
            .split_whitespace()
            .skip(13)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum()
    });
    threads_ns / 1e9 + children_ticks / 100.0
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct NodeProcess {
    name: String,
    child: Child,
    url: String,
}

impl NodeProcess {
    fn rss_mb(&self) -> f64 {
        rss_mb(self.child.id())
    }

    /// Drains the node (its trainers take no new tasks) or resumes it. Draining waits for the
    /// leader to see it (its next reconcile, within a second).
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

    /// Purges the queue; returns how many tasks it held. Purging takes about a minute per
    /// 100,000 tasks on 2 cores: no timeout.
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

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of process `pid`, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// Nodes of one cluster on `redis` under key prefix `prefix`; node i has `trainers[i]` CPU
/// trainers.
struct Cluster {
    nodes: Vec<NodeProcess>,
}

impl Cluster {
    fn start(
        redis: &Redis,
        dir: &Path,
        prefix: &str,
        trainers: &[usize],
    ) -> anyhow::Result<Cluster> {
        Self::start_with(redis, dir, prefix, trainers, "", "")
    }

    /// With `store` and `tasks`: more lines of each node's `[store]` and `[tasks]` sections.
    fn start_with(
        redis: &Redis,
        dir: &Path,
        prefix: &str,
        trainers: &[usize],
        store: &str,
        tasks: &str,
    ) -> anyhow::Result<Cluster> {
        let ports: Vec<(u16, u16)> = trainers
            .iter()
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
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
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let child = Command::new(std::env::current_exe()?)
                .arg("node")
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            let node = NodeProcess {
                name,
                child,
                url: format!("http://127.0.0.1:{http_port}"),
            };
            let agent = agent();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !matches!(
                get(&agent, &format!("{}/cluster/health", node.url)),
                Ok((200, _))
            ) {
                if Instant::now() > deadline {
                    bail!(
                        "node {} did not start (log in {})",
                        node.name,
                        dir.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            nodes.push(node);
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
fn upload_dataset(url: &str) -> anyhow::Result<String> {
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

fn tiny_training(dataset: &str) -> Value {
    json!({"epochs": 1, "dataset": dataset})
}

/// Follows `/events` and records each task's terminal events.
/// Task id -> (final state, terminal events seen, when the first arrived).
type EndsSeen = Arc<Mutex<HashMap<String, (String, u32, Instant)>>>;

struct Ends {
    ended: EndsSeen,
    lagged: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Ends {
    fn follow(url: &str) -> anyhow::Result<Ends> {
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
    fn seen(&self) -> usize {
        self.ended.lock().unwrap().len()
    }

    fn count_of(&self, ids: &HashSet<String>) -> usize {
        let ended = self.ended.lock().unwrap();
        ids.iter().filter(|id| ended.contains_key(*id)).count()
    }
}

impl Drop for Ends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Submits `n` tasks from `clients` keep-alive connections, round robin over `urls`; returns
/// the ids. All connections are driven from one thread, as wrk does (see `status_load`), and
/// each sends the same request bytes, built once: the load generator shares the 2 cores with
/// what it measures.
fn submit_all(
    urls: &[String],
    dataset: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<String>> {
    let body = tiny_training(dataset).to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_client: Vec<anyhow::Result<Vec<String>>> = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..clients.min(n.max(1)) {
            let addr = host_port(&urls[c % urls.len()])?.to_string();
            let request = format!(
                "POST /train/linear/async HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let count = (c..n).step_by(clients).count();
            set.spawn(async move {
                let mut connection = Connection::open(&addr).await?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    let (status, answer) = connection.exchange(request.as_bytes()).await?;
                    #[derive(serde::Deserialize)]
                    struct Accepted<'a> {
                        task_id: &'a str,
                    }
                    match serde_json::from_slice::<Accepted>(answer) {
                        Ok(accepted) if status == 202 => ids.push(accepted.task_id.to_string()),
                        _ => bail!(
                            "submit answered {status}: {}",
                            String::from_utf8_lossy(answer)
                        ),
                    }
                }
                Ok(ids)
            });
        }
        anyhow::Ok(set.join_all().await)
    })?;
    let mut ids = Vec::with_capacity(n);
    for client in per_client {
        ids.extend(client?);
    }
    Ok(ids)
}

/// `host:port` of an `http://` address.
fn host_port(url: &str) -> anyhow::Result<&str> {
    url.strip_prefix("http://")
        .with_context(|| format!("not an http:// address: {url}"))
}

/// A keep-alive HTTP/1.1 connection of the load generator, which sends requests written out
/// in full and reads just enough of each answer to find its end.
struct Connection {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and returns the answer's status and body.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
            if let Some((status, body)) = whole_response(&self.buf) {
                return Ok((status, &self.buf[body]));
            }
        }
    }
}

fn throughput(
    url: &str,
    dataset: &str,
    n: usize,
    clients: usize,
    watched: &[(&str, u32)],
    redis: &Redis,
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
fn throughput_on(
    urls: &[String],
    dataset: &str,
    n: usize,
    clients: usize,
    watched: &[(&str, u32)],
    redis: Option<&Redis>,
) -> anyhow::Result<Value> {
    let ends = Ends::follow(&urls[0])?;
    let redis_before = redis.map(Redis::counters).transpose()?;
    let cpu_before: Vec<f64> = watched.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let machine_before = machine_ticks();
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
    let (busy, idle) = machine_ticks();
    let idle_share = (idle - machine_before.1)
        / ((busy + idle) - (machine_before.0 + machine_before.1)).max(1.0);
    let cpu_ms_per_task: serde_json::Map<String, Value> = watched
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| {
            let ms = (cpu_seconds(*pid) - before) * 1000.0 / n.max(1) as f64;
            (name.to_string(), json!(round(ms, 3)))
        })
        .collect();
    let redis_work = match (redis, &redis_before) {
        (Some(redis), Some(before)) => Some(redis_per_task(before, &redis.counters()?, n)),
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
fn submit_to_start(url: &str, dataset: &str, n: usize) -> anyhow::Result<Value> {
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
fn predict_load(url: &str, connections: usize, duration: Duration) -> anyhow::Result<Value> {
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

/// `GET /task/{id}/status` from `connections` keep-alive connections for `duration`, all driven
/// from one thread, as wrk does: the load generator shares the 2 cores with the node and Redis,
/// and a thread per connection would take much of them.
fn status_load(
    url: &str,
    ids: &[String],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    if ids.is_empty() {
        bail!("no task ids to ask for");
    }
    let addr = host_port(url)?.to_string();
    let requests: Arc<[String]> = ids
        .iter()
        .map(|id| format!("GET /task/{id}/status HTTP/1.1\r\nHost: {addr}\r\n\r\n"))
        .collect();
    http_load(&addr, requests, connections, duration)
}

/// `requests` (whole HTTP/1.1 requests, taken in turn) from `connections` keep-alive
/// connections to `addr` for `duration`; every answer but 200 is an error.
fn http_load(
    addr: &str,
    requests: Arc<[String]>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let addr = addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + duration;
    let per_connection = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..connections {
            let (addr, requests) = (addr.clone(), requests.clone());
            set.spawn(status_connection(addr, requests, c, connections, deadline));
        }
        set.join_all().await
    });
    let errors: usize = per_connection.iter().map(|(_, e)| e).sum();
    let mut all: Vec<f64> = per_connection
        .into_iter()
        .flat_map(|(l, _)| l)
        .map(|us| us as f64 / 1000.0)
        .collect();
    all.sort_by(f64::total_cmp);
    Ok(json!({
        "connections": connections,
        "seconds": duration.as_secs_f64(),
        "requests_per_s": round(all.len() as f64 / duration.as_secs_f64(), 0),
        "p50_ms": round(percentile(&all, 0.50), 3),
        "p99_ms": round(percentile(&all, 0.99), 3),
        "errors": errors,
    }))
}

/// One keep-alive connection of the status load: request `c`, `c + step`, ... of `requests`,
/// one at a time, until `deadline`. Returns each answer's latency (µs) and the error count
/// (an error also reconnects).
async fn status_connection(
    addr: String,
    requests: Arc<[String]>,
    c: usize,
    step: usize,
    deadline: Instant,
) -> (Vec<u32>, usize) {
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    let mut i = c;
    'connect: while Instant::now() < deadline {
        let Ok(mut connection) = Connection::open(&addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < deadline {
            let request = &requests[i % requests.len()];
            i += step;
            let sent = Instant::now();
            match connection.exchange(request.as_bytes()).await {
                Ok((200, _)) => latencies_us.push(sent.elapsed().as_micros() as u32),
                Ok(_) => errors += 1,
                Err(_) => {
                    errors += 1;
                    continue 'connect;
                }
            }
        }
    }
    (latencies_us, errors)
}

/// The status code of the HTTP/1.1 response in `buf`, and where its body lies, once all of it
/// (head and `content-length` bytes of body) has arrived.
fn whole_response(buf: &[u8]) -> Option<(u16, std::ops::Range<usize>)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((status, head_end..head_end + length))
}

/// The store's claim cost (mean `claim` duration from the node's own metrics) and the dispatch
/// rate of the first tasks, with `depth` tasks queued.
fn dispatch_cost(
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

fn read_delete(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = agent.delete(url).call()?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().read_json()?))
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
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "trainyard_store_operation_duration_seconds_{suffix}"
                )) && l.contains(&format!("op=\"{op}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(["claim", "claim_and_finish", "finish"].map(|op| (find("count", op), find("sum", op))))
}

/// Claims counted by `claim_metrics`, of both kinds.
fn claims(metrics: &[(f64, f64); 3]) -> f64 {
    metrics[0].0 + metrics[1].0
}

/// A figure of the report for the table: `-` for none.
fn shown(figure: &Value) -> String {
    if figure.is_null() {
        "-".into()
    } else {
        figure.to_string()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// The report as a Markdown table.
fn table(r: &Value) -> String {
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
                "Redis per finished tiny task ({} tasks, results kept)",
                m["tasks"]
            ),
            format!(
                "{} B used_memory, {} keys, {} B appended to the AOF",
                m["used_memory_per_task_b"], m["keys_per_task"], m["aof_per_task_b"]
            ),
        );
        for k in m["kinds"].as_array().into_iter().flatten() {
            row(
                &format!("  of which {}", k["kind"].as_str().unwrap_or("")),
                format!("{} keys, {} B per task", k["keys"], k["bytes_per_task"]),
            );
        }
    }
    for s in r["scaling"].as_array().into_iter().flatten() {
        row(
            &format!("scaling: {}", s["setup"].as_str().unwrap_or("")),
            format!("{} tasks/s", s["tasks_per_s"]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_whole_once_their_body_has_arrived() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 7\r\n\r\n";
        let mut buf = head.to_vec();
        assert_eq!(whole_response(&buf[..10]), None);
        assert_eq!(whole_response(&buf), None);
        buf.extend_from_slice(b"{\"a\":1");
        assert_eq!(whole_response(&buf), None);
        buf.push(b'}');
        assert_eq!(
            whole_response(&buf),
            Some((200, head.len()..head.len() + 7))
        );
        assert_eq!(
            whole_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            Some((404, 45..45))
        );
    }
}
