//! The many-nodes run (issue 31): N `trainyard node` processes on one Redis, seeded with node
//! 0, `per_node` CPU trainers each. It measures formation (until every node's `/cluster/health`
//! shows all N connected and all N x `per_node` trainers; health is computed once a second at
//! most); the idle cluster (CPU and memory of the nodes, Redis and the bench; Redis commands;
//! established connections on the cluster ports per node and their bytes per second); every
//! trainer busy on no-ops of 500 ms submitted through `POST /tasks`, against trainers / 0.5 s;
//! and `kill -9` of the leader (Redis's leader key): time to a new leader and a task started.
//!
//! Cluster sockets are a node's own (its `/proc/PID/fd` inodes) whose local port is its cluster
//! port or whose peer port is another node's; their bytes are the kernel's counters (`ss -tie`:
//! bytes_sent + bytes_received): every frame ractor_cluster sends, pings and group sync too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use trainyard_testkit::{RedisServer, free_port, metrics, node_command, procfs, trainyard_bin};

use crate::cluster::{agent, get};
use crate::report::{RedisCounters, redis_per_task, round};
use crate::runs::Ends;

/// How long each no-op task sleeps.
const SLEEP_MS: u64 = 500;

/// One node process, killed (SIGKILL) with the fleet.
struct Member {
    name: String,
    child: Child,
    url: String,
    cluster_port: u16,
    log: PathBuf,
    alive: bool,
}

/// The nodes of one run. Dropping it kills every node still running (no graceful stop: 100
/// stops of up to `shutdown_grace_s` each would take minutes) and waits for each.
struct Fleet {
    members: Vec<Member>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
        }
        for m in &mut self.members {
            let _ = m.child.wait();
        }
    }
}

impl Fleet {
    fn alive(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.alive)
    }

    /// Fails if a node exited, with the end of its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for m in self.members.iter_mut().filter(|m| m.alive) {
            if let Some(status) = m.child.try_wait()? {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail = &log[log.len().saturating_sub(2000)..];
                bail!("node {} exited ({status}): {tail}", m.name);
            }
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.alive().map(|m| m.child.id()).collect()
    }
}

