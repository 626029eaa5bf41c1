//! Test helpers: a real `trainyard` node process on a free loopback port, killed on drop, a
//! small JSON HTTP client and an event-stream reader. The harness they share with the
//! benchmark (ports, scratch folders, polling, `redis-server`, `trainyard node` processes,
//! `/proc` and `/metrics` readers) is the test kit, `crates/testkit`, re-exported here.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use trainyard_testkit::{
    RedisServer, free_port, http_agent, poll, poll_child, poll_seen, read_json, temp_dir, unique,
};

/// Where a test node keeps its state: the embedded store in a fresh folder, or a fresh
/// `redis-server`. Cloning shares it, so a second node can start on the first one's state.
#[derive(Clone)]
pub struct TestStore {
    pub data: PathBuf,
    pub redis: Option<Arc<RedisServer>>,
    /// Redis key prefix of this store.
    pub prefix: String,
}

impl TestStore {
    pub fn embedded() -> TestStore {
        TestStore {
            data: temp_dir("node"),
            redis: None,
            prefix: String::new(),
        }
    }

    pub fn redis() -> TestStore {
        TestStore {
            data: temp_dir("node"),
            redis: Some(Arc::new(RedisServer::start())),
            prefix: format!("test{}", unique()),
        }
    }
}

pub struct Node {
    child: Child,
    pub url: String,
    _store: TestStore,
}

impl Node {
    /// `trainyard up` with `trainers` CPU trainers on `store`, with extra `TRAINYARD_*` settings.
    pub fn up(store: &TestStore, trainers: usize, env: &[(&str, &str)]) -> Node {
        Self::start(store, trainers, env, Stdio::inherit())
    }

