//! Bounded resources at the HTTP edge (issue 25): who a client is behind a proxy, event
//! streams per client and per node and their followers, sync waits that listen rather than
//! poll, and the number of schedules.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Node, TestStore, poll_seen};
use serde_json::json;

/// A GET on a raw connection, with extra header lines; returns the open connection and the
/// status, once the response's head has arrived (an event stream's body is left unread).
fn raw_get(node: &Node, path: &str, headers: &[(&str, &str)]) -> (TcpStream, u16) {
    let host = node.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "the connection closed before the response's head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (stream, status)
}

/// The status of `GET path` from the client `X-Forwarded-For` names.
fn status_as(node: &Node, path: &str, forwarded_for: &str) -> u16 {
    raw_get(node, path, &[("X-Forwarded-For", forwarded_for)]).1
}

/// Settings that give each client 3 requests, then (practically) none.
const THREE_REQUESTS: [(&str, &str); 2] = [
    ("TRAINYARD_HTTP__RATE_LIMIT_PER_S", "0.001"),
    ("TRAINYARD_HTTP__RATE_LIMIT_BURST", "3"),
];

/// `X-Forwarded-For` is anyone's to write: from a peer that is not a trusted proxy it is
/// ignored (every request is the peer's); from a trusted proxy, the clients it names are
/// limited each on their own.
#[test]
fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let store = TestStore::embedded();
    let direct = Node::up(&store, 1, &THREE_REQUESTS);
    for _ in 0..3 {
        assert_eq!(status_as(&direct, "/tasks", "203.0.113.1"), 200);
    }
    assert_eq!(status_as(&direct, "/tasks", "203.0.113.1"), 429);
    assert_eq!(
        status_as(&direct, "/tasks", "203.0.113.2"),
        429,
        "another X-Forwarded-For from the same untrusted peer is the same client"
    );
    drop(direct);

    let store = TestStore::embedded();
    let mut env = THREE_REQUESTS.to_vec();
    env.push(("TRAINYARD_HTTP__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]"));
    let proxied = Node::up(&store, 1, &env);
    for _ in 0..3 {
        assert_eq!(status_as(&proxied, "/tasks", "203.0.113.1"), 200);
    }
    assert_eq!(status_as(&proxied, "/tasks", "203.0.113.1"), 429);
    assert_eq!(
        status_as(&proxied, "/tasks", "203.0.113.2"),
        200,
        "a second forwarded client has a limit of its own"
    );
    // A client that writes a header of its own before the proxy's: the right-most address
    // not a trusted proxy is the client, whatever it put on the left.
    assert_eq!(
        status_as(&proxied, "/tasks", "198.51.100.9, 203.0.113.1"),
        429
    );
    // Two clients of one IPv6 /64 are one client.
    for _ in 0..3 {
        assert_eq!(status_as(&proxied, "/tasks", "2001:db8:1:2::1"), 200);
    }
    assert_eq!(status_as(&proxied, "/tasks", "2001:db8:1:2::ffff"), 429);
    assert_eq!(status_as(&proxied, "/tasks", "2001:db8:1:3::1"), 200);
}

/// Event streams count against their client's limit (429 `too_many_streams`) and the node's
/// (503 `too_many_streams_on_node`); a closed one frees its place.
#[test]
fn event_streams_are_capped_per_client_and_per_node() {
    let store = TestStore::embedded();
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
            ("TRAINYARD_HTTP__MAX_STREAMS_PER_CLIENT", "2"),
            ("TRAINYARD_HTTP__MAX_STREAMS", "3"),
        ],
    );
    let a = |node: &Node| raw_get(node, "/events", &[("X-Forwarded-For", "203.0.113.1")]);
    let (first, status) = a(&node);
    assert_eq!(status, 200);
    let (_second, status) = a(&node);
    assert_eq!(status, 200);
    let (mut refused, status) = a(&node);
    assert_eq!(status, 429, "a third stream of one client");
    let mut body = String::new();
    let _ = refused.read_to_string(&mut body);
    assert!(body.contains("too_many_streams"), "{body}");

    let (_third, status) = raw_get(&node, "/events", &[("X-Forwarded-For", "203.0.113.2")]);
    assert_eq!(status, 200);
    let (mut full, status) = raw_get(&node, "/events", &[("X-Forwarded-For", "203.0.113.3")]);
    assert_eq!(status, 503, "a fourth stream on the node");
    let mut body = String::new();
    let _ = full.read_to_string(&mut body);
    assert!(body.contains("too_many_streams_on_node"), "{body}");
    assert_eq!(node.metric_value("trainyard_http_open_streams"), 3.0);

    drop(first);
    poll_seen(
        Duration::from_secs(30),
        "a closed stream to free its place",
        || {
            let (_stream, status) = a(&node);
            if status == 200 {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        },
    );
}

