//! The cluster, end to end: real `trainyard node` processes on loopback joined over
//! ractor_cluster, a real `redis-server`, real HTTP. Nodes are killed (`kill -9`), frozen
//! (`SIGSTOP`), refused (wrong cookie) and restarted; no accepted task may be lost or end with
//! two results.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisServer, free_port, http_agent, poll, read_json, temp_dir};
use serde_json::{Value, json};

/// The cluster tests run one at a time: each starts three nodes on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

const COOKIE: &str = "cluster-test-cookie";
/// Task leases long enough that a busy machine renews them in time, and that a killed node is
/// taken for down before a lease of its could run out (also where that waits until the node
/// has not announced itself for 5 s): a task runs once, or is requeued because its node left
/// (`trainer_lost`), never because a renewal came late.
const LEASE_S: &str = "10";
/// Short task leases, so a frozen node's tasks come back quickly.
const SHORT_LEASE_S: &str = "2";

/// A training that takes a few seconds on one core.
fn slow_task() -> Value {
    json!({"epochs": 60, "hidden_sizes": [64, 64], "seed": 1})
}

fn quick_task() -> Value {
    json!({"epochs": 2, "hidden_sizes": [8]})
}

struct Cluster {
    redis: Arc<RedisServer>,
    prefix: String,
    dir: PathBuf,
    /// Cluster port of each node name, fixed across restarts.
    ports: HashMap<String, (u16, u16)>,
    /// `tasks.lease_s` of the nodes started from now on.
    lease_s: &'static str,
}

struct Node {
    name: String,
    child: Child,
    url: String,
    log: PathBuf,
}

impl Cluster {
    fn new(redis: RedisServer) -> Cluster {
        Cluster::on(Arc::new(redis))
    }

    /// A cluster of its own (its own key prefix, ports and folder) on a shared `redis`.
    fn on(redis: Arc<RedisServer>) -> Cluster {
        Cluster {
            redis,
            prefix: format!("cl{}", common::unique()),
            dir: temp_dir("cluster"),
            ports: HashMap::new(),
            lease_s: LEASE_S,
        }
    }

    /// Starts node `name` (one CPU trainer) that dials `seeds` (names of other nodes), and
    /// waits until its health check answers 200.
    fn start(&mut self, name: &str, seeds: &[&str], cookie: &str) -> Node {
        let mut node = self.spawn(name, seeds, cookie);
        node.wait_healthy(Duration::from_secs(60));
        node
    }

    /// Starts node `name` as `start` does, without waiting for it.
    fn spawn(&mut self, name: &str, seeds: &[&str], cookie: &str) -> Node {
        for n in std::iter::once(name).chain(seeds.iter().copied()) {
            self.ports
                .entry(n.to_string())
                .or_insert_with(|| (free_port(), free_port()));
        }
        let (cluster_port, http_port) = self.ports[name];
        let seeds: Vec<String> = seeds
            .iter()
            .map(|s| format!("\"127.0.0.1:{}\"", self.ports[*s].0))
            .collect();
        let config = format!(
            "[node]\nname = \"{name}\"\nlisten = \"127.0.0.1:{cluster_port}\"\ncookie = \"{cookie}\"\nseeds = [{}]\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [store]\nurl = \"{}\"\nprefix = \"{}\"\n\
             [trainers]\ndevices = [\"cpu\"]\n\
             [tasks]\nlease_s = {}\nmax_retries = 3\nshutdown_grace_s = 5\n",
            seeds.join(", "),
            self.redis.url,
            self.prefix,
            self.lease_s,
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = self.dir.join(format!("{name}.log"));
        let child = common::node_command(&path, &log)
            .spawn()
            .expect("trainyard starts");
        Node {
            name: name.to_string(),
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            log,
        }
    }

    /// Three nodes: b and c join through a (and find each other through it).
    fn three(&mut self) -> Vec<Node> {
        let a = self.start("node-a", &[], COOKIE);
        let b = self.start("node-b", &["node-a"], COOKIE);
        let c = self.start("node-c", &["node-a"], COOKIE);
        let nodes = vec![a, b, c];
        wait_connected(&nodes[0], &["node-a", "node-b", "node-c"]);
        wait_connected(&nodes[1], &["node-a", "node-b", "node-c"]);
        wait_connected(&nodes[2], &["node-a", "node-b", "node-c"]);
        nodes
    }
}

impl Node {
    fn agent() -> ureq::Agent {
        http_agent(Duration::from_secs(30))
    }

