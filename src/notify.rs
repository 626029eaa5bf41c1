//! Completion webhooks: when a task with a `callback_url` ends, its final status and metrics are
//! POSTed there, signed, with a timeout, retried with backoff, and the outcome kept in the task
//! record (`callback`) and counted (`trainyard_callbacks_total`). Ends are queued durably in the
//! store; any node delivers (the store hands each due delivery to one of them), at most
//! `[notifications] max_concurrent` at once per node.
//!
//! # Where callbacks may go
//!
//! Only http and https URLs without credentials (`user:pass@`) whose host is in
//! `[notifications] allowed_hosts` are accepted, so the cluster cannot be used to probe internal
//! addresses. An entry `host` allows the scheme's default port only (80 for http, 443 for https),
//! `host:port` (or `[v6]:port`) that port. The list is checked again at each delivery try, so a
//! task queued before the operator narrowed it is not delivered to a host now refused. At
//! delivery the host is resolved and every address it resolves to must be global: loopback,
//! private (RFC 1918, IPv6 ULA), link-local, unspecified and other special-purpose addresses are
//! refused unless `[notifications] allow_private = true`, and the POST connects to the very
//! addresses that were checked (no second lookup that DNS rebinding could answer differently).
//! https is verified with the public web PKI roots, or only with the CA certificates of
//! `[notifications] ca_file` (PEM) when it is set.
//!
//! # Verifying a delivery (receivers)
//!
//! Each POST carries `X-Trainyard-Delivery: <task id>`, `X-Trainyard-Timestamp: <unix seconds>`
//! and `X-Trainyard-Signature: sha256=<hex>`, the HMAC-SHA256 with key `[notifications] hmac_key`
//! of the timestamp, a `.`, and the raw body bytes (`"{timestamp}.{body}"`). A receiver:
//! 1. recomputes `HMAC-SHA256(hmac_key, timestamp + "." + raw_body)` and compares it with the
//!    header's hex in constant time (refuse on mismatch);
//! 2. refuses a timestamp more than a few minutes (e.g. 300 s) from its own clock, so a captured
//!    delivery cannot be replayed later;
//! 3. treats the task id as the idempotency key: delivery is at-least-once, each try is signed
//!    anew with its own timestamp.
//!
//! [`verify`] does 1 and 2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::config::parse_allowed;
use crate::store::{Lookup, Store, TaskRecord};
use crate::telemetry;

/// How often each node looks for due deliveries.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Deliveries taken per look, at most.
const BATCH: usize = 16;
/// First retry wait; it doubles per try.
const FIRST_RETRY_S: f64 = 1.0;
const MAX_RETRY_S: f64 = 60.0;

/// Where callbacks may go: `[notifications] allowed_hosts` and `allow_private`.
#[derive(Debug, Clone, Default)]
pub struct CallbackRules {
    /// Hosts (`host`, `host:port`, `[v6]:port`) callbacks may go to; none allowed when empty.
    pub allowed_hosts: Vec<String>,
    /// Whether hosts may be (or resolve to) loopback, private, link-local or other non-global
    /// addresses.
    pub allow_private: bool,
}

#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub rules: CallbackRules,
    pub hmac_key: String,
    pub timeout_s: f64,
    pub max_attempts: u32,
    /// Deliveries in flight at once on this node.
    pub max_concurrent: usize,
    /// CA certificates (DER) https callbacks are verified with; the public web PKI when None.
    pub ca_certs: Option<Arc<Vec<ureq::tls::Certificate<'static>>>>,
}

impl NotifySettings {
    /// The settings of `[notifications]`; reads `ca_file`.
    pub fn from_config(n: &crate::config::NotificationsSection) -> Result<Self, String> {
        let ca_certs = if n.ca_file.is_empty() {
            None
        } else {
            Some(Arc::new(read_ca_file(&n.ca_file)?))
        };
        Ok(NotifySettings {
            rules: CallbackRules {
                allowed_hosts: n.allowed_hosts.clone(),
                allow_private: n.allow_private,
            },
            hmac_key: n.hmac_key.clone(),
            timeout_s: n.timeout_s,
            max_attempts: n.max_attempts,
            max_concurrent: n.max_concurrent,
            ca_certs,
        })
    }
}

/// The certificates of a PEM file; an error when it cannot be read or holds none.
pub fn read_ca_file(path: &str) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("notifications.ca_file {path:?} cannot be read: {e}"))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("notifications.ca_file {path:?}: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "notifications.ca_file {path:?} holds no PEM certificate"
        ));
    }
    Ok(certs)
}

/// A callback URL that passed [`CallbackRules::check_url`]: where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Lower case, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
}

/// `url` with any `user:password@` replaced by `***@`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