/// Starts `n` nodes at once (each seeded with node 0's cluster address), with `per_node`
/// trainers, `[tasks] allow_noop`, logging at warn.
fn spawn(redis: &RedisServer, dir: &Path, n: usize, per_node: usize) -> anyhow::Result<Fleet> {
    let bin = trainyard_bin();
    let prefix = format!("n{n}");
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let devices = vec!["\"cpu\""; per_node].join(", ");
    let mut fleet = Fleet {
        members: Vec::new(),
    };
    for (i, (cluster_port, http_port)) in ports.iter().enumerate() {
        let name = format!("{prefix}-{i}");
        let config = format!(
            "[node]\nname = \"{name}\"\nlisten = \"127.0.0.1:{cluster_port}\"\n\
             cookie = \"bench-cookie\"\nseeds = [\"127.0.0.1:{}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\nrate_limit_per_s = 0\n\
             max_in_flight_per_client = 100000\n\
             [store]\nurl = \"{}\"\nprefix = \"{prefix}\"\n\
             [trainers]\ndevices = [{devices}]\n\
             [tasks]\nqueue_limit = 1000000\nallow_noop = true\n",
            ports[0].0, redis.url
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        let log = dir.join(format!("{name}.log"));
        let mut command = node_command(&bin, &path, &log);
        command.env("RUST_LOG", "warn");
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        fleet.members.push(Member {
            name,
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            cluster_port: *cluster_port,
            log,
            alive: true,
        });
    }
    Ok(fleet)
}

/// Polls every live node still short of `done` until each has been seen so once; returns
/// the seconds since `since` at which the last one was.
fn until_all(
    fleet: &mut Fleet,
    since: Instant,
    timeout: Duration,
    what: &str,
    done: impl Fn(&ureq::Agent, &Member) -> bool,
) -> anyhow::Result<f64> {
    let agent = agent();
    let mut pending: Vec<usize> = (0..fleet.members.len())
        .filter(|i| fleet.members[*i].alive)
        .collect();
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        fleet.check_running()?;
        pending.retain(|i| !done(&agent, &fleet.members[*i]));
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{} nodes not {what} after {timeout:?}", pending.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(since.elapsed().as_secs_f64())
}

/// Whether `member`'s health shows all `n` nodes connected and `trainers` trainers.
fn sees_all(agent: &ureq::Agent, member: &Member, n: usize, trainers: usize) -> bool {
    let Ok((_, health)) = get(agent, &format!("{}/cluster/health", member.url)) else {
        return false;
    };
    health["cluster"]["connected"].as_u64() == Some(n as u64)
        && health["workers"].as_u64() == Some(trainers as u64)
}

/// One reading of the fleet's cluster sockets: for each node, (inode, bytes sent + received)
/// of its established sockets on cluster ports.
fn cluster_sockets(fleet: &Fleet) -> Vec<Vec<(u64, u64)>> {
    let ports: HashSet<u16> = fleet.alive().map(|m| m.cluster_port).collect();
    let output = Command::new("ss")
        .args(["-tinHe", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // inode -> (local port, peer port, bytes)
    let mut sockets: HashMap<u64, (u16, u16, u64)> = HashMap::new();
    let mut current: Option<u64> = None;
    let port = |address: &str| address.rsplit(':').next()?.parse::<u16>().ok();
    for line in output.lines() {
        if !line.starts_with(char::is_whitespace) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields
                .iter()
                .find_map(|f| f.strip_prefix("ino:")?.parse::<u64>().ok());
            current = None;
            if let (Some(inode), Some(local), Some(peer)) = (
                inode,
                fields.get(2).and_then(|a| port(a)),
                fields.get(3).and_then(|a| port(a)),
            ) && (ports.contains(&local) || ports.contains(&peer))
            {
                sockets.insert(inode, (local, peer, 0));
                current = Some(inode);
            }
        } else if let Some(inode) = current {
            let bytes: u64 = line
                .split_whitespace()
                .filter_map(|f| {
                    f.strip_prefix("bytes_sent:")
                        .or_else(|| f.strip_prefix("bytes_received:"))?
                        .parse::<u64>()
                        .ok()
                })
                .sum();
            if let Some(socket) = sockets.get_mut(&inode) {
                socket.2 += bytes;
            }
        }
    }
    fleet
        .alive()
        .map(|m| {
            let fds = std::fs::read_dir(format!("/proc/{}/fd", m.child.id()));
            fds.into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| {
                    let link = std::fs::read_link(fd.path()).ok()?;
                    let link = link.to_str()?;
                    link.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .filter_map(|inode| {
                    let (local, peer, bytes) = sockets.get(&inode)?;
                    (*local == m.cluster_port || (ports.contains(peer) && *local != *peer))
                        .then_some((inode, *bytes))
                })
                .collect()
        })
        .collect()
}

/// Sum, mean and max of `values`, rounded to `digits`.
fn spread(values: &[f64], digits: i32) -> Value {
    let sum: f64 = values.iter().sum();
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    json!({
        "sum": round(sum, digits),
        "min": round(if values.is_empty() { 0.0 } else { min }, digits),
        "mean": round(sum / values.len().max(1) as f64, digits),
        "max": round(max, digits),
    })
}

/// What the fleet, Redis and the bench use over a window: opened by `Window::open`, read by
/// `close` as rates per second (and Redis's commands per task when tasks are given).
struct Window {
    at: Instant,
    cpu: Vec<f64>,
    redis_cpu: f64,
    bench_cpu: f64,
    counters: RedisCounters,
    sockets: Vec<Vec<(u64, u64)>>,
}

impl Window {
    fn open(fleet: &Fleet, redis: &RedisServer) -> anyhow::Result<Window> {
        Ok(Window {
            sockets: cluster_sockets(fleet),
            counters: RedisCounters::read(redis)?,
            cpu: fleet.pids().into_iter().map(procfs::cpu_seconds).collect(),
            redis_cpu: procfs::cpu_seconds(redis.pid()),
            bench_cpu: procfs::cpu_seconds(std::process::id()),
            at: Instant::now(),
        })
    }

    fn close(self, fleet: &Fleet, redis: &RedisServer, tasks: usize) -> anyhow::Result<Value> {
        let cpu: Vec<f64> = fleet.pids().into_iter().map(procfs::cpu_seconds).collect();
        let redis_cpu = procfs::cpu_seconds(redis.pid());
        let bench_cpu = procfs::cpu_seconds(std::process::id());
        let seconds = self.at.elapsed().as_secs_f64();
        let sockets = cluster_sockets(fleet);
        let work = redis_per_task(&self.counters, &RedisCounters::read(redis)?, tasks.max(1));
        let per_s = |v: f64| v / seconds;
        let node_cpu: Vec<f64> = cpu
            .iter()
            .zip(&self.cpu)
            .map(|(after, before)| per_s(after - before) * 1000.0)
            .collect();
        let traffic: Vec<f64> = sockets
            .iter()
            .zip(&self.sockets)
            .map(|(after, before)| {
                let before: HashMap<u64, u64> = before.iter().copied().collect();
                let bytes: u64 = after
                    .iter()
                    .map(|(inode, b)| b.saturating_sub(before.get(inode).copied().unwrap_or(0)))
                    .sum();
                per_s(bytes as f64) / 1024.0
            })
            .collect();
        let connections: Vec<f64> = sockets.iter().map(|s| s.len() as f64).collect();
        let rss: Vec<f64> = fleet.pids().into_iter().map(procfs::rss_mb).collect();
        let mut row = json!({
            "seconds": round(seconds, 2),
            "node_cpu_ms_per_s": spread(&node_cpu, 1),
            "redis_cpu_ms_per_s": round(per_s(redis_cpu - self.redis_cpu) * 1000.0, 1),
            "bench_cpu_ms_per_s": round(per_s(bench_cpu - self.bench_cpu) * 1000.0, 1),
            "node_rss_mb": spread(&rss, 1),
            "redis_rss_mb": procfs::rss_mb(redis.pid()),
            "bench_rss_mb": procfs::rss_mb(std::process::id()),
            "cluster_connections": spread(&connections, 1),
            "cluster_kb_per_s": spread(&traffic, 2),
        });
        let commands = work["commands"].as_f64().unwrap_or(0.0);
        if tasks > 0 {
            row["redis_per_task"] = work;
        } else {
            row["redis_commands_per_s"] = json!(round(per_s(commands), 1));
            row["redis_by_command_per_s"] = json!(
                work["by_command"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(c, n)| (c.clone(), json!(round(per_s(n.as_f64().unwrap_or(0.0)), 1))))
                    .collect::<serde_json::Map<String, Value>>()
            );
        }
        Ok(row)
    }
}

/// Store operations the nodes count, summed over the live nodes: op -> (calls, seconds).
const OPS: [&str; 4] = ["claim", "claim_and_finish", "leases", "lead"];

fn store_ops(fleet: &Fleet) -> anyhow::Result<Vec<(f64, f64)>> {
    let agent = agent();
    let mut sums = vec![(0.0, 0.0); OPS.len()];
    for m in fleet.alive() {
        let text = agent
            .get(format!("{}/metrics", m.url))
            .call()?
            .into_body()
            .read_to_string()?;
        for (sum, op) in sums.iter_mut().zip(OPS) {
            let name = "trainyard_store_operation_duration_seconds";
            sum.0 += metrics::sum(&text, &format!("{name}_count"), "op", op);
            sum.1 += metrics::sum(&text, &format!("{name}_sum"), "op", op);
        }
    }
    Ok(sums)
}

/// Per operation between two readings of [`store_ops`]: calls per task, calls per second and
/// mean milliseconds.
fn ops_between(before: &[(f64, f64)], after: &[(f64, f64)], tasks: usize, seconds: f64) -> Value {
    let rows: serde_json::Map<String, Value> = OPS
        .iter()
        .zip(before.iter().zip(after))
        .map(|(op, (b, a))| {
            let calls = a.0 - b.0;
            let mean = (calls > 0.0).then(|| round((a.1 - b.1) / calls * 1000.0, 3));
            let row = json!({
                "per_task": round(calls / tasks.max(1) as f64, 2),
                "per_s": round(calls / seconds.max(1e-9), 1),
                "mean_ms": mean,
            });
            (op.to_string(), row)
        })
        .collect();
    Value::Object(rows)
}

/// Submits `n` no-op tasks of `SLEEP_MS` through `POST /tasks`, at most `BATCH` a call, the
/// calls spread over the live nodes, a call answered 503 (Redis slower than the node waits
/// for) tried again after 100 ms, 50 times at most; returns their ids and the retries.
fn submit(fleet: &Fleet, n: usize) -> anyhow::Result<(Vec<String>, usize)> {
    const BATCH: usize = 200;
    let agent = agent();
    let urls: Vec<&str> = fleet.alive().map(|m| m.url.as_str()).collect();
    let (mut ids, mut retries) = (Vec::with_capacity(n), 0);
    let mut call = 0;
    while ids.len() < n {
        let items: Vec<Value> = (0..(n - ids.len()).min(BATCH))
            .map(|_| json!({"model_type": "noop", "sleep_ms": SLEEP_MS}))
            .collect();
        let url = format!("{}/tasks", urls[call % urls.len()]);
        call += 1;
        let response = agent.post(&url).send_json(&items)?;
        let status = response.status().as_u16();
        let answer: Value = response.into_body().read_json()?;
        if status == 503 && retries < 50 {
            retries += 1;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let got = answer["task_ids"].as_array().filter(|_| status == 202);
        let Some(got) = got else {
            bail!("POST /tasks answered {status}: {answer}");
        };
        ids.extend(got.iter().filter_map(|id| id.as_str().map(String::from)));
    }
    Ok((ids, retries))
}

/// Every trainer busy: `rounds` tasks per trainer submitted at once, timed until every one
/// ended (the `/events` stream of node 0).
fn busy(
    fleet: &mut Fleet,
    redis: &RedisServer,
    rounds: usize,
    trainers: usize,
) -> anyhow::Result<Value> {
    let n = rounds * trainers;
    let ends = Ends::follow(&fleet.members[0].url)?;
    let ops_before = store_ops(fleet)?;
    let window = Window::open(fleet, redis)?;
    let started = Instant::now();
    let (ids, retries) = submit(fleet, n)?;
    let submitted_s = started.elapsed().as_secs_f64();
    let wanted: HashSet<String> = ids.into_iter().collect();
    // Time enough for a tenth of the ideal rate; a cluster slower than that has collapsed.
    let deadline = Instant::now() + Duration::from_secs(10 * (rounds as u64 + 1));
    let mut complete = true;
    // (seconds, ended) each time the count moved.
    let mut curve: Vec<(f64, usize)> = Vec::new();
    loop {
        let seen = ends.seen();
        if curve.last().is_none_or(|(_, c)| *c != seen) {
            curve.push((started.elapsed().as_secs_f64(), seen));
        }
        if seen >= n && ends.count_of(&wanted) == n {
            break;
        }
        if ends.lagged() {
            bail!("the /events stream lagged: cannot count the ends");
        }
        if Instant::now() > deadline {
            // Reported as such; the rest are purged so that the failover starts idle.
            fleet.check_running()?;
            complete = false;
            let url = &fleet.alive().next().context("no node left")?.url;
            crate::cluster::read_delete(&agent(), &format!("{url}/queue"))?;
            std::thread::sleep(Duration::from_millis(2 * SLEEP_MS));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ended = ends.count_of(&wanted);
    let twice = ends.twice();
    drop(ends);
    let mut row = window.close(fleet, redis, n)?;
    row["store_ops"] = ops_between(&ops_before, &store_ops(fleet)?, n, elapsed);
    if twice > 0 {
        bail!("{twice} tasks ended twice");
    }
    // The steady rate: from the first wave's end to the last wave's start; none when the
    // submission outlasted the first wave (the rate then is the submission's).
    let when = |count: usize| curve.iter().find(|(_, c)| *c >= count).map(|(t, _)| *t);
    let steady = match (when(trainers), when(n.saturating_sub(trainers))) {
        (Some(a), Some(b)) if b > a && submitted_s <= a => {
            Some(round((n - 2 * trainers) as f64 / (b - a), 1))
        }
        _ => None,
    };
    let ideal = trainers as f64 * 1000.0 / SLEEP_MS as f64;
    row["tasks"] = json!(n);
    row["trainers"] = json!(trainers);
    row["submit_s"] = json!(round(submitted_s, 3));
    row["submit_retries"] = json!(retries);
    row["elapsed_s"] = json!(round(elapsed, 3));
    row["ideal_s"] = json!(round(n as f64 / ideal, 3));
    row["ideal_per_s"] = json!(round(ideal, 1));
    row["ended_per_s"] = json!(round(ended as f64 / elapsed, 1));
    row["steady_per_s"] = json!(steady);
    row["share_of_ideal"] = json!(round(ended as f64 / ideal / elapsed, 3));
    row["ended"] = json!(ended);
    row["all_ended"] = json!(complete);
    row["exactly_once"] = json!(twice == 0);
    Ok(row)
}

/// `kill -9` of the leader (the node Redis's `PREFIX:leader` names), a batch submitted at once to another node: seconds to a new
/// leader and to the first task started.
fn failover(
    fleet: &mut Fleet,
    redis: &RedisServer,
    prefix: &str,
    per_node: usize,
) -> anyhow::Result<Value> {
    let client = redis::Client::open(redis.url.as_str())?;
    let mut connection = client.get_connection()?;
    let key = format!("{prefix}:leader");
    let mut read_leader =
        || -> Option<String> { redis::cmd("GET").arg(&key).query(&mut connection).ok()? };
    let old = read_leader().context("no leader in Redis")?;
    let index = fleet
        .members
        .iter()
        .position(|m| m.alive && m.name == old)
        .with_context(|| format!("the leader {old} is not a node of this run"))?;
    let killed_at = SystemTime::now();
    let kill = Instant::now();
    let member = &mut fleet.members[index];
    member.child.kill()?;
    member.child.wait()?;
    member.alive = false;
    let (ids, _) = submit(fleet, per_node)?;
    let url = fleet
        .alive()
        .next()
        .map(|m| m.url.clone())
        .context("no node left")?;
    let agent = agent();
    let (mut new_leader, mut started) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while new_leader.is_none() || started.is_none() {
        if new_leader.is_none()
            && let Some(name) = read_leader().filter(|n| *n != old)
        {
            new_leader = Some((name, kill.elapsed().as_secs_f64()));
        }
        if started.is_none() {
            let (_, status) = get(&agent, &format!("{url}/task/{}/status", ids[0]))?;
            if status["state"].as_str().is_some_and(|s| s != "PENDING") {
                started = Some(kill.elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "after killing leader {old}: new leader {new_leader:?}, a task started {started:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The store's own start time of that task, against the kill.
    let (_, task) = get(&agent, &format!("{url}/task/{}", ids[0]))?;
    let killed_s = killed_at
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs_f64();
    let stored_start = task["timings"]["started_at"]
        .as_f64()
        .map(|t| round(t - killed_s, 3));
    let (name, to_lead) = new_leader.expect("loop ends with a leader");
    Ok(json!({
        "killed": old,
        "new_leader": name,
        "kill_to_new_leader_s": round(to_lead, 3),
        "kill_to_task_started_s": round(started.unwrap_or(0.0), 3),
        "kill_to_task_started_stored_s": stored_start,
    }))
}

/// The whole run at `n` nodes of `per_node` trainers, `rounds` no-op tasks per trainer in the
/// busy phase, `idle_s` seconds of the idle window.
pub fn nodes_run(
    redis: &RedisServer,
    dir: &Path,
    n: usize,
    per_node: usize,
    rounds: usize,
    idle_s: u64,
) -> anyhow::Result<Value> {
    let trainers = n * per_node;
    // Other work on the machine skews every figure: the load average before the run says.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before: Option<f64> = loadavg
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok());
    let started = Instant::now();
    let mut fleet = spawn(redis, dir, n, per_node)?;
    let spawn_s = started.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(60 + n as u64);
    let answering_s = until_all(&mut fleet, started, timeout, "answering", |agent, m| {
        get(agent, &format!("{}/healthz", m.url)).is_ok_and(|(s, _)| s == 200)
    })?;
    let formed_s = until_all(
        &mut fleet,
        started,
        timeout,
        "seeing every node",
        |agent, m| sees_all(agent, m, n, trainers),
    )?;
    let formation_cpu_s: f64 = fleet.pids().into_iter().map(procfs::cpu_seconds).sum();
    eprintln!(
        "   {n} nodes: spawned in {spawn_s:.2} s, answering {answering_s:.2} s, formed \
         {formed_s:.2} s, {formation_cpu_s:.1} CPU s"
    );
    // Settle: the health polls above and the joins' group sync die down.
    std::thread::sleep(Duration::from_secs(2));
    let window = Window::open(&fleet, redis)?;
    std::thread::sleep(Duration::from_secs(idle_s));
    let idle = window.close(&fleet, redis, 0)?;
    eprintln!("   idle: {idle}");
    let busy = busy(&mut fleet, redis, rounds, trainers)?;
    eprintln!("   busy: {busy}");
    let failover = failover(&mut fleet, redis, &format!("n{n}"), per_node)
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    eprintln!("   failover: {failover}");
    Ok(json!({
        "nodes": n,
        "trainers_per_node": per_node,
        "trainers": trainers,
        "load_before": load_before,
        "spawn_s": round(spawn_s, 3),
        "all_answering_s": round(answering_s, 3),
        "formed_s": round(formed_s, 3),
        "formation_cpu_s": round(formation_cpu_s, 2),
        "idle": idle,
        "busy": busy,
        "failover": failover,
    }))
}