    /// Waits until the health check answers 200 with at least one trainer; fails at once,
    /// with the node's log, if the process exits.
    fn wait_healthy(&mut self, timeout: Duration) {
        let url = format!("{}/cluster/health", self.url);
        let what = format!("{} to be healthy", self.name);
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            common::poll_child(&mut self.child, timeout, &what, || {
                let (status, body) = read_json(Self::agent().get(&url).call())?;
                (status == 200 && body["workers"].as_u64() >= Some(1)).then_some(())
            })
        }));
        if let Err(e) = waited {
            eprintln!("{} log:\n{}", self.name, self.log());
            std::panic::resume_unwind(e);
        }
    }

    fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        read_json(Self::agent().get(format!("{}{path}", self.url)).call())
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .try_get(path)
            .unwrap_or_else(|| panic!("GET {path} on {} failed", self.name));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn submit(&self, body: Value) -> String {
        let (status, answer) = read_json(
            Self::agent()
                .post(format!("{}/train/mlp/async", self.url))
                .send_json(body),
        )
        .expect("submit answers");
        assert_eq!(status, 202, "{answer}");
        answer["task_id"].as_str().unwrap().to_string()
    }

    fn task(&self, id: &str) -> Value {
        self.get(&format!("/task/{id}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `node` sees every node in `names` alive and connected.
fn wait_connected(node: &Node, names: &[&str]) {
    poll(
        Duration::from_secs(30),
        &format!("{} to see {names:?} connected", node.name),
        || {
            let nodes = node.get("/cluster/nodes");
            let connected: HashSet<String> = nodes["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["connected"] == true && n["alive"] == true)
                .map(|n| n["name"].as_str().unwrap().to_string())
                .collect();
            names.iter().all(|n| connected.contains(*n)).then_some(())
        },
    );
}

fn leader(node: &Node) -> Option<String> {
    node.get("/cluster/nodes")["leader"]
        .as_str()
        .map(String::from)
}

/// Waits until every task in `ids` is SUCCESS; returns their records.
fn wait_all_succeed(node: &Node, ids: &[String], timeout: Duration) -> Vec<Value> {
    poll(timeout, "every task to succeed", || {
        let records: Vec<Value> = ids.iter().map(|id| node.task(id)).collect();
        for r in &records {
            let state = r["state"].as_str().unwrap();
            assert!(
                state != "FAILURE" && state != "REVOKED",
                "a task ended as {state}: {r}"
            );
        }
        records
            .iter()
            .all(|r| r["state"] == "SUCCESS")
            .then_some(records)
    })
}

/// The node whose trainer produced a task's result.
fn ran_on(record: &Value) -> String {
    let trainer = record["result"]["trainer"]
        .as_str()
        .unwrap_or_else(|| panic!("no trainer in {record}"));
    trainer.split('/').next().unwrap().to_string()
}

/// Waits until the trainers of every node in `names` are busy; returns which task each runs.
fn wait_busy(node: &Node, names: &[&str]) -> HashMap<String, String> {
    poll(Duration::from_secs(60), "trainers to be busy", || {
        let nodes = node.get("/cluster/nodes");
        let mut tasks = HashMap::new();
        for n in nodes["nodes"].as_array().unwrap() {
            let name = n["name"].as_str().unwrap();
            if !names.contains(&name) {
                continue;
            }
            let t = &n["trainers"][0];
            if t["state"] != "busy" {
                return None;
            }
            tasks.insert(name.to_string(), t["task_id"].as_str()?.to_string());
        }
        (tasks.len() == names.len()).then_some(tasks)
    })
}

fn attempt_codes(record: &Value) -> Vec<String> {
    record["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"]["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_submitted_to_one_node_run_on_every_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let nodes = cluster.three();
    let view = nodes[1].get("/cluster/nodes");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 3, "{view}");
    let leaders: Vec<&Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["leader"] == true)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {view}");
    // Health is computed at most once a second: the answer may predate the last join.
    common::poll_seen(
        Duration::from_secs(30),
        "health to count the whole cluster",
        || {
            let health = nodes[2].get("/cluster/health");
            match health["cluster"]["nodes"] == 3 && health["cluster"]["trainers"] == 3 {
                true => Ok(()),
                false => Err(health),
            }
        },
    );

    let ids: Vec<String> = (0..9).map(|_| nodes[0].submit(quick_task())).collect();
    let records = wait_all_succeed(&nodes[0], &ids, Duration::from_secs(120));
    let used: HashSet<String> = records.iter().map(ran_on).collect();
    assert_eq!(
        used,
        HashSet::from(["node-a".into(), "node-b".into(), "node-c".into()]),
        "tasks ran on every node"
    );
    for r in &records {
        assert_eq!(r["attempt"], 1, "{r}");
    }
}

/// Started at once, as an orchestrator starts them, each with the others as seeds, every node
/// answers its health check 200 within 60 s (seconds, on an idle machine), ten times in a row. (Every node's dispatcher was
/// registered under one name, and ractor_cluster registers a stub of each remote actor under
/// its remote name: the health check could find another node's dispatcher and answer 503 for
/// good, about one start in three.)
#[test]
fn three_nodes_started_at_once_are_each_healthy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Arc::new(RedisServer::start());
    let names = ["node-a", "node-b", "node-c"];
    for round in 0..10 {
        let mut cluster = Cluster::on(redis.clone());
        let nodes: Vec<Node> = names
            .iter()
            .map(|name| {
                let seeds: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
                cluster.spawn(name, &seeds, COOKIE)
            })
            .collect();
        let started = Instant::now();
        // Healthy once the nodes are connected (remote stubs exist from then on), with every
        // trainer of the cluster in view.
        let whole = |body: &Value| {
            body["workers"] == 3 && body["cluster"]["connected"] == 3 && body["status"] == "healthy"
        };
        for node in &nodes {
            let last = Mutex::new(None);
            let healthy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let left = Duration::from_secs(60).saturating_sub(started.elapsed());
                poll(left, "health", || {
                    let (status, body) = node.try_get("/cluster/health")?;
                    let ok = status == 200 && whole(&body);
                    *last.lock().unwrap() = Some((status, body));
                    ok.then_some(())
                })
            }));
            assert!(
                healthy.is_ok(),
                "round {round}: {} not healthy within 60 s: {:?}\n{}",
                node.name,
                last.lock().unwrap(),
                node.log()
            );
        }
    }
}

