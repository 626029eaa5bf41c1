//! TLS on every link (issue 25): HTTPS on the API (and the CLI talking to it), mutual TLS
//! between nodes, unauthenticated cluster connections dropped after 5 s (and how many may wait
//! bounded), and `rediss://` to a Redis started with `--tls-port`. Certificates come from test
//! CAs made with rcgen.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    RedisServer, TestStore, free_port, http_agent, poll, poll_child, read_json, temp_dir,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

/// A test certificate authority; it writes its certificate and the ones it signs to `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = Ca {
            issuer,
            dir: temp_dir("tls"),
            name: name.to_string(),
        };
        std::fs::write(ca.cert(), ca.issuer.pem()).unwrap();
        ca
    }

    /// The CA's certificate (PEM).
    fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate for `localhost` and 127.0.0.1, for servers and clients alike, and its key.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// An HTTP client that trusts only `ca` (a PEM file).
fn trusting(ca: &Path) -> ureq::Agent {
    let pem = std::fs::read(ca).unwrap();
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item.unwrap() {
            ureq::tls::PemItem::Certificate(cert) => Some(cert),
            _ => None,
        })
        .collect();
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::from(certs))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A `trainyard up` node (embedded store, one trainer) serving HTTPS with `cert` and `key`.
struct HttpsNode {
    child: Child,
    port: u16,
    agent: ureq::Agent,
}

impl HttpsNode {
    fn up(ca: &Ca) -> HttpsNode {
        let (cert, key) = ca.issue("api");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_trainyard"))
            .args([
                "up",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--trainers",
                "1",
            ])
            .arg("--data")
            .arg(temp_dir("node"))
            .env("TRAINYARD_HTTP__TLS_CERT", &cert)
            .env("TRAINYARD_HTTP__TLS_KEY", &key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("trainyard starts");
        let mut node = HttpsNode {
            child,
            port,
            agent: trusting(&ca.cert()),
        };
        let (agent, url) = (node.agent.clone(), node.url("/cluster/health"));
        poll_child(
            &mut node.child,
            Duration::from_secs(60),
            "the HTTPS node to answer",
            || {
                let (status, _) = read_json(agent.get(&url).call())?;
                (status == 200).then_some(())
            },
        );
        node
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        read_json(self.agent.get(self.url(path)).call()).expect("the node answers")
    }
}

impl Drop for HttpsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_api_answers_https_to_a_client_that_trusts_its_ca_and_refuses_plain_http() {
    let ca = Ca::new("api-ca");
    let mut node = HttpsNode::up(&ca);
    let (status, health) = node.get("/cluster/health");
    assert_eq!(status, 200, "{health}");
    // A request with a body, through the per-client limits (which key on the peer address).
    let (status, submitted) = read_json(
        node.agent
            .post(node.url("/train/linear/async"))
            .send_json(json!({"epochs": 1})),
    )
    .unwrap();
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["task_id"].as_str().unwrap().to_string();
    poll(Duration::from_secs(60), "the task to succeed", || {
        let (_, task) = node.get(&format!("/task/{id}/status"));
        (task["state"] == "SUCCESS").then_some(())
    });

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = http_agent(Duration::from_secs(5))
        .get(format!("http://127.0.0.1:{}/cluster/health", node.port))
        .call();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // A client that does not trust the CA refuses the node.
    let untrusting = trusting(&Ca::new("other-ca").cert())
        .get(node.url("/cluster/health"))
        .call();
    assert!(untrusting.is_err(), "an unknown CA was trusted");

