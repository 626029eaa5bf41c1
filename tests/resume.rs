//! Checkpoints and resume, end to end: a training whose node dies (`kill -9`) or stops goes on
//! in its next attempt from its last checkpoint, and ends with the metrics and the model of
//! an uninterrupted run, value for value.
//!
//! - three `trainyard node` processes on loopback and a real `redis-server`: the node running
//!   a training is killed at about 70%; its next attempt resumes from its checkpoint;
//! - one node on the embedded store, stopped (SIGTERM) mid-training and started again on the
//!   same file: the checkpoint taken at the graceful stop is where the next attempt starts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::{RedisServer, free_port, http_agent, poll, read_json, read_sse, temp_dir};
use serde_json::{Value, json};

const COOKIE: &str = "resume-test-cookie";
/// Epochs of the training under test: about 10 s alone on one core of a 2-core machine.
const EPOCHS: u64 = 200;

/// The training under test: the same spec and seed for the run killed and the one not.
fn training() -> Value {
    json!({"epochs": EPOCHS, "hidden_sizes": [64, 64], "seed": 7})
}

/// A `trainyard node` process, killed on drop.
struct Node {
    name: String,
    child: Child,
    url: String,
    log: PathBuf,
}

impl Node {
    /// Starts node `name` from `config` (TOML) in `dir`; waits until it is healthy.
    fn start(dir: &Path, name: &str, http_port: u16, config: &str) -> Node {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut child = common::node_command(&path, &log)
            .spawn()
            .expect("trainyard starts");
        let url = format!("http://127.0.0.1:{http_port}");
        let health = format!("{url}/cluster/health");
        let healthy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            common::poll_child(
                &mut child,
                Duration::from_secs(60),
                "the node to be healthy",
                || {
                    let (status, body) = read_json(agent().get(&health).call())?;
                    (status == 200 && body["workers"].as_u64() >= Some(1)).then_some(())
                },
            )
        }));
        let node = Node {
            name: name.to_string(),
            child,
            url,
            log,
        };
        if let Err(e) = healthy {
            eprintln!("{name} log:\n{}", node.log());
            std::panic::resume_unwind(e);
        }
        node
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = read_json(agent().get(format!("{}{path}", self.url)).call())
            .unwrap_or_else(|| panic!("GET {path} on {} failed", self.name));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) =
            read_json(agent().post(format!("{}{path}", self.url)).send_json(body))
                .unwrap_or_else(|| panic!("POST {path} on {} failed", self.name));
        assert!(
            status == 200 || status == 202,
            "POST {path}: {status} {answer}"
        );
        answer
    }

    /// Submits the training under test; its id.
    fn submit(&self) -> String {
        let answer = self.post("/train/mlp/async", training());
        answer["task_id"].as_str().unwrap().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The task's step and the node its trainer is on, while it runs.
    fn running(&self, id: &str) -> Option<(u64, String)> {
        let task = self.get(&format!("/task/{id}"));
        let step = task["progress"]["current"].as_u64()?;
        Some((step, task["node"].as_str()?.to_string()))
    }

    /// Waits until the task succeeds; its record.
    fn wait_success(&self, id: &str, within: Duration) -> Value {
        poll(within, &format!("task {id} to succeed"), || {
            let task = self.get(&format!("/task/{id}"));
            match task["state"].as_str() {
                Some("SUCCESS") => Some(task),
                Some("FAILURE" | "REVOKED") => panic!("task {id} ended badly: {task}"),
                _ => None,
            }
        })
    }

    /// The metrics that do not depend on timing, and the model's predictions for some rows.
    fn outcome(&self, id: &str) -> (Vec<Value>, Vec<Value>) {
        let result = self.get(&format!("/task/{id}/result"));
        let metrics = &result["result"]["metrics"];
        let values = [
            "train_r2",
            "test_r2",
            "train_rmse",
            "test_rmse",
            "final_loss",
            "iterations",
        ]
        .iter()
        .map(|k| metrics[*k].clone())
        .collect();
        let rows: Vec<Vec<f64>> = (0..5)
            .map(|r| (0..8).map(|c| ((r * 8 + c) % 10) as f64 / 10.0).collect())
            .collect();
        let predicted = self.post(&format!("/models/{id}/predict"), json!({ "rows": rows }));
        let predictions = predicted["predictions"].as_array().unwrap().clone();
        (values, predictions)
    }

    fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This host's clock, in seconds since the Unix epoch (the store's clock is this host's).
fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(30))
}