#[test]
fn a_killed_node_loses_no_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let mut nodes = cluster.three();
    let ids: Vec<String> = (0..3).map(|_| nodes[0].submit(slow_task())).collect();
    let running = wait_busy(&nodes[0], &["node-a", "node-b", "node-c"]);
    let lead = leader(&nodes[0]).unwrap();
    let victim = nodes
        .iter()
        .position(|n| n.name != lead)
        .expect("a follower");
    let victim_name = nodes[victim].name.clone();
    let lost_task = running[&victim_name].clone();
    nodes[victim].kill9();
    let survivor = nodes.iter().find(|n| n.name != victim_name).unwrap();
    let records = wait_all_succeed(survivor, &ids, Duration::from_secs(180));
    for r in &records {
        if r["task_id"] == lost_task.as_str() {
            assert_eq!(r["attempt"], 2, "the lost task ran again: {r}");
            assert_eq!(attempt_codes(r), ["trainer_lost"], "{r}");
            assert_ne!(ran_on(r), victim_name);
        } else {
            assert_eq!(r["attempt"], 1, "{r}");
        }
    }
}

#[test]
fn a_killed_leader_is_replaced_and_work_keeps_flowing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let mut nodes = cluster.three();
    let lead = leader(&nodes[0]).unwrap();
    let mut ids: Vec<String> = (0..9).map(|_| nodes[0].submit(quick_task())).collect();
    let victim = nodes.iter().position(|n| n.name == lead).unwrap();
    // Let some work start, then kill the leader mid-stream.
    std::thread::sleep(Duration::from_millis(1500));
    nodes[victim].kill9();
    let killed = Instant::now();
    let survivor = nodes.iter().find(|n| n.name != lead).unwrap();
    // The leader lease lasts 3 s: a new leader within seconds on an idle machine.
    let new_leader = poll(Duration::from_secs(30), "a new leader", || {
        leader(survivor).filter(|l| *l != lead)
    });
    let took = killed.elapsed();
    eprintln!("leader {lead} killed; {new_leader} leads after {took:?}");
    ids.extend((0..3).map(|_| survivor.submit(quick_task())));
    let records = wait_all_succeed(survivor, &ids, Duration::from_secs(180));
    for r in &records {
        assert_ne!(ran_on(r), "", "{r}");
        assert!(r["result"].is_object(), "one result: {r}");
    }
}