    /// As `up`, with the node's log (stderr) written to `log`.
    pub fn up_logged(
        store: &TestStore,
        trainers: usize,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Node {
        let file = std::fs::File::create(log).expect("the log file can be created");
        Self::start(store, trainers, env, Stdio::from(file))
    }

    fn start(store: &TestStore, trainers: usize, env: &[(&str, &str)], stderr: Stdio) -> Node {
        let data = store.data.clone();
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
        command
            .args([
                "up",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--trainers",
                &trainers.to_string(),
            ])
            .arg("--data")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(redis) = &store.redis {
            command
                .env("TRAINYARD_STORE__URL", &redis.url)
                .env("TRAINYARD_STORE__PREFIX", &store.prefix)
                .env("TRAINYARD_NODE__COOKIE", "test-cookie")
                .env(
                    "TRAINYARD_NODE__LISTEN",
                    format!("\"127.0.0.1:{}\"", free_port()),
                );
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("trainyard starts");
        let mut node = Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _store: store.clone(),
        };
        let url = node.url.clone();
        trainyard_testkit::wait_ready(
            &mut node.child,
            &url,
            Duration::from_secs(60),
            &format!("the node at {url} to answer"),
        );
        node
    }

    fn agent() -> ureq::Agent {
        http_agent(Duration::from_secs(120))
    }

    fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        read_json(Self::agent().get(format!("{}{path}", self.url)).call())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed"))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        read_json(
            Self::agent()
                .post(format!("{}{path}", self.url))
                .send_json(body),
        )
        .unwrap_or_else(|| panic!("POST {path} failed"))
    }

    /// A request with an `Authorization` header of `auth` (or none): method, path, JSON body.
    pub fn with_auth(&self, method: &str, path: &str, auth: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let agent = Self::agent();
        let response = if method == "GET" {
            let mut request = agent.get(url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.call()
        } else {
            let mut request = agent.post(url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.send_json(serde_json::json!({"epochs": 1}))
        };
        read_json(response).unwrap_or_else(|| panic!("{method} {path} failed"))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        read_json(Self::agent().delete(format!("{}{path}", self.url)).call())
            .unwrap_or_else(|| panic!("DELETE {path} failed"))
    }

    /// POST a JSON body with extra headers; the answer's status, headers and JSON.
    pub fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Vec<(String, String)>, Value) {
        let mut request = Self::agent().post(format!("{}{path}", self.url));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response.into_body().read_to_string().unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST with an explicit content type (or none) and raw bytes.
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
        self.request("POST", path, &[], Some((content_type, body)))
    }

    /// Any request: method, path, headers, and a body with its content type (or none).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(Option<&str>, &[u8])>,
    ) -> (u16, Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (content_type, bytes) = body.unwrap_or((None, &[]));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let request = request.body(bytes.to_vec()).unwrap();
        read_json(Self::agent().run(request)).unwrap_or_else(|| panic!("{method} {path} failed"))
    }

    /// The node's `/metrics`, as Prometheus text.
    pub fn metrics_text(&self) -> String {
        let response = ureq::get(format!("{}/metrics", self.url)).call().unwrap();
        response.into_body().read_to_string().unwrap()
    }

    /// The value of the unlabelled metric `name` on `/metrics`.
    pub fn metric_value(&self, name: &str) -> f64 {
        trainyard_testkit::metrics::value(&self.metrics_text(), name)
            .unwrap_or_else(|| panic!("no {name} on /metrics"))
    }

    /// The store calls of `op` the node made so far, from its `/metrics`.
    pub fn store_calls(&self, op: &str) -> u64 {
        let text = self.metrics_text();
        let name = "trainyard_store_operation_duration_seconds_count";
        trainyard_testkit::metrics::sum(&text, name, "op", op) as u64
    }

    /// Submits a training and returns its task id.
    pub fn submit(&self, model: &str, body: Value) -> String {
        let (status, answer) = self.post(&format!("/train/{model}/async"), body);
        assert_eq!(status, 202, "{answer}");
        answer["task_id"].as_str().unwrap().to_string()
    }

    pub fn state(&self, id: &str) -> String {
        let (status, answer) = self.get(&format!("/task/{id}/status"));
        assert_eq!(status, 200, "{answer}");
        answer["state"].as_str().unwrap().to_string()
    }

    /// Waits until task `id` is in `state`.
    pub fn wait_for(&self, id: &str, state: &str, timeout: Duration) {
        poll(timeout, &format!("task {id} to be {state}"), || {
            let now = self.state(id);
            if now != state && ["SUCCESS", "FAILURE", "REVOKED"].contains(&now.as_str()) {
                panic!(
                    "task {id} ended as {now}, expected {state}: {}",
                    self.get(&format!("/task/{id}/result")).1
                );
            }
            (now == state).then_some(())
        })
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();

        poll(Duration::from_secs(60), "the node to exit", || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `trainyard node --config CONFIG`, logging at info to `log`: the command, to spawn.
pub fn node_command(config: &Path, log: &Path) -> Command {
    trainyard_testkit::node_command(Path::new(env!("CARGO_BIN_EXE_trainyard")), config, log)
}

/// One Server-Sent Event as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl SseMessage {
    /// The id as an ordered pair (`a-b`).
    pub fn order(&self) -> (u64, u64) {
        let id = self.id.as_deref().expect("event has an id");
        let (a, b) = id.split_once('-').expect("id is a-b");
        (a.parse().unwrap(), b.parse().unwrap())
    }
}

/// An event stream whose response has arrived (status and headers read): the server has
/// subscribed to what it streams, so every event logged from now on is in it.
pub struct SseStream {
    reader: std::io::BufReader<ureq::BodyReader<'static>>,
}

/// Opens the event stream at `url`, sent `Last-Event-ID: last_id`, and returns once the
/// response has arrived. Fails on a status other than 200.
pub fn open_sse(url: &str, last_id: Option<&str>) -> SseStream {
    let mut request = http_agent(Duration::from_secs(120)).get(url);
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    let response = request.call().expect("the stream opens");
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    SseStream {
        reader: std::io::BufReader::new(response.into_body().into_reader()),
    }
}

impl SseStream {
    /// Reads events until the server ends the stream (then `true`) or `enough` says so.
    pub fn read(self, mut enough: impl FnMut(&[SseMessage]) -> bool) -> (Vec<SseMessage>, bool) {
        use std::io::BufRead;
        let mut out = Vec::new();
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        for line in self.reader.lines() {
            let line = line.expect("the stream reads");
            if line.is_empty() {
                if !data.is_empty() {
                    out.push(SseMessage {
                        id: id.take(),
                        event: std::mem::replace(&mut event, "message".into()),
                        data: serde_json::from_str(&data).expect("data is JSON"),
                    });
                    data.clear();
                    if enough(&out) {
                        return (out, false);
                    }
                }
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        (out, true)
    }
}

/// Reads the event stream at `url`, sent `Last-Event-ID: last_id`, until the server ends it
/// (then `true`) or `enough` says so. Fails on a status other than 200.
pub fn read_sse(
    url: &str,
    last_id: Option<&str>,
    enough: impl FnMut(&[SseMessage]) -> bool,
) -> (Vec<SseMessage>, bool) {
    open_sse(url, last_id).read(enough)
}

/// `docker-compose config` (anchors merged, variables filled in), as JSON.
pub fn compose_config() -> Value {
    let output = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TRAINYARD_COOKIE", "compose-test-cookie-0123456789")
        .env("TRAINYARD_TOKEN", "compose-test-token-0123456789")
        .output()
        .expect("docker-compose runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // docker-compose is Python with PyYAML: the same YAML reader (Debian's Python, which
    // docker-compose's package brought PyYAML to) turns its answer into JSON.
    let debian_python = std::path::Path::new("/usr/bin/python3");
    let python = if debian_python.exists() {
        debian_python
    } else {
        std::path::Path::new("python3")
    };
    let mut python = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(&output.stdout)
        .unwrap();
    let json = python.wait_with_output().unwrap();
    assert!(json.status.success());
    serde_json::from_slice(&json.stdout).expect("the compose config is JSON")
}