impl CallbackRules {
    /// Checks a callback URL without resolving it: http or https, no credentials, a host and
    /// port allowed, and an IP literal host global unless private addresses are allowed.
    /// Messages never hold the URL's credentials.
    pub fn check_url(&self, url: &str) -> Result<Target, String> {
        let shown = redact(url);
        let uri: warp::http::Uri = url
            .parse()
            .map_err(|e| format!("callback_url {shown:?} is not a URL: {e}"))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(format!("callback_url {shown:?} must be http or https")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("callback_url {shown:?} has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "callback_url {shown:?} must not hold credentials (user:password@); \
                 authenticate with the X-Trainyard-Signature header instead"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .to_string();
        if host.is_empty() {
            return Err(format!("callback_url {shown:?} has no host"));
        }
        let port = uri.port_u16().unwrap_or(default_port);
        let allowed_here = self.allowed_hosts.iter().any(|entry| {
            parse_allowed(entry).is_ok_and(|(h, p)| h == host && p.unwrap_or(default_port) == port)
        });
        if !allowed_here {
            let portless = self
                .allowed_hosts
                .iter()
                .any(|entry| parse_allowed(entry).is_ok_and(|(h, p)| h == host && p.is_none()));
            let hint = if portless {
                format!(" (an entry without a port allows port {default_port} only)")
            } else {
                String::new()
            };
            return Err(format!(
                "callback host {host:?} port {port} is not in [notifications] allowed_hosts{hint}"
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_address(&host, ip)?;
        }
        Ok(Target { host, port })
    }

    fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.allow_private || is_global(ip) {
            Ok(())
        } else {
            Err(format!(
                "callback host {host:?} is (or resolves to) {ip}, not a global address; \
                 [notifications] allow_private = true allows it"
            ))
        }
    }

    /// Resolves a checked target (blocking) and checks every address it resolves to; the
    /// addresses to connect to.
    pub fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve callback host {:?}: {e}", target.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "callback host {:?} resolves to no address",
                target.host
            ));
        }
        for addr in &addrs {
            self.check_address(&target.host, addr.ip())?;
        }
        Ok(addrs)
    }
}

/// Whether `ip` is a global unicast address: not loopback, private (RFC 1918, IPv6 unique
/// local), link-local, unspecified, shared (CGNAT), documentation, benchmarking, multicast,
/// broadcast or reserved; IPv4 addresses inside IPv6 ones (mapped, NAT64, 6to4) are judged as
/// IPv4.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // 64:ff9b::/96, NAT64: the IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_global_v4(embedded_v4(s[6], s[7]));
    }
    // 2002::/16, 6to4: the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_global_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // ::/96, IPv4-compatible (deprecated), and other addresses under ::/16.
        || s[0] == 0
        // 100::/64, discard only.
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
        // fc00::/7, unique local.
        || (s[0] & 0xfe00) == 0xfc00
        // fe80::/10, link-local; fec0::/10, site-local (deprecated).
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 2001:db8::/32, documentation.
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        // 2001::/23, IETF protocol assignments (Teredo 2001::/32 among them).
        || (s[0] == 0x2001 && s[1] < 0x200))
}

/// The signature header's value: HMAC-SHA256 with `key` of `"{timestamp}.{body}"`, as
/// `sha256=<hex>`.
pub fn sign(key: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What a receiver checks (see the module's docs): that `signature` (`sha256=<hex>`) is the
/// HMAC-SHA256 with `key` of `"{timestamp}.{body}"`, compared in constant time, and that
/// `timestamp` (the `X-Trainyard-Timestamp` header) is within `tolerance_s` of `now_s`.
pub fn verify(
    key: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: u64,
    tolerance_s: u64,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    if ts.abs_diff(now_s) > tolerance_s {
        return false;
    }
    let Some(hex) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return false;
    }
    let Ok(expected) = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What is POSTed: the task's final state, result or error, and attempts.
fn payload(task: &TaskRecord) -> serde_json::Value {
    json!({
        "task_id": task.id,
        "state": task.state,
        "model_type": task.model_type,
        "result": task.result,
        "error": task.error,
        "attempt": task.attempt,
        "finished_at": task.finished_at,
        "schedule": task.schedule,
    })
}

/// Delivers due callbacks until the node stops, at most `max_concurrent` at once.
pub async fn run<S: Store>(store: Arc<S>, settings: NotifySettings) {
    let settings = Arc::new(settings);
    let hold_s = settings.timeout_s + 5.0;
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent.max(1)));
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        // Take no more than can be delivered now: the rest stay due, for this node's next look
        // or another node.
        let free = slots.available_permits().min(BATCH);
        if free == 0 {
            continue;
        }
        let due = match store.due_callbacks(free, hold_s).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due callbacks");
                continue;
            }
        };
        for id in due {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (store, settings) = (store.clone(), settings.clone());
            tokio::spawn(async move {
                deliver(store, settings, id).await;
                drop(slot);
            });
        }
    }
}