#[test]
fn a_schedule_fires_once_per_due_time_while_the_leader_is_killed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let mut nodes = cluster.three();
    let schedule = json!({
        "name": "every-second",
        "cron": "* * * * * *",
        "model_type": "linear",
        "request": {"epochs": 1},
    });
    let (status, created) = read_json(
        Node::agent()
            .post(format!("{}/schedules", nodes[1].url))
            .send_json(schedule),
    )
    .unwrap();
    assert_eq!(status, 201, "{created}");
    std::thread::sleep(Duration::from_secs(3));
    let lead = leader(&nodes[0]).unwrap();
    let victim = nodes.iter().position(|n| n.name == lead).unwrap();
    nodes[victim].kill9();
    let survivor = nodes.iter().find(|n| n.name != lead).unwrap();
    poll(Duration::from_secs(30), "a new leader", || {
        leader(survivor).filter(|l| *l != lead)
    });
    // At least 3 + 4 s of due times, and the lease's lapse between: 7 or more.
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = read_json(
        Node::agent()
            .delete(format!("{}/schedules/every-second", survivor.url))
            .call(),
    )
    .unwrap();
    assert_eq!(status, 200);

    let (status, _) = survivor.try_get("/schedules/every-second").unwrap();
    assert_eq!(status, 404, "deleted");
    let list = survivor.get("/tasks?limit=1000");
    let mut dues: Vec<i64> = Vec::new();
    let mut ids = Vec::new();
    for t in list["tasks"].as_array().unwrap() {
        let id = t["task_id"].as_str().unwrap().to_string();
        let record = survivor.task(&id);
        assert_eq!(record["schedule"]["name"], "every-second", "{record}");
        assert_eq!(
            record["schedule"]["due_times"], 1,
            "no time was missed: {record}"
        );
        dues.push(record["schedule"]["due_at"].as_i64().unwrap());
        ids.push(id);
    }
    dues.sort();
    let (first, last) = (dues[0], *dues.last().unwrap());
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(dues, expected, "every due time once, across the failover");
    assert!(dues.len() >= 7, "{dues:?}");
    eprintln!(
        "{} due times fired once each across the leader kill",
        dues.len()
    );
    wait_all_succeed(survivor, &ids, Duration::from_secs(120));
}

