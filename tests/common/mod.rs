//! Test helpers: a real `trainyard` node process on a free loopback port, killed on drop, and
//! a small JSON HTTP client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A loopback port free now, outside the kernel's ephemeral range (see `bench::free_port`).
pub fn free_port() -> u16 {
    trainyard::bench::free_port().unwrap()
}

/// A number no other call in this process returns (for names that must not collide).
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh, empty folder under the system temp dir, `trainyard-{tag}-{pid}-{n}`. Folders of
/// test processes that are gone are removed on the first call, so runs do not pile up.
pub fn temp_dir(tag: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_dead_processes_dirs);
    let dir = std::env::temp_dir().join(format!(
        "trainyard-{tag}-{}-{}",
        std::process::id(),
        unique()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the `temp_dir` folders (and the bench's) of processes no longer running.
fn remove_dead_processes_dirs() {
    // Which processes run is read from /proc: without it, nothing is removed.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("trainyard-")) else {
            continue;
        };
        // `{tag}-{pid}-{n}` or the bench's `bench-{pid}`: the pid is the first number.
        let pid = rest
            .split('-')
            .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An HTTP client that returns error statuses as answers and gives up after `timeout`.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// An answer's status and JSON body (a body that is not JSON as a string); None when the
/// request failed.
pub fn read_json(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Option<(u16, Value)> {
    let response = response.ok()?;
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Ok`, failing after `timeout` with the last `Err` it gave
/// (what was seen instead).
pub fn poll_seen<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, as `poll` does, but fails at once (instead of at the
/// deadline) when `child`, the process that should answer, has exited; one that does not
/// answer in time is killed before the test fails.
pub fn poll_child<T>(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("waiting for {what}: the process exited ({status})");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out waiting for {what} ({timeout:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a free loopback port, stopped on drop. `start` keeps nothing on disk;
/// `durable` keeps an append-only file (as `config/redis.conf` does) and can be restarted.
pub struct RedisServer {
    child: std::sync::Mutex<Child>,
    args: Vec<String>,
    host: String,
    pub port: u16,
    pub url: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launch(&["--save", "", "--appendonly", "no"])
    }

    /// With AOF on (`appendfsync everysec`), in its folder.
    pub fn durable() -> RedisServer {
        Self::launch(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ])
    }

    fn launch(extra: &[&str]) -> RedisServer {
        Self::on("127.0.0.1", extra)
    }

    /// Listening on `host` (an address of the test's own), with `extra` arguments.
    pub fn on(host: &str, extra: &[&str]) -> RedisServer {
        let port = free_port();
        // Its own folder: a replica writes the data it syncs to `dump.rdb` there (and would
        // load a stale one left in the working directory).
        let dir = temp_dir("redis");
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            host.into(),
            "--dir".into(),
            dir.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        RedisServer {
            child: std::sync::Mutex::new(Self::spawn(&args, host, port)),
            args,
            host: host.to_string(),
            port,
            url: format!("redis://{host}:{port}/0"),
        }
    }

    fn spawn(args: &[String], host: &str, port: u16) -> Child {
        let mut child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        poll_child(
            &mut child,
            Duration::from_secs(60),
            &format!("redis-server to listen on port {port}"),
            || std::net::TcpStream::connect((host, port)).ok().map(|_| ()),
        );
        child
    }

    /// Kills the server and waits until it is gone (the store is unreachable from then on).
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a killed server again, on the same port with the same arguments.
    pub fn start_again(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.wait();
        *child = Self::spawn(&self.args, &self.host, self.port);
    }

    /// Stops the server the way an operator would (SIGTERM: it writes its AOF and exits),
    /// waits `down`, and starts it again on the same port and files.
    pub fn restart(&self, down: Duration) {
        let mut child = self.child.lock().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        std::thread::sleep(down);
        *child = Self::spawn(&self.args, &self.host, self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

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
        poll_child(
            &mut node.child,
            Duration::from_secs(60),
            &format!("the node at {url} to answer"),
            || {
                let (status, _) = read_json(
                    http_agent(Duration::from_secs(10))
                        .get(format!("{url}/cluster/health"))
                        .call(),
                )?;
                (status == 200).then_some(())
            },
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
        let text = self.metrics_text();
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} on /metrics"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The store calls of `op` the node made so far, from its `/metrics`.
    pub fn store_calls(&self, op: &str) -> u64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with("trainyard_store_operation_duration_seconds_count{"))
            .filter(|l| l.contains(&format!("op=\"{op}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
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
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
    command
        .arg("node")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
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
    // docker-compose is Python with PyYAML: the same YAML reader turns its answer into JSON.
    let mut python = Command::new("python3")
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