async fn deliver<S: Store>(store: Arc<S>, settings: Arc<NotifySettings>, id: Uuid) {
    let task = match store.get(id).await {
        Ok(Lookup::Found(task)) => *task,
        Ok(_) => {
            let _ = store.callback_tried(id, None, None).await;
            return;
        }
        Err(e) => {
            tracing::warn!(task_id = %id, error = %e, "cannot read a task to notify");
            return;
        }
    };
    let Some(url) = task.callback_url.clone() else {
        let _ = store.callback_tried(id, None, None).await;
        return;
    };
    let tries = task.callback.as_ref().map_or(0, |c| c.attempts) + 1;
    let body = serde_json::to_vec(&payload(&task)).expect("payload serializes");
    let sent = match settings.rules.check_url(&url) {
        // The allow-list as it is now: refused is final, no retry.
        Err(refused) => Err((refused, false)),
        Ok(target) => {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || post(&settings, &url, &target, &body, id))
                .await
                .unwrap_or_else(|e| Err((format!("delivery task failed: {e}"), true)))
        }
    };
    let (error, retry_in_s, outcome) = match sent {
        Ok(()) => (None, None, "delivered"),
        Err((e, true)) if tries < settings.max_attempts => {
            let wait = (FIRST_RETRY_S * 2f64.powi(tries as i32 - 1)).min(MAX_RETRY_S);
            (Some(e), Some(wait), "retried")
        }
        Err((e, _)) => (Some(e), None, "failed"),
    };
    match &error {
        None => tracing::info!(task_id = %id, "callback delivered"),
        Some(e) => tracing::warn!(task_id = %id, error = %e, tries, "callback delivery failed"),
    }
    telemetry::callback(outcome);
    if let Err(e) = store.callback_tried(id, error, retry_in_s).await {
        tracing::warn!(task_id = %id, error = %e, "cannot record a callback delivery");
    }
}

/// Resolves to exactly the addresses given: those that were checked, so the connection goes
/// where the check looked (no second DNS lookup between check and connect).
#[derive(Debug)]
struct Checked(Vec<SocketAddr>);

impl ureq::unversioned::resolver::Resolver for Checked {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        for addr in &self.0 {
            if addrs.try_push(*addr).is_err() {
                break;
            }
        }
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(addrs)
    }
}