/// A sweep's decisions survive its leader: `kill -9` of the leader mid-sweep loses no trial
/// and starts none twice (each trial one task, found again by its key), and ASHA's rungs are
/// decided once each (a trial retried elsewhere is told the first decision).
#[test]
fn a_sweep_survives_a_killed_leader_with_each_trial_started_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let mut nodes = cluster.three();
    // Trials of a second or more each, so the kill falls among them.
    let sweep = json!({
        "name": "failover",
        "model_type": "mlp",
        "dataset": "friedman1",
        "request": {"hidden_sizes": [32]},
        "space": {"learning_rate": {"choice": [0.00001, 0.001, 0.01]},
                  "batch_size": {"choice": [16, 32]}},
        "trials": 9,
        "parallel": 3,
        "seed": 5,
        "early_stopping": {"asha": {"min_resource": 2, "max_resource": 18,
                                    "reduction_factor": 3}},
        "register": {"name": "failover-best", "promote_alias": "production"},
    });
    let (status, created) = read_json(
        Node::agent()
            .post(format!("{}/sweeps", nodes[1].url))
            .send_json(sweep),
    )
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["sweep"]["sweep_id"].as_str().unwrap().to_string();
    // Kill the leader while trials run and others wait.
    let before = poll(Duration::from_secs(60), "trials to run", || {
        let s = nodes[1].get(&format!("/sweeps/{id}"));
        (s["counts"]["running"].as_u64().unwrap() >= 2).then_some(s)
    });
    let lead = leader(&nodes[0]).unwrap();
    let victim = nodes.iter().position(|n| n.name == lead).unwrap();
    nodes[victim].kill9();
    let killed = Instant::now();
    assert!(
        before["counts"]["waiting"].as_u64().unwrap() > 0,
        "the kill falls mid-sweep: {before}"
    );
    let survivor = nodes.iter().find(|n| n.name != lead).unwrap();
    let sweep = poll(Duration::from_secs(300), "the sweep to end", || {
        let s = survivor.get(&format!("/sweeps/{id}"));
        (s["state"] != "RUNNING").then_some(s)
    });
    assert_eq!(sweep["state"], "SUCCESS", "{sweep}");
    let trials = sweep["trials"].as_array().unwrap();
    let counts = &sweep["counts"];
    assert_eq!(
        counts["completed"].as_u64().unwrap() + counts["stopped_early"].as_u64().unwrap(),
        9,
        "no trial lost: {sweep}"
    );
    // Each trial one task, and no other task in the cluster.
    let tasks: HashSet<&str> = trials
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(tasks.len(), 9);
    let listed = survivor.get("/tasks?limit=1000");
    assert_eq!(
        listed["tasks"].as_array().unwrap().len(),
        9,
        "none started twice: {listed}"
    );
    for t in trials {
        let record = survivor.task(t["task_id"].as_str().unwrap());
        assert_eq!(record["sweep"]["trial"], t["trial"], "{record}");
        assert_eq!(record["state"], "SUCCESS", "{record}");
    }
    // Its best model registered once, by whichever leader ended it, and served by every
    // node that is left.
    assert_eq!(
        sweep["registered"],
        json!({"name": "failover-best", "version": 1, "promoted": true}),
        "{sweep}"
    );
    let model = survivor.get("/models/failover-best");
    assert_eq!(model["versions"].as_array().unwrap().len(), 1, "{model}");
    assert_eq!(model["versions"][0]["task_id"], sweep["best"]["task_id"]);
    for node in nodes.iter().filter(|n| n.name != lead) {
        let (status, answer) = read_json(
            Node::agent()
                .post(format!(
                    "{}/models/failover-best/aliases/production/predict",
                    node.url
                ))
                .send_json(json!({"rows": [vec![0.5; 8]]})),
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    // Every rung result once per (trial, step), each decision the one ASHA's rule gives.
    let mut seen = HashSet::new();
    for t in trials {
        for r in t["rungs"].as_array().unwrap() {
            assert!(
                seen.insert((t["trial"].as_u64(), r["step"].as_u64())),
                "{t}"
            );
        }
    }
    eprintln!(
        "sweep across a leader kill: {} completed, {} stopped early, {} rung results; \
         ended {:?} after the kill",
        counts["completed"],
        counts["stopped_early"],
        seen.len(),
        killed.elapsed()
    );
}

#[test]
fn every_node_streams_the_events_of_a_task_trained_anywhere() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let nodes = cluster.three();
    // Long enough (a second or more) that progress is written: its first write comes 50 ms
    // into the training; one that ends sooner has none.
    let id = nodes[0].submit(json!({"epochs": 300, "hidden_sizes": [32], "seed": 2}));
    let readers: Vec<_> = nodes
        .iter()
        .map(|n| {
            let url = format!("{}/task/{id}/events", n.url);
            std::thread::spawn(move || common::read_sse(&url, None, |_| false))
        })
        .collect();
    let streams: Vec<Vec<common::SseMessage>> = readers
        .into_iter()
        .map(|r| {
            let (events, ended) = r.join().unwrap();
            assert!(ended);
            events
        })
        .collect();
    let trained_on = ran_on(&nodes[0].task(&id));
    for events in &streams {
        assert_eq!(events, &streams[0], "the same events through every node");
    }
    let last = streams[0].last().unwrap();
    assert_eq!(last.data["state"], "SUCCESS");
    assert_eq!(last.data["node"], trained_on.as_str());
    assert!(streams[0].iter().any(|e| e.event == "progress"));
    eprintln!(
        "{} events through each of 3 nodes; trained on {trained_on}",
        streams[0].len()
    );
}