/// The steps at which attempt `attempt` of the task reported progress, from its event log.
fn progress_of_attempt(node: &Node, id: &str, attempt: u64) -> Vec<u64> {
    let (events, _) = read_sse(&format!("{}/task/{id}/events", node.url), None, |_| false);
    events
        .iter()
        .filter(|e| e.event == "progress" && e.data["attempt"] == attempt)
        .filter_map(|e| e.data["progress"]["current"].as_u64())
        .collect()
}

/// Where a node listens (cluster and HTTP ports) and what it joins.
struct Place<'a> {
    name: &'a str,
    cluster: u16,
    http: u16,
    seeds: &'a [u16],
}

/// The node config of the tests: checkpoints every half second; a stopping node waits
/// `grace_s` for its task.
fn config(place: &Place, store: &str, prefix: &str, grace_s: f64) -> String {
    let Place {
        name,
        cluster,
        http,
        seeds,
    } = place;
    let seeds: Vec<String> = seeds.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        "[node]\nname = \"{name}\"\nlisten = \"127.0.0.1:{cluster}\"\ncookie = \"{COOKIE}\"\n\
         seeds = [{}]\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\nallow_unauthenticated = true\n\
         [store]\nurl = \"{store}\"\nprefix = \"{prefix}\"\n\
         [trainers]\ndevices = [\"cpu\"]\n\
         [tasks]\nlease_s = 10\nmax_retries = 3\nshutdown_grace_s = {grace_s}\n\
         checkpoint_every_s = 0.5\n",
        seeds.join(", "),
    )
}

/// What a kill at 70% came to: the killed task's record, its outcome and the uninterrupted
/// one's, the step it was killed at, the steps its second attempt reported, and the seconds
/// from the kill to its end.
struct Killed {
    record: Value,
    outcome: (Vec<Value>, Vec<Value>),
    whole: (Vec<Value>, Vec<Value>),
    at_kill: u64,
    second_steps: Vec<u64>,
    kill_to_end_s: f64,
    /// Seconds from the kill to the start of the second attempt (the node taken for dead).
    kill_to_restart_s: f64,
}

/// Three nodes on one Redis run the training twice at once; the node running one of them is
/// killed (`kill -9`) at 70%. `tasks` adds lines to each node's `[tasks]`.
fn kill_at_70(tasks: &str) -> Killed {
    let redis = RedisServer::start();
    let dir = temp_dir("resume-cluster");
    let prefix = format!("resume{}", common::unique());
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let seeds: Vec<u16> = (0..i).map(|p| ports[p].0).collect();
            let place = Place {
                name,
                cluster: ports[i].0,
                http: ports[i].1,
                seeds: &seeds,
            };
            let config = config(&place, &redis.url, &prefix, 5.0) + tasks;
            Node::start(&dir, name, ports[i].1, &config)
        })
        .collect();
    poll(Duration::from_secs(30), "the cluster to be whole", || {
        let seen = nodes[0].get("/cluster/nodes");
        let alive = seen["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["alive"] == true)
            .count();
        (alive == 3).then_some(())
    });

    // The same training twice, at once on two nodes: one runs through, one is killed.
    let whole = nodes[0].submit();
    let killed = nodes[0].submit();
    let (at_kill, victim) = poll(Duration::from_secs(120), "the training at 70%", || {
        nodes[0]
            .running(&killed)
            .filter(|(step, _)| *step >= EPOCHS * 7 / 10)
    });
    let victim = nodes.iter().position(|n| n.name == victim).unwrap();
    let killed_at = std::time::Instant::now();
    let killed_at_s = unix_now_s();
    nodes[victim].child.kill().unwrap();
    let _ = nodes[victim].child.wait();
    let survivor = &nodes[(victim + 1) % 3];
    let record = survivor.wait_success(&killed, Duration::from_secs(180));
    let kill_to_end_s = killed_at.elapsed().as_secs_f64();
    survivor.wait_success(&whole, Duration::from_secs(180));
    let restarted_at_s = record["timings"]["started_at"].as_f64().unwrap();
    Killed {
        kill_to_restart_s: restarted_at_s - killed_at_s,
        second_steps: progress_of_attempt(survivor, &killed, 2),
        outcome: survivor.outcome(&killed),
        whole: survivor.outcome(&whole),
        record,
        at_kill,
        kill_to_end_s,
    }
}

