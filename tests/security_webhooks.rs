//! Webhooks, attacked: https to the operator's own CA, the allow-list at delivery, default ports,
//! private addresses, replayed deliveries, a flood of deliveries, credentials in URLs. Real
//! nodes deliver to real HTTP(S) receivers on loopback.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Node, TestStore, poll, temp_dir};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const LONG: Duration = Duration::from_secs(120);
const KEY: &str = "hook-secret";

/// A training that runs until cancelled.
fn endless() -> Value {
    json!({"epochs": 100000, "hidden_sizes": [64, 64]})
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A webhook receiver on a free loopback port, over http or (with a rustls config) https: each
/// connection on its own thread, held `hold` before it answers 200; counts how many requests it
/// holds at once (the peak).
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    peak: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(tls: Option<Arc<rustls::ServerConfig>>, hold: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (log, top) = (hits.clone(), peak.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let (log, top, now, tls) = (log.clone(), top.clone(), now.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = match tls {
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            let mut tls = rustls::StreamOwned::new(conn, tcp);
                            serve(&mut tls, &log, &top, &now, hold).map(|_| {
                                tls.conn.send_close_notify();
                                let _ = tls.flush();
                            })
                        }
                        None => serve(&mut { tcp }, &log, &top, &now, hold),
                    };
                });
            }
        });
        Receiver { port, hits, peak }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// Reads one request, holds it, answers 200.
fn serve(
    stream: &mut (impl Read + Write),
    log: &Mutex<Vec<Hit>>,
    peak: &AtomicUsize,
    now: &AtomicUsize,
    hold: Duration,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    drop(reader);
    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(at_once, Ordering::SeqCst);
    std::thread::sleep(hold);
    log.lock().unwrap().push(Hit {
        path,
        headers,
        body,
    });
    now.fetch_sub(1, Ordering::SeqCst);
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    stream.flush()
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1: the CA's PEM
/// and the server's rustls config.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "trainyard test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server.der().clone()], key)
    .unwrap();
    (ca.pem(), Arc::new(config))
}

/// Polls a task's callback until it was delivered or given up; the `callback` record.
fn settled(node: &Node, id: &str) -> Value {
    poll(LONG, &format!("the callback of {id} to settle"), || {
        let c = node.get(&format!("/task/{id}")).1["callback"].clone();
        (c["delivered_at"].is_f64() || c["failed"] == true).then_some(c)
    })
}

fn hmac_hex(message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(message);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn https_callbacks_are_delivered_to_a_server_trusted_by_ca_file() {
    let (ca_pem, server_config) = test_ca();
    let receiver = Receiver::start(Some(server_config), Duration::ZERO);
    let dir = temp_dir("hooks-ca");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let hosts = format!("[\"localhost:{0}\", \"127.0.0.1:{0}\"]", receiver.port);
    let ca_file = format!("\"{}\"", ca_file.display());
    let base = [
        ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
        ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
        ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
        ("TRAINYARD_NOTIFICATIONS__MAX_ATTEMPTS", "1"),
    ];
    let mut with_ca = base.to_vec();
    with_ca.push(("TRAINYARD_NOTIFICATIONS__CA_FILE", ca_file.as_str()));
    let node = Node::up(&TestStore::embedded(), 1, &with_ca);
    let hook = format!("https://localhost:{}/hook", receiver.port);
    let id = node.submit("linear", json!({"epochs": 1, "callback_url": hook}));
    node.wait_for(&id, "SUCCESS", LONG);
    let callback = settled(&node, &id);
    assert!(callback["delivered_at"].is_f64(), "{callback}");
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].path, "/hook");
    let sent: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(sent["task_id"], id.as_str());
    drop(node);

    // Without the CA the same server is not trusted (the public roots do not know it).
    let node = Node::up(&TestStore::embedded(), 1, &base);
    let id = node.submit("linear", json!({"epochs": 1, "callback_url": hook}));
    node.wait_for(&id, "SUCCESS", LONG);
    let callback = settled(&node, &id);
    assert_eq!(callback["failed"], true, "{callback}");
    let error = callback["last_error"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(receiver.hits().len(), 1, "nothing more arrived");
}