#[test]
fn a_frozen_node_loses_its_tasks_when_the_lease_runs_out_and_its_late_writes_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    cluster.lease_s = SHORT_LEASE_S;
    let nodes = cluster.three();
    let ids: Vec<String> = (0..3).map(|_| nodes[0].submit(slow_task())).collect();
    let running = wait_busy(&nodes[0], &["node-a", "node-b", "node-c"]);
    let lead = leader(&nodes[0]).unwrap();
    let frozen = nodes.iter().find(|n| n.name != lead).unwrap();
    let frozen_task = running[&frozen.name].clone();
    frozen.signal("-STOP");
    let watcher = nodes.iter().find(|n| n.name == lead).unwrap();
    // The lease (2 s) runs out and the task goes back to the queue, then runs elsewhere.
    let requeued = poll(
        Duration::from_secs(30),
        "the frozen task to be requeued",
        || {
            let r = watcher.task(&frozen_task);
            (r["attempt"].as_u64() >= Some(2) || r["state"] == "PENDING").then_some(r)
        },
    );
    assert_eq!(attempt_codes(&requeued), ["lease_expired"], "{requeued}");
    let others: Vec<String> = ids.iter().filter(|i| **i != frozen_task).cloned().collect();
    wait_all_succeed(watcher, &others, Duration::from_secs(180));
    let done = wait_all_succeed(
        watcher,
        std::slice::from_ref(&frozen_task),
        Duration::from_secs(180),
    );
    assert_ne!(ran_on(&done[0]), frozen.name);
    // Thawed, the old attempt learns it lost the task and its writes change nothing.
    frozen.signal("-CONT");
    poll(Duration::from_secs(60), "the thawed node to notice", || {
        frozen.log().contains("lost its lease").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = watcher.task(&frozen_task);
    assert_eq!(after["state"], "SUCCESS");
    assert_eq!(
        after["result"], done[0]["result"],
        "the result did not change"
    );
    assert_eq!(after["attempt"], done[0]["attempt"]);
}

#[test]
fn a_node_with_the_wrong_cookie_cannot_join() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let a = cluster.start("node-a", &[], COOKIE);
    let b = cluster.start("node-b", &["node-a"], COOKIE);
    wait_connected(&a, &["node-a", "node-b"]);
    let intruder = cluster.start("node-x", &["node-a"], "not-the-cookie");
    poll(Duration::from_secs(20), "the refusal in the log", || {
        let log = intruder.log();
        (log.contains("authentication") && log.contains("cookie")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let view = a.get("/cluster/nodes");
    let x = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-x")
        .cloned()
        .unwrap_or(json!({}));
    assert_ne!(x["connected"], true, "node-x is not a peer: {view}");
    assert_ne!(leader(&a).as_deref(), Some("node-x"));
    // Work submitted anywhere runs on the real cluster, never on the intruder.
    let ids: Vec<String> = (0..4).map(|_| intruder.submit(quick_task())).collect();
    let records = wait_all_succeed(&a, &ids, Duration::from_secs(120));
    for r in &records {
        assert_ne!(ran_on(r), "node-x", "{r}");
    }
    drop(b);
}

/// A connection to the cluster port that never authenticates (a port scan, a health check
/// aimed at the wrong port, a node with the wrong cookie dialling in) must not stop a node that
/// has no peer yet from leading: one stray `curl` once stopped a lone node's dispatching for good.
#[test]
fn stray_connections_to_a_lone_node_do_not_stop_it_leading() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let a = cluster.start("node-a", &[], COOKIE);
    let first = a.submit(quick_task());
    wait_all_succeed(&a, &[first], Duration::from_secs(60));

    let cluster_port = cluster.ports["node-a"].0;
    for junk in [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff; 64][..],
        &[][..],
    ] {
        let mut stray = std::net::TcpStream::connect(("127.0.0.1", cluster_port)).unwrap();
        std::io::Write::write_all(&mut stray, junk).unwrap();
        drop(stray);
    }
    let intruder = cluster.start("node-x", &["node-a"], "not-the-cookie");
    poll(Duration::from_secs(20), "node-a to refuse node-x", || {
        a.log()
            .contains("closed before authentication")
            .then_some(())
    });
    // Past the leader lease's lifetime: a node that gave up leading has lost it by now.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(leader(&a).as_deref(), Some("node-a"));
    let ids: Vec<String> = (0..4).map(|_| a.submit(quick_task())).collect();
    let records = wait_all_succeed(&a, &ids, Duration::from_secs(60));
    for r in &records {
        assert_eq!(ran_on(r), "node-a", "{r}");
    }
    drop(intruder);
}

#[test]
fn a_redis_restart_under_load_loses_no_accepted_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::durable());
    let a = cluster.start("node-a", &[], COOKIE);
    let b = cluster.start("node-b", &["node-a"], COOKIE);
    wait_connected(&a, &["node-a", "node-b"]);
    let tiny = json!({"epochs": 1, "hidden_sizes": [4]});
    let mut ids: Vec<String> = (0..150).map(|_| a.submit(tiny.clone())).collect();
    // Keep submitting through the restart: what is accepted (202) must finish; what is
    // refused (503, store unavailable) was never promised.
    let (accepted, refused) = std::thread::scope(|scope| {
        let submitter = scope.spawn(|| {
            let (mut accepted, mut refused) = (Vec::new(), 0);
            for _ in 0..150 {
                let reply = read_json(
                    Node::agent()
                        .post(format!("{}/train/mlp/async", b.url))
                        .send_json(json!({"epochs": 1, "hidden_sizes": [4]})),
                );
                match reply {
                    Some((202, answer)) => {
                        accepted.push(answer["task_id"].as_str().unwrap().to_string())
                    }
                    Some((503, answer)) => {
                        assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
                        refused += 1;
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (accepted, refused)
        });
        std::thread::sleep(Duration::from_millis(500));
        cluster.redis.restart(Duration::from_secs(2));
        submitter.join().unwrap()
    });
    eprintln!(
        "{} accepted and {refused} refused during the restart",
        accepted.len()
    );
    ids.extend(accepted);
    poll(
        Duration::from_secs(60),
        "the API to reach Redis again",
        || {
            let (status, _) = b.try_get("/cluster/health")?;
            (status == 200).then_some(())
        },
    );
    ids.extend((0..50).map(|_| b.submit(tiny.clone())));
    let records = wait_all_succeed(&a, &ids, Duration::from_secs(400));
    let unique: HashSet<&str> = records
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), ids.len(), "every accepted task, once");
    for r in &records {
        assert!(r["result"]["metrics"].is_object(), "one result: {r}");
    }
}

