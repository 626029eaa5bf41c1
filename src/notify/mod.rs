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
//!
//! Files: `rules.rs` (where callbacks may go), `sign.rs` (signatures), this file (the delivery
//! loop), `tests.rs`.

mod rules;
mod sign;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::store::{Lookup, Store, TaskRecord};
use crate::telemetry;

pub use rules::{CallbackRules, Target, is_global, redact};
use sign::unix_now_s;
pub use sign::{sign, verify};

/// How often each node looks for due deliveries.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Deliveries taken per look, at most.
const BATCH: usize = 16;
/// First retry wait; it doubles per try.
const FIRST_RETRY_S: f64 = 1.0;
const MAX_RETRY_S: f64 = 60.0;

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