#[test]
fn a_host_dropped_from_allowed_hosts_gets_no_more_deliveries() {
    let receiver = Receiver::start(None, Duration::ZERO);
    let store = TestStore::embedded();
    let hosts = format!("[\"127.0.0.1:{}\"]", receiver.port);
    let common = [
        ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
        ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
    ];
    let mut before = common.to_vec();
    before.push(("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()));
    let node = Node::up(&store, 1, &before);
    let blocker = node.submit("mlp", endless());
    node.wait_for(&blocker, "PROGRESS", LONG);
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let queued = node.submit("linear", json!({"epochs": 1, "callback_url": hook}));
    assert_eq!(node.state(&queued), "PENDING");
    drop(node);

    // The operator narrows the list and restarts; the queued task ends (it runs, or is
    // cancelled if the interrupted blocker runs first).
    let mut after = common.to_vec();
    after.push((
        "TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS",
        "[\"hooks.example.com\"]",
    ));
    let node = Node::up(&store, 1, &after);
    node.post(&format!("/task/{queued}/cancel"), json!(null));
    poll(LONG, "the queued task to end", || {
        ["SUCCESS", "REVOKED"]
            .contains(&node.state(&queued).as_str())
            .then_some(())
    });
    let callback = settled(&node, &queued);
    assert_eq!(callback["failed"], true, "{callback}");
    assert_eq!(
        callback["attempts"], 1,
        "a refusal is not retried: {callback}"
    );
    assert!(
        callback["last_error"]
            .as_str()
            .unwrap()
            .contains("allowed_hosts"),
        "{callback}"
    );
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
}

#[test]
fn an_allowed_host_without_a_port_allows_only_the_default_port() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", "[\"127.0.0.1\"]"),
            ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
            ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
        ],
    );
    // Redis, say, on the same host: not the web server the operator allowed.
    for url in [
        "http://127.0.0.1:6379/",
        "https://127.0.0.1:8443/",
        "http://127.0.0.1:443/",
    ] {
        let (status, answer) = node.post("/train/linear/async", json!({"callback_url": url}));
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("callback_not_allowed")),
            "{url}: {answer}"
        );
    }
    for url in ["http://127.0.0.1/hook", "https://127.0.0.1:443/hook"] {
        let (status, answer) = node.post("/train/linear/async", json!({"callback_url": url}));
        assert_eq!(status, 202, "{url}: {answer}");
    }
}