#[test]
fn a_restarted_node_rejoins_and_takes_work() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let a = cluster.start("node-a", &["node-b"], COOKIE);
    let mut b = cluster.start("node-b", &["node-a"], COOKIE);
    wait_connected(&a, &["node-a", "node-b"]);
    b.kill9();
    poll(Duration::from_secs(60), "node-b to be seen gone", || {
        let view = a.get("/cluster/nodes");
        let b = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "node-b")?
            .clone();
        (b["connected"] == false).then_some(())
    });
    let b = cluster.start("node-b", &["node-a"], COOKIE);
    wait_connected(&a, &["node-a", "node-b"]);
    wait_connected(&b, &["node-a", "node-b"]);
    let ids: Vec<String> = (0..6).map(|_| a.submit(slow_task())).collect();
    let records = wait_all_succeed(&a, &ids, Duration::from_secs(240));
    assert!(
        records.iter().any(|r| ran_on(r) == "node-b"),
        "the restarted node-b took work"
    );
}

#[test]
fn a_cancel_sent_to_any_node_stops_the_task_where_it_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let nodes = cluster.three();
    let ids: Vec<String> = (0..3)
        .map(|_| nodes[0].submit(json!({"epochs": 100000, "hidden_sizes": [64, 64]})))
        .collect();
    let running = wait_busy(&nodes[0], &["node-a", "node-b", "node-c"]);
    // Cancel each task through a node other than the one running it.
    for (i, (runner, task)) in running.iter().enumerate() {
        let via = nodes.iter().find(|n| &n.name != runner).unwrap();
        let asked = Instant::now();
        let (status, answer) = read_json(
            Node::agent()
                .post(format!("{}/task/{task}/cancel", via.url))
                .send_json(json!(null)),
        )
        .unwrap();
        assert_eq!(status, 202, "{answer}");
        poll(Duration::from_secs(30), "the task to stop", || {
            (via.task(task)["state"] == "REVOKED").then_some(())
        });
        let took = asked.elapsed();
        eprintln!(
            "cancel {i} of a task on {runner} via {}: {took:?}",
            via.name
        );
    }
    assert_eq!(ids.len(), 3);
}