#[test]
fn a_training_whose_node_is_killed_resumes_from_its_checkpoint_to_the_same_result() {
    let Killed {
        record,
        outcome,
        whole,
        at_kill,
        second_steps,
        kill_to_end_s,
        kill_to_restart_s,
    } = kill_at_70("");
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(record["attempts"][0]["resumed_from"], 0, "{record}");
    let resumed_from = record["resumed_from"].as_u64().unwrap();
    assert!(
        resumed_from > 0 && resumed_from <= at_kill,
        "resumed from step {resumed_from}, killed at {at_kill}: {record}"
    );
    assert!(
        second_steps.iter().all(|&s| s > resumed_from),
        "the resumed attempt ran only the epochs after step {resumed_from}: {second_steps:?}"
    );
    assert_eq!(
        outcome, whole,
        "the resumed training ends as the uninterrupted one, value for value"
    );
    // A figure for BENCHMARKS.md, not a check.
    eprintln!(
        "FIGURE resume: killed at epoch {at_kill} of {EPOCHS}, resumed from {resumed_from}; \
         restarted {kill_to_restart_s:.1} s and finished {kill_to_end_s:.1} s after the kill"
    );
}

/// With checkpoints off (`checkpoint_max_bytes = 0`) the next attempt starts from scratch,
/// to the same result.
#[test]
fn without_checkpoints_a_killed_training_starts_again_from_scratch() {
    let Killed {
        record,
        outcome,
        whole,
        second_steps,
        kill_to_end_s,
        kill_to_restart_s,
        ..
    } = kill_at_70("checkpoint_max_bytes = 0\n");
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(record["resumed_from"], 0, "{record}");
    assert!(
        second_steps.first().is_some_and(|&s| s < EPOCHS / 2),
        "the second attempt started over: {second_steps:?}"
    );
    assert_eq!(outcome, whole);
    eprintln!(
        "FIGURE no resume: restarted {kill_to_restart_s:.1} s and finished {kill_to_end_s:.1} s \
         after the kill at 70%"
    );
}

#[test]
fn a_training_stopped_gracefully_resumes_from_the_checkpoint_taken_at_the_stop() {
    let dir = temp_dir("resume-stop");
    let store = format!("embedded:{}", dir.join("store.redb").display());
    let (cluster, http) = (free_port(), free_port());
    let place = Place {
        name: "solo",
        cluster,
        http,
        seeds: &[],
    };
    // A short grace: the training must still run when the node gives it back.
    let config = config(&place, &store, "resume", 1.0);
    let mut node = Node::start(&dir, "solo", http, &config);
    let whole = node.submit();
    let whole_outcome = {
        node.wait_success(&whole, Duration::from_secs(120));
        node.outcome(&whole)
    };
    let stopped = node.submit();
    let (at_stop, _) = poll(Duration::from_secs(120), "the training at 40%", || {
        node.running(&stopped)
            .filter(|(step, _)| *step >= EPOCHS * 4 / 10)
    });
    node.terminate();

    let mut node = Node::start(&dir, "solo", http, &config);
    let record = node.wait_success(&stopped, Duration::from_secs(120));
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(
        record["attempts"][0]["error"]["code"], "node_stopped",
        "{record}"
    );
    let resumed_from = record["resumed_from"].as_u64().unwrap();
    assert!(
        resumed_from >= at_stop,
        "the checkpoint of the stop (step {resumed_from}) is at or after where it stopped \
         ({at_stop}): {record}"
    );
    assert_eq!(node.outcome(&stopped), whole_outcome);
    panel_shows_resumed(&node.url, &stopped, resumed_from);
    node.terminate();
}

