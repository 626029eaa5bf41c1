//! A node's life as a load balancer or an orchestrator sees it: `/healthz` (liveness) never asks
//! the store, `/readyz` (readiness) lists why a node cannot take work, a flood of health checks
//! costs the store at most one round of calls a second, and SIGTERM stops a node within its
//! grace even with event streams open. Real node, real `redis-server`, real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Node, TestStore, poll, read_sse};
use serde_json::json;

#[test]
fn a_flood_of_health_checks_asks_the_store_at_most_once_a_second() {
    let store = TestStore::redis();
    let node = Node::up(&store, 1, &[]);
    // The pings counted are those between the two reads of /metrics: the time measured
    // covers both reads.
    let started = Instant::now();
    let before = node.store_calls("ping");
    let paths = ["/cluster/health", "/celery/health", "/readyz", "/healthz"];
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let url = node.url.clone();
            std::thread::spawn(move || {
                let agent = common::http_agent(Duration::from_secs(30));
                let mut ok = 0;
                for i in 0..250 {
                    let path = paths[(t + i) % paths.len()];
                    let (status, _) =
                        common::read_json(agent.get(format!("{url}{path}")).call()).unwrap();
                    ok += usize::from(status == 200);
                }
                ok
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let pings = node.store_calls("ping") - before;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(ok, 2000, "every health check answers 200");
    // One computation per second at most (plus the one under way when the flood began).
    assert!(
        pings as f64 <= seconds.ceil() + 1.0,
        "{pings} store pings for 2,000 health checks in {seconds:.2} s"
    );
    println!("2,000 health checks in {seconds:.2} s asked the store {pings} times");
}

#[test]
fn liveness_ignores_the_store_and_readiness_says_why_not() {
    let store = TestStore::redis();
    let node = Node::up(&store, 1, &[]);
    let (status, live) = node.get("/healthz");
    assert_eq!(
        (status, live["status"].as_str()),
        (200, Some("ok")),
        "{live}"
    );
    let (status, ready) = node.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["reasons"], json!([]));
    assert_eq!(ready["checks"]["local_trainers"], 1);

    // Drained by an operator: not ready (it takes no work), still live.
    let name = ready["node"].as_str().unwrap().to_string();
    let (status, answer) = node.post(&format!("/cluster/nodes/{name}/drain"), json!(null));
    assert_eq!(status, 202, "{answer}");
    let not_ready = poll(Duration::from_secs(60), "readyz to say draining", || {
        let (status, ready) = node.get("/readyz");
        (status == 503).then_some(ready)
    });
    assert_eq!(not_ready["reasons"], json!(["the node is draining"]));
    let (status, answer) = node.post(&format!("/cluster/nodes/{name}/resume"), json!(null));
    assert_eq!(status, 202, "{answer}");
    poll(Duration::from_secs(60), "readyz to be ready again", || {
        (node.get("/readyz").0 == 200).then_some(())
    });

    // Redis gone: not ready, with the reason; liveness stays 200, so an orchestrator does not
    // restart every node during a store outage.
    store.redis.as_ref().unwrap().kill();
    let not_ready = poll(Duration::from_secs(60), "readyz to see the outage", || {
        let (status, ready) = node.get("/readyz");
        (status == 503).then_some(ready)
    });
    let reasons = not_ready["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("store unreachable")),
        "{not_ready}"
    );
    let (status, live) = node.get("/healthz");
    assert_eq!(status, 200, "{live}");
}

/// SIGTERM while clients hold event streams open (the panel keeps `/events` open, `submit
/// --follow` a task's stream) and wait on a sync training: the streams end, the wait answers,
/// and the node stops within its shutdown grace. It hung before, its HTTP server waiting for
/// responses that never end.
#[test]
fn sigterm_ends_open_event_streams_and_the_node_stops_within_its_grace() {
    let store = TestStore::embedded();
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__SHUTDOWN_GRACE_S", "2")]);
    let running = node.submit("mlp", json!({"epochs": 100000}));
    node.wait_for(&running, "PROGRESS", Duration::from_secs(60));
    // Queued behind the running one: its stream has nothing to say until the stop.
    let queued = node.submit("gbdt", json!({}));
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let streams: Vec<_> = [
        format!("{}/task/{queued}/events", node.url),
        format!("{}/task/{running}/events", node.url),
        format!("{}/events", node.url),
    ]
    .into_iter()
    .cycle()
    .take(9)
    .map(|url| {
        let opened = opened_tx.clone();
        std::thread::spawn(move || {
            read_sse(&url, None, |events| {
                if events.len() == 1 {
                    let _ = opened.send(());
                }
                false
            })
            .1
        })
    })
    .collect();
    let sync = {
        let url = format!("{}/train/linear?wait_s=600", node.url);
        std::thread::spawn(move || {
            common::read_json(
                common::http_agent(Duration::from_secs(120))
                    .post(url)
                    .send_json(json!({"epochs": 1})),
            )
        })
    };
    // Every stream has sent an event, and the sync training is stored, before the stop.
    for _ in 0..9 {
        opened
            .recv_timeout(Duration::from_secs(60))
            .expect("every stream sends an event");
    }
    poll(
        Duration::from_secs(60),
        "the sync training to be stored",
        || {
            let (_, tasks) = node.get("/tasks?model_type=linear");
            (tasks["count"] == 1).then_some(())
        },
    );

    let started = Instant::now();
    let status = node.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(20),
        "the node took {took:?} to stop (grace 2 s)"
    );
    for stream in streams {
        assert!(stream.join().unwrap(), "the server ended the stream");
    }
    let (status, answer) = sync.join().unwrap().expect("the sync wait answers");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("node_stopping")),
        "{answer}"
    );
    assert!(answer["error"]["task_id"].is_string(), "{answer}");
}

/// A sync training (`POST /train/{m}?wait_s=`) waits on its task's events: it reads the task
/// about once a second while it trains, not every 50 ms.
#[test]
fn a_sync_wait_listens_for_the_end_instead_of_polling_the_store() {
    let store = TestStore::redis();
    let node = Node::up(&store, 1, &[]);
    let before = node.store_calls("get");
    let started = Instant::now();
    let (status, answer) = node.post(
        "/train/mlp?wait_s=120",
        json!({"epochs": 60, "hidden_sizes": [64, 64]}),
    );
    let waited = started.elapsed().as_secs_f64();
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("SUCCESS")),
        "{answer}"
    );
    let gets = node.store_calls("get") - before;
    println!("a sync wait of {waited:.2} s read the task {gets} times");
    assert!(
        (gets as f64) <= waited.ceil() + 3.0,
        "{gets} reads of the task in a wait of {waited:.2} s"
    );
}