#[test]
fn a_drained_node_finishes_its_work_takes_no_more_and_can_resume() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new(RedisServer::start());
    let a = cluster.start("node-a", &[], COOKIE);
    let b = cluster.start("node-b", &["node-a"], COOKIE);
    wait_connected(&a, &["node-a", "node-b"]);
    let first: Vec<String> = (0..2).map(|_| a.submit(slow_task())).collect();
    let running = wait_busy(&a, &["node-a", "node-b"]);
    let on_b = running["node-b"].clone();
    let (status, answer) = read_json(
        Node::agent()
            .post(format!("{}/cluster/nodes/node-b/drain", a.url))
            .send_empty(),
    )
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    let later: Vec<String> = (0..3).map(|_| b.submit(quick_task())).collect();
    let records = wait_all_succeed(&a, &later, Duration::from_secs(120));
    for r in &records {
        assert_eq!(
            ran_on(r),
            "node-a",
            "a draining node takes no new work: {r}"
        );
    }
    let done = wait_all_succeed(&a, &first, Duration::from_secs(120));
    let b_task = done.iter().find(|r| r["task_id"] == on_b.as_str()).unwrap();
    assert_eq!(
        (ran_on(b_task).as_str(), &b_task["attempt"]),
        ("node-b", &json!(1))
    );
    poll(Duration::from_secs(60), "node-b to report drained", || {
        let view = a.get("/cluster/nodes");
        let node = view["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "node-b")?
            .clone();
        (node["drained"] == true).then_some(())
    });
    let (status, _) = read_json(
        Node::agent()
            .post(format!("{}/cluster/nodes/node-b/resume", a.url))
            .send_empty(),
    )
    .unwrap();
    assert_eq!(status, 202);
    let (status, missing) = read_json(
        Node::agent()
            .post(format!("{}/cluster/nodes/node-z/drain", a.url))
            .send_empty(),
    )
    .unwrap();
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("node_not_found"))
    );
    let again: Vec<String> = (0..4).map(|_| a.submit(slow_task())).collect();
    let records = wait_all_succeed(&a, &again, Duration::from_secs(240));
    assert!(
        records.iter().any(|r| ran_on(r) == "node-b"),
        "node-b works again"
    );
    // The leader may see the resume before node-b does; a task it sends then still runs
    // (the store took it for node-b), not given back as if node-b were stopping.
    for r in &records {
        assert_eq!(r["attempts"], json!([]), "no attempt given back: {r}");
    }
}