/// The web panel, in headless Chromium (`tests/browser/resume.mjs`), shows that task `id`
/// resumed from `step`.
fn panel_shows_resumed(url: &str, id: &str, step: u64) {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && browser_tests.join("node_modules/playwright-core").exists(),
        "the panel check needs /usr/bin/chromium and tests/browser/node_modules: run \
         scripts/test, which installs them"
    );
    let output = std::process::Command::new("node")
        .arg(browser_tests.join("resume.mjs"))
        .args([url, id, &step.to_string()])
        .output()
        .expect("node runs");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the panel does not show the resumed attempt"
    );
}

/// A figure for BENCHMARKS.md, not a check: samples/s of the default MLP (the defaults of
/// `TrainSpec`: [64, 32, 16], 100 epochs on friedman1) without checkpoints, with one every
/// 30 s (the default) and with one at every epoch, and the size of one.
#[test]
fn the_cost_of_checkpoints_on_the_default_mlp() {
    use trainyard::training::{
        self, CancelToken, Checkpoint, Checkpointing, Dataset, DeviceSpec, SaveNow, TrainSpec,
    };
    let spec = TrainSpec::default();
    let data = Dataset::builtin(&spec.dataset, spec.seed).unwrap();
    let run = |every: Option<Duration>| {
        let (mut saved, mut bytes) = (0, 0);
        let mut sink = |c: Checkpoint| (saved, bytes) = (saved + 1, c.bytes.len());
        let checkpointing = every.map(|every| Checkpointing {
            from: None,
            every,
            save_now: SaveNow::new(),
            sink: &mut sink,
        });
        let outcome = training::train_resumable(
            &spec,
            &data,
            &DeviceSpec::Cpu,
            &mut |_| {},
            &CancelToken::new(),
            checkpointing,
        )
        .unwrap();
        (outcome.metrics().samples_per_s, saved, bytes)
    };
    for (name, every) in [
        ("none", None),
        ("every 30 s", Some(Duration::from_secs(30))),
        ("every epoch", Some(Duration::ZERO)),
    ] {
        let (samples_per_s, saved, bytes) = run(every);
        eprintln!(
            "FIGURE checkpoints {name}: {samples_per_s:.0} samples/s, {saved} saved, \
             {bytes} bytes each"
        );
    }
}

/// A checkpoint over `tasks.checkpoint_max_bytes` is not kept (and counted); under it, each
/// is written, and the task's end drops the last.
#[test]
fn checkpoints_over_the_bound_are_not_kept_and_the_end_drops_the_last() {
    let count = |node: &common::Node, outcome: &str| {
        let text = node.metrics_text();
        trainyard_testkit::metrics::sum(&text, "trainyard_checkpoints_total", "outcome", outcome)
    };
    let small = json!({"epochs": 30, "hidden_sizes": [16], "seed": 3});
    for (max_bytes, kept) in [("100", false), ("1000000", true)] {
        let node = common::Node::up(
            &common::TestStore::embedded(),
            1,
            &[
                ("TRAINYARD_TASKS__CHECKPOINT_EVERY_S", "0"),
                ("TRAINYARD_TASKS__CHECKPOINT_MAX_BYTES", max_bytes),
            ],
        );
        let id = node.submit("mlp", small.clone());
        node.wait_for(&id, "SUCCESS", Duration::from_secs(60));
        let (saved, too_large) = (count(&node, "saved"), count(&node, "too_large"));
        if kept {
            assert!(
                saved > 0.0 && too_large == 0.0,
                "saved {saved}, too large {too_large}"
            );
            assert!(node.store_calls("drop_checkpoint") >= 1, "the end drops it");
        } else {
            assert!(
                saved == 0.0 && too_large > 0.0,
                "saved {saved}, too large {too_large}"
            );
            assert_eq!(
                node.store_calls("put_checkpoint"),
                0,
                "none reaches the store"
            );
        }
    }
}