#[test]
fn hosts_on_private_addresses_are_refused_unless_allow_private() {
    let receiver = Receiver::start(None, Duration::ZERO);
    let hosts = format!("[\"localhost:{0}\", \"127.0.0.1:{0}\"]", receiver.port);
    let env = [
        ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
        ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
        ("TRAINYARD_NOTIFICATIONS__MAX_ATTEMPTS", "1"),
    ];
    let node = Node::up(&TestStore::embedded(), 1, &env);
    // An address literal is refused at once.
    let literal = format!("http://127.0.0.1:{}/hook", receiver.port);
    let (status, answer) = node.post("/train/linear/async", json!({"callback_url": literal}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("callback_not_allowed")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_private"),
        "{answer}"
    );
    // A name is resolved at delivery, and what it resolves to is refused.
    let name = format!("http://localhost:{}/hook", receiver.port);
    let id = node.submit("linear", json!({"epochs": 1, "callback_url": name}));
    node.wait_for(&id, "SUCCESS", LONG);
    let callback = settled(&node, &id);
    assert_eq!(callback["failed"], true, "{callback}");
    assert!(
        callback["last_error"]
            .as_str()
            .unwrap()
            .contains("not a global address"),
        "{callback}"
    );
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
    drop(node);

    // The operator who means it allows them.
    let mut env = env.to_vec();
    env.push(("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"));
    let node = Node::up(&TestStore::embedded(), 1, &env);
    let id = node.submit("linear", json!({"epochs": 1, "callback_url": name}));
    node.wait_for(&id, "SUCCESS", LONG);
    assert!(settled(&node, &id)["delivered_at"].is_f64());
    assert_eq!(receiver.hits().len(), 1);
}

#[test]
fn deliveries_sign_a_timestamp_with_the_body() {
    let receiver = Receiver::start(None, Duration::ZERO);
    let hosts = format!("[\"127.0.0.1:{}\"]", receiver.port);
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
            ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
            ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
        ],
    );
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let id = node.submit("linear", json!({"epochs": 1, "callback_url": hook}));
    node.wait_for(&id, "SUCCESS", LONG);
    assert!(settled(&node, &id)["delivered_at"].is_f64());
    let hits = receiver.hits();
    let hit = &hits[0];
    let timestamp = hit
        .headers
        .get("x-trainyard-timestamp")
        .expect("a timestamp header");
    let ts: u64 = timestamp.parse().unwrap();
    assert!(ts.abs_diff(unix_now()) < 120, "{ts} is now");
    let signature = &hit.headers["x-trainyard-signature"];
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&hit.body);
    assert_eq!(signature, &hmac_hex(&signed), "over timestamp.body");
    assert_ne!(signature, &hmac_hex(&hit.body), "not over the body alone");
    assert_eq!(hit.headers["x-trainyard-delivery"], id);
    assert!(trainyard::notify::verify(
        KEY,
        timestamp,
        &hit.body,
        signature,
        unix_now(),
        300
    ));
    // A replay an hour later fails the receiver's check.
    assert!(!trainyard::notify::verify(
        KEY,
        timestamp,
        &hit.body,
        signature,
        ts + 3600,
        300
    ));
}

#[test]
fn deliveries_in_flight_per_node_are_bounded_by_max_concurrent() {
    let receiver = Receiver::start(None, Duration::from_millis(700));
    let hosts = format!("[\"127.0.0.1:{}\"]", receiver.port);
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
            ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
            ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
            ("TRAINYARD_NOTIFICATIONS__MAX_CONCURRENT", "2"),
        ],
    );
    let blocker = node.submit("mlp", endless());
    node.wait_for(&blocker, "PROGRESS", LONG);
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let ids: Vec<String> = (0..6)
        .map(|_| node.submit("linear", json!({"epochs": 1, "callback_url": hook})))
        .collect();
    // Purged at once: six deliveries due together.
    assert_eq!(node.delete("/queue").1["purged"], 6);
    for id in &ids {
        assert!(settled(&node, id)["delivered_at"].is_f64());
    }
    assert_eq!(receiver.hits().len(), 6);
    assert_eq!(
        receiver.peak.load(Ordering::SeqCst),
        2,
        "two deliveries at once, never more"
    );
    node.post(&format!("/task/{blocker}/cancel"), json!(null));
}

#[test]
fn callback_urls_with_credentials_are_refused_and_not_echoed() {
    let receiver = Receiver::start(None, Duration::ZERO);
    let hosts = format!("[\"127.0.0.1:{}\"]", receiver.port);
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
            ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
            ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", KEY),
        ],
    );
    for url in [
        format!("http://user:s3cret@127.0.0.1:{}/hook", receiver.port),
        format!("http://s3cret@127.0.0.1:{}/hook", receiver.port),
    ] {
        let (status, answer) = node.post(
            "/train/linear/async",
            json!({"epochs": 1, "callback_url": url}),
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("callback_not_allowed")),
            "{answer}"
        );
        assert!(!answer.to_string().contains("s3cret"), "{answer}");
    }
    assert_eq!(node.get("/tasks").1["count"], 0, "nothing was stored");
    // No connection was even tried.
    std::thread::sleep(Duration::from_millis(600));
    assert!(receiver.hits().is_empty());
}
