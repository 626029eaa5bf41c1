//! Redis dies: a primary, a replica and three sentinels on loopback, a node that finds its
//! store through the sentinels (`redis+sentinel://`) and acknowledges a submission only once a
//! replica has it (`store.min_replicas_ack = 1`). The primary is killed (`kill -9`) under a
//! steady stream of submissions; every task that got a 202 must end exactly once, with
//! SUCCESS, and the node must say it is not ready while the outage lasts and recover by itself.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SERVICE: &str = "mymaster";

/// `redis-cli -p PORT ARGS…`, its output lines.
fn redis_cli(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs (it comes with redis-server)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A Redis Sentinel (`redis-server --sentinel`) watching `primary`, stopped on drop.
struct Sentinel {
    child: Child,
    port: u16,
}

impl Sentinel {
    fn start(primary: u16) -> Sentinel {
        let dir = temp_dir("sentinel");
        let port = free_port();
        // Sentinel rewrites its file (it records what it learns), so each has its own.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 2000\n\
                 sentinel failover-timeout {SERVICE} 4000\n\
                 sentinel parallel-syncs {SERVICE} 1\nlogfile {dir}/sentinel.log\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs in sentinel mode");
        poll_child(
            &mut child,
            Duration::from_secs(30),
            &format!("the sentinel on port {port} to listen"),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
        );
        Sentinel { child, port }
    }

    /// The port of the primary this sentinel names.
    fn primary(&self) -> Option<u16> {
        redis_cli(self.port, &["SENTINEL", "get-master-addr-by-name", SERVICE])
            .get(1)?
            .parse()
            .ok()
    }

    /// How many of `what` (`replicas`, `sentinels`) this sentinel knows besides itself.
    fn knows(&self, what: &str) -> usize {
        redis_cli(self.port, &["SENTINEL", what, SERVICE])
            .iter()
            .filter(|l| *l == "name")
            .count()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tiny_task() -> Value {
    json!({"epochs": 1, "hidden_sizes": [4]})
}

/// What a stream of submissions got: the ids of the 202s, and the count of each other answer.
#[derive(Default)]
struct Submissions {
    accepted: Vec<String>,
    refused: std::collections::BTreeMap<String, usize>,
}

#[test]
fn a_killed_primary_loses_no_accepted_task_and_the_node_recovers_by_itself() {
    let logs = temp_dir("failover-logs");
    let log = |name: &str| logs.join(name).to_str().unwrap().to_string();
    let primary = Arc::new(RedisServer::on(
        "127.0.0.1",
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--logfile",
            &log("primary.log"),
        ],
    ));
    let replica = RedisServer::on(
        "127.0.0.1",
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--logfile",
            &log("replica.log"),
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
        ],
    );
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port)).collect();
    // Failover needs the sentinels to know the replica and each other (they learn both from
    // the primary, every couple of seconds).
    poll(
        Duration::from_secs(60),
        "the sentinels to know each other and the replica",
        || {
            sentinels
                .iter()
                .all(|s| s.knows("replicas") == 1 && s.knows("sentinels") == 2)
                .then_some(())
        },
    );

    let addresses: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!("redis+sentinel://{}/{SERVICE}/0", addresses.join(","));
    let store = TestStore {
        data: temp_dir("node"),
        redis: Some(primary.clone()),
        prefix: format!("failover{}", unique()),
    };
    let node = Node::up(
        &store,
        2,
        &[
            ("TRAINYARD_STORE__URL", url.as_str()),
            ("TRAINYARD_STORE__MIN_REPLICAS_ACK", "1"),
            ("TRAINYARD_TASKS__LEASE_S", "10"),
        ],
    );
    let (status, ready) = node.get("/readyz");
    assert_eq!(status, 200, "{ready}");

    // A steady stream of submissions, and a watch on readiness, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let submissions = Arc::new(Mutex::new(Submissions::default()));
    let submitter = std::thread::spawn({
        let (stop, submissions, url) = (stop.clone(), submissions.clone(), node.url.clone());
        move || {
            let agent = http_agent(Duration::from_secs(30));
            while !stop.load(Ordering::Relaxed) {
                let answer = read_json(
                    agent
                        .post(format!("{url}/train/mlp/async"))
                        .send_json(tiny_task()),
                );
                let mut s = submissions.lock().unwrap();
                match answer {
                    Some((202, body)) => s.accepted.push(body["task_id"].as_str().unwrap().into()),
                    Some((status, body)) => {
                        *s.refused
                            .entry(format!("{status} {}", body["error"]["code"]))
                            .or_default() += 1
                    }
                    None => *s.refused.entry("no answer".into()).or_default() += 1,
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let readiness = Arc::new(Mutex::new(Vec::<(u16, Value)>::new()));
    let watcher = std::thread::spawn({
        let (stop, readiness, url) = (stop.clone(), readiness.clone(), node.url.clone());
        move || {
            let agent = http_agent(Duration::from_secs(30));
            while !stop.load(Ordering::Relaxed) {
                if let Some(answer) = read_json(agent.get(format!("{url}/readyz")).call()) {
                    readiness.lock().unwrap().push(answer);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let accepted = || submissions.lock().unwrap().accepted.len();

    poll(
        Duration::from_secs(60),
        "30 tasks accepted before the kill",
        || (accepted() >= 30).then_some(()),
    );
    let killed = Instant::now();
    primary.kill();
    let before_kill = accepted();
    poll(
        Duration::from_secs(60),
        "the sentinels to promote the replica",
        || {
            sentinels
                .iter()
                .all(|s| s.primary() == Some(replica.port))
                .then_some(())
        },
    );
    let promoted = killed.elapsed();
    // The operator brings the old primary back (with its AOF, as config/redis.conf keeps
    // one); the sentinels make it a replica of the new one, and submissions (which need a
    // replica) are accepted again. Should the sentinels fail back to it on a busy machine,
    // it holds every acknowledged task too: none was acknowledged without it.
    primary.start_again();
    let servers = [primary.port, replica.port];
    let current = || {
        let named = sentinels[0].primary()?;
        let other = servers.into_iter().find(|p| *p != named)?;
        let role = redis_cli(other, &["ROLE"]);
        (role.first().is_some_and(|r| r == "slave")).then_some(named)
    };
    poll(
        Duration::from_secs(60),
        "the old primary to rejoin as a replica",
        current,
    );
    let rejoined = accepted();
    poll(
        Duration::from_secs(60),
        "30 tasks accepted after the failover",
        || (accepted() >= rejoined + 30).then_some(()),
    );
    let recovered = killed.elapsed();
    poll(
        Duration::from_secs(30),
        "the node to be ready again",
        || (node.get("/readyz").0 == 200).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    submitter.join().unwrap();
    watcher.join().unwrap();

    let submissions = submissions.lock().unwrap();
    let now_primary = poll(Duration::from_secs(30), "one primary named", current);
    for id in &submissions.accepted {
        node.wait_for(id, "SUCCESS", Duration::from_secs(120));
    }
    // Exactly once: each task's own events, on the new primary, hold one end (kept as the
    // event's id alone; every other entry is `ID EVENT`).
    for id in &submissions.accepted {
        let key = format!("{}:events:{id}", store.prefix);
        let entries = redis_cli(now_primary, &["LRANGE", &key, "0", "-1"]);
        let is_event_id = |entry: &str| {
            entry
                .split_once('-')
                .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok())
        };
        let ends = entries.iter().filter(|entry| is_event_id(entry)).count();
        assert_eq!(ends, 1, "task {id} ended {ends} times: {entries:?}");
    }
    let readiness = readiness.lock().unwrap();
    let outage: Vec<&Value> = readiness
        .iter()
        .filter(|(status, _)| *status == 503)
        .map(|(_, body)| body)
        .collect();
    assert!(
        outage.iter().any(|r| r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|reason| reason.as_str().unwrap().starts_with("store unreachable"))),
        "readyz never reported the outage: {:?}",
        readiness.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert_eq!(readiness.last().map(|(s, _)| *s), Some(200));
    println!(
        "{} tasks accepted ({before_kill} before the kill), all SUCCESS once; refused: {:?}; \
         promoted after {:.1} s, accepting again {:.1} s after the kill; {} of {} readiness \
         checks said not ready",
        submissions.accepted.len(),
        submissions.refused,
        promoted.as_secs_f64(),
        recovered.as_secs_f64(),
        outage.len(),
        readiness.len()
    );
}