/// 1,000 clients open a task's event stream and leave while the task stays PENDING: each
/// stream's follower ends with its client, and the node's tasks come back to where they were.
#[test]
fn a_thousand_streams_opened_and_left_leave_no_task_behind() {
    let store = TestStore::embedded();
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_HTTP__MAX_STREAMS_PER_CLIENT", "0"),
            ("TRAINYARD_HTTP__MAX_STREAMS", "0"),
            // Clients that leave with the stream unread reset their connections: not news.
            ("RUST_LOG", "error,warp::server=off"),
        ],
    );
    // A CPU-only node never runs a task that asks for a GPU: it stays PENDING.
    let waiting = node.submit("linear", json!({"epochs": 1, "device": "gpu"}));
    let path = format!("/task/{waiting}/events");
    let (warm, status) = raw_get(&node, &path, &[]);
    assert_eq!(status, 200);
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let tasks_before = node.metric_value("trainyard_runtime_tasks");
    let started = Instant::now();
    for _ in 0..10 {
        let open: Vec<TcpStream> = (0..100)
            .map(|_| {
                let (stream, status) = raw_get(&node, &path, &[]);
                assert_eq!(status, 200);
                stream
            })
            .collect();
        for (i, mut stream) in open.into_iter().enumerate() {
            if i % 2 == 0 {
                // Half leave politely: the first event read, then a FIN (nothing unread).
                let mut seen = Vec::new();
                let mut byte = [0u8; 1];
                while !seen.ends_with(b"\n\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    seen.push(byte[0]);
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            // The others just go (a reset, with the event unread).
        }
    }
    println!("1,000 streams opened and left in {:?}", started.elapsed());
    poll_seen(
        Duration::from_secs(60),
        "the followers to end with their clients",
        || {
            let streams = node.metric_value("trainyard_http_open_streams");
            let tasks = node.metric_value("trainyard_runtime_tasks");
            if streams == 0.0 && tasks <= tasks_before + 5.0 {
                Ok(())
            } else {
                Err(format!(
                    "{streams} streams open; {tasks} runtime tasks, {tasks_before} before"
                ))
            }
        },
    );
    println!("back after {:?}", started.elapsed());
}

/// A sync training waits on its task's events: a wait of 4 s for a task that never runs
/// reads the task at its start and at its deadline, not every second (nor every 50 ms), and
/// still answers 504 `timeout` with the task's id.
#[test]
fn a_sync_wait_reads_its_task_at_the_start_and_the_end_only() {
    let store = TestStore::redis();
    let node = Node::up(&store, 1, &[]);
    let before = node.store_calls("get");
    let started = Instant::now();
    let (status, answer) = node.post(
        "/train/linear?wait_s=4",
        json!({"epochs": 1, "device": "gpu"}),
    );
    let waited = started.elapsed().as_secs_f64();
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"]["code"], "timeout", "{answer}");
    assert!(answer["error"]["task_id"].is_string(), "{answer}");
    assert!(waited >= 4.0, "{waited}");
    let gets = node.store_calls("get") - before;
    println!("a sync wait of {waited:.2} s read the task {gets} times");
    assert!(
        gets <= 2,
        "{gets} reads of the task in a wait of {waited:.2} s"
    );
}

/// No more schedules than `[tasks] max_schedules`: past it 409 `too_many_schedules`.
#[test]
fn schedules_past_the_most_are_refused() {
    let store = TestStore::embedded();
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__MAX_SCHEDULES", "1")]);
    let schedule = |name: &str| json!({"name": name, "cron": "0 2 * * *", "model_type": "linear", "paused": true});
    let (status, answer) = node.post("/schedules", schedule("a"));
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = node.post("/schedules", schedule("b"));
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "too_many_schedules", "{answer}");
    assert_eq!(node.delete("/schedules/a").0, 200);
    let (status, answer) = node.post("/schedules", schedule("b"));
    assert_eq!(status, 201, "{answer}");
}