    // The graceful stop still works over TLS.
    let _ = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status();
    let status = poll(Duration::from_secs(60), "the node to exit", || {
        node.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
}

#[test]
fn cli_verbs_talk_https_with_a_ca_file() {
    let ca = Ca::new("cli-ca");
    let node = HttpsNode::up(&ca);
    let server = node.url("");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trainyard"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ca_file = ca.cert();
    let ca_file = ca_file.to_str().unwrap();
    let nodes = cli(&["nodes", "--json", "--server", &server, "--ca-file", ca_file]);
    assert!(
        nodes.status.success(),
        "{}",
        String::from_utf8_lossy(&nodes.stderr)
    );
    let view: Value = serde_json::from_slice(&nodes.stdout).unwrap();
    assert_eq!(view["node"], "node", "{view}");
    let submitted = cli(&[
        "submit",
        "linear",
        "--epochs",
        "1",
        "--server",
        &server,
        "--ca-file",
        ca_file,
    ]);
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    // Without the CA the server is not trusted.
    let refused = cli(&["nodes", "--server", &server]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

/// A `redis-server` that speaks only TLS (`--port 0 --tls-port`), with a certificate of `ca`,
/// and that demands a client certificate of `ca` too.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(ca: &Ca) -> TlsRedis {
        let (cert, key) = ca.issue("redis");
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(temp_dir("redis"))
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(ca.cert())
            .args(["--tls-auth-clients", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        poll_child(
            &mut child,
            Duration::from_secs(60),
            "redis-server to listen for TLS",
            || TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()),
        );
        TlsRedis { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_node_uses_a_redis_that_speaks_only_tls() {
    let ca = Ca::new("redis-ca");
    let redis = TlsRedis::start(&ca);
    let (client_cert, client_key) = ca.issue("redis-client");
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let (ca_file, client_cert, client_key) = (
        ca.cert().display().to_string(),
        client_cert.display().to_string(),
        client_key.display().to_string(),
    );
    let cluster = format!("\"127.0.0.1:{}\"", free_port());
    let node = common::Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_STORE__URL", &url),
            ("TRAINYARD_STORE__TLS_CA", &ca_file),
            ("TRAINYARD_STORE__TLS_CLIENT_CERT", &client_cert),
            ("TRAINYARD_STORE__TLS_CLIENT_KEY", &client_key),
            ("TRAINYARD_NODE__COOKIE", "test-cookie"),
            ("TRAINYARD_NODE__LISTEN", &cluster),
        ],
    );
    let (status, ready) = node.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    let id = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&id, "SUCCESS", Duration::from_secs(60));
    let (_, result) = node.get(&format!("/task/{id}/result"));
    assert_eq!(result["state"], "SUCCESS", "{result}");
}

/// A cluster node started from a config file, its log kept.
struct ClusterNode {
    name: String,
    child: Child,
    http: String,
    cluster_port: u16,
    log: PathBuf,
}

impl ClusterNode {
    /// Node `name` on `redis` (key prefix `prefix`), with mutual TLS from `ca` (it trusts `ca`
    /// and shows a certificate `ca` signed), dialling `seeds` (cluster ports).
    fn start(name: &str, redis: &RedisServer, prefix: &str, ca: &Ca, seeds: &[u16]) -> ClusterNode {
        let (cert, key) = ca.issue(name);
        let (cluster_port, http_port) = (free_port(), free_port());
        let dir = temp_dir("tls-cluster");
        let seeds: Vec<String> = seeds.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let config = format!(
            "[node]\nname = \"{name}\"\nlisten = \"127.0.0.1:{cluster_port}\"\n\
             cookie = \"tls-test-cookie\"\nseeds = [{}]\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [store]\nurl = \"{}\"\nprefix = \"{prefix}\"\n\
             [trainers]\ndevices = [\"cpu\"]\n",
            seeds.join(", "),
            cert.display(),
            key.display(),
            ca.cert().display(),
            redis.url,
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("node.log");
        let child = common::node_command(&path, &log)
            .spawn()
            .expect("trainyard starts");
        let mut node = ClusterNode {
            name: name.to_string(),
            child,
            http: format!("http://127.0.0.1:{http_port}"),
            cluster_port,
            log,
        };
        let url = format!("{}/cluster/health", node.http);
        poll_child(
            &mut node.child,
            Duration::from_secs(60),
            &format!("{name} to answer"),
            || {
                let (status, _) = read_json(http_agent(Duration::from_secs(10)).get(&url).call())?;
                (status == 200).then_some(())
            },
        );
        node
    }

    fn view(&self) -> Value {
        read_json(
            http_agent(Duration::from_secs(10))
                .get(format!("{}/cluster/nodes", self.http))
                .call(),
        )
        .expect("the node answers")
        .1
    }

    /// Names of the nodes this one shows as connected.
    fn connected(&self) -> HashSet<String> {
        self.view()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["connected"] == true)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.name, self.log());
        }
    }
}

/// How long until a connection that sends nothing is closed by the other end (None: still
/// open after `within`).
fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn only_nodes_with_a_certificate_of_the_cluster_ca_join() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("tls{}", common::unique());
    let (ca, other_ca) = (Ca::new("cluster-ca"), Ca::new("intruder-ca"));
    let a = ClusterNode::start("node-a", &redis, &prefix, &ca, &[]);
    let b = ClusterNode::start("node-b", &redis, &prefix, &ca, &[a.cluster_port]);
    let both: HashSet<String> = ["node-a", "node-b"].map(String::from).into();
    for node in [&a, &b] {
        poll(Duration::from_secs(30), "a and b to join over TLS", || {
            (node.connected() == both).then_some(())
        });
    }
    // The same cookie, a certificate of another CA.
    let c = ClusterNode::start("node-c", &redis, &prefix, &other_ca, &[a.cluster_port]);
    poll(Duration::from_secs(30), "node-a to refuse node-c", || {
        a.log()
            .contains("cluster TLS handshake failed")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    for node in [&a, &b] {
        assert_eq!(node.connected(), both, "{}", node.view());
    }
    let alone: HashSet<String> = ["node-c".to_string()].into();
    assert_eq!(c.connected(), alone, "{}", c.view());
    assert_ne!(a.view()["leader"], "node-c");

    // A third node of the CA that dials only node-a finds node-b through the store (with TLS
    // there are no transitive connections).
    let d = ClusterNode::start("node-d", &redis, &prefix, &ca, &[a.cluster_port]);
    let three: HashSet<String> = ["node-a", "node-b", "node-d"].map(String::from).into();
    for node in [&a, &b, &d] {
        poll(
            Duration::from_secs(30),
            "a, b and d to be connected",
            || (node.connected() == three).then_some(()),
        );
    }

    // A TCP client that never starts its TLS handshake is dropped after about 5 s.
    let mut silent = TcpStream::connect(("127.0.0.1", a.cluster_port)).unwrap();
    let closed = closed_after(&mut silent, Duration::from_secs(15));
    assert!(
        closed.is_some_and(|t| t > Duration::from_secs(3) && t < Duration::from_secs(9)),
        "closed after {closed:?}"
    );
    drop((c, d));
}

#[test]
fn a_cluster_connection_that_does_not_authenticate_is_dropped_after_5_s() {
    let store = TestStore::redis();
    let cluster_port = free_port();
    let listen = format!("\"127.0.0.1:{cluster_port}\"");
    let node = common::Node::up(&store, 1, &[("TRAINYARD_NODE__LISTEN", &listen)]);
    let connect = || TcpStream::connect(("127.0.0.1", cluster_port)).unwrap();
    // Eight (`MAX_PENDING_PER_IP`) connections from one address may wait to authenticate...
    let mut silent: Vec<TcpStream> = (0..8).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...a ninth is closed at once...
    let closed = closed_after(&mut connect(), Duration::from_secs(2));
    assert!(closed.is_some(), "a ninth pending connection was kept");
    // ...and the eight are dropped about 5 s after they opened.
    for stream in &mut silent {
        let closed = closed_after(stream, Duration::from_secs(15));
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(9)),
            "a silent connection was kept (closed after {closed:?})"
        );
    }
    // Their places are free again: a new connection waits its 5 s.
    let mut later = connect();
    let closed = closed_after(&mut later, Duration::from_secs(15));
    assert!(
        closed.is_some_and(|t| t > Duration::from_secs(3) && t < Duration::from_secs(9)),
        "closed after {closed:?}"
    );
    let (status, _) = node.get("/cluster/health");
    assert_eq!(status, 200);
}