/// One POST (blocking): resolves and checks the host, connects to the checked addresses; a 2xx
/// answer is a delivery. An error says whether another try may help.
fn post(
    settings: &NotifySettings,
    url: &str,
    target: &Target,
    body: &[u8],
    id: Uuid,
) -> Result<(), (String, bool)> {
    let shown = redact(url);
    // A host that resolves to a refused address may resolve elsewhere later: retried.
    let addrs = settings.rules.resolve(target).map_err(|e| (e, true))?;
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    if let Some(certs) = &settings.ca_certs {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(certs.clone()));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs_f64(settings.timeout_s)))
        .max_redirects(0)
        // A proxy (from the environment) would be resolved and connected to instead.
        .proxy(None)
        .tls_config(tls.build())
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        Checked(addrs),
    );
    let timestamp = unix_now_s();
    let response = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-trainyard-timestamp", timestamp.to_string())
        .header(
            "x-trainyard-signature",
            sign(&settings.hmac_key, timestamp, body),
        )
        .header("x-trainyard-delivery", id.to_string())
        .send(body)
        .map_err(|e| (format!("cannot reach {shown}: {e}"), true))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((format!("{shown} answered {}", status.as_u16()), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(hosts: &[&str], allow_private: bool) -> CallbackRules {
        CallbackRules {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allow_private,
        }
    }

    #[test]
    fn only_allowed_http_hosts_pass() {
        let open = rules(&["hooks.example.com", "127.0.0.1:9000"], true);
        assert!(open.check_url("https://hooks.example.com/done").is_ok());
        assert!(open.check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(open.check_url("http://127.0.0.1:9001/x").is_err());
        assert!(open.check_url("http://169.254.169.254/latest").is_err());
        assert!(open.check_url("ftp://hooks.example.com/").is_err());
        assert!(open.check_url("not a url").is_err());
        assert!(
            rules(&[], true)
                .check_url("https://hooks.example.com/")
                .is_err(),
            "none by default"
        );
    }

    #[test]
    fn an_entry_without_a_port_allows_the_default_port_only() {
        let r = rules(
            &[
                "hooks.example.com",
                "alerts.example.com:8443",
                "[2001:4860::1]",
            ],
            false,
        );
        let ok = |url: &str| r.check_url(url).map(|t| t.port);
        assert_eq!(ok("https://hooks.example.com/x"), Ok(443));
        assert_eq!(ok("http://hooks.example.com/x"), Ok(80));
        assert_eq!(ok("https://hooks.example.com:443/x"), Ok(443));
        assert!(ok("https://hooks.example.com:8443/x").is_err());
        assert!(ok("http://hooks.example.com:6379/x").is_err());
        assert!(
            ok("http://hooks.example.com:443/x").is_err(),
            "443 is https's port"
        );
        assert_eq!(ok("https://alerts.example.com:8443/x"), Ok(8443));
        assert!(ok("https://alerts.example.com/x").is_err());
        assert_eq!(ok("https://[2001:4860::1]/x"), Ok(443));
        assert!(ok("https://[2001:4860::1]:8443/x").is_err());
        assert_eq!(parse_allowed("[::1]:80"), Ok(("::1".to_string(), Some(80))));
        assert_eq!(parse_allowed("::1"), Ok(("::1".to_string(), None)));
        assert!(parse_allowed("host:0").is_err());
        assert!(parse_allowed("host:http").is_err());
        assert!(parse_allowed("").is_err());
    }

    #[test]
    fn ip_literals_that_are_not_global_are_refused_unless_allowed() {
        let hosts = [
            "127.0.0.1:9000",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "[::1]",
            "[fd00::1]",
            "[fe80::1]",
            "[::ffff:127.0.0.1]",
            "8.8.8.8",
        ];
        let strict = rules(&hosts, false);
        let open = rules(&hosts, true);
        for url in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let refused = strict.check_url(url).unwrap_err();
            assert!(refused.contains("allow_private"), "{url}: {refused}");
            assert!(open.check_url(url).is_ok(), "{url}");
        }
        assert!(strict.check_url("http://8.8.8.8/").is_ok());
    }

    #[test]
    fn global_addresses_are_told_from_special_ones() {
        for ip in [
            "127.0.0.1",
            "127.8.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001::1",
            "100::1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip} is not global");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip} is global");
        }
    }

    #[test]
    fn credentials_in_a_url_are_refused_and_never_shown() {
        let r = rules(&["hooks.example.com"], false);
        for url in [
            "https://user:s3cret@hooks.example.com/x",
            "https://s3cret@hooks.example.com/x",
            "ftp://user:s3cret@hooks.example.com/x",
        ] {
            let refused = r.check_url(url).unwrap_err();
            assert!(!refused.contains("s3cret"), "{refused}");
        }
        assert_eq!(
            redact("https://user:s3cret@hooks.example.com/a@b?c=d"),
            "https://***@hooks.example.com/a@b?c=d"
        );
        assert_eq!(redact("https://h/x@y"), "https://h/x@y");
    }

    #[test]
    fn resolved_addresses_are_checked() {
        let target = Target {
            host: "localhost".into(),
            port: 9,
        };
        let refused = rules(&["localhost:9"], false).resolve(&target).unwrap_err();
        assert!(refused.contains("not a global address"), "{refused}");
        let addrs = rules(&["localhost:9"], true).resolve(&target).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }

    #[test]
    fn the_resolver_answers_the_checked_addresses_whatever_the_host() {
        use ureq::unversioned::resolver::Resolver;
        let checked: SocketAddr = "192.0.2.7:8443".parse().unwrap();
        let uri: ureq::http::Uri = "https://elsewhere.example.com/".parse().unwrap();
        let config = ureq::config::Config::default();
        let timeout = ureq::unversioned::transport::NextTimeout::default();
        let got = Checked(vec![checked])
            .resolve(&uri, &config, timeout)
            .unwrap();
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), vec![checked]);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2, the message being "{timestamp}.{body}".
        assert_eq!(sign("Jefe", 1234, b"what do ya want for nothing?"), {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
            mac.update(b"1234.what do ya want for nothing?");
            let hex: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256={hex}")
        });
        assert_ne!(
            sign("Jefe", 1234, b"what do ya want for nothing?"),
            sign("Jefe", 1235, b"what do ya want for nothing?"),
            "the timestamp is signed"
        );
        let signature = sign("k", 1_000_000, b"{}");
        assert!(verify("k", "1000000", b"{}", &signature, 1_000_100, 300));
        assert!(
            !verify("k", "1000000", b"{}", &signature, 1_000_400, 300),
            "too old"
        );
        assert!(
            !verify("k", "1000001", b"{}", &signature, 1_000_100, 300),
            "other time"
        );
        assert!(
            !verify("k", "1000000", b"{ }", &signature, 1_000_100, 300),
            "other body"
        );
        assert!(
            !verify("j", "1000000", b"{}", &signature, 1_000_100, 300),
            "other key"
        );
        assert!(!verify("k", "1000000", b"{}", "sha256=00", 1_000_100, 300));
    }
}
