//! Completion webhooks: when a task with a `callback_url` ends, its final status and metrics are
//! POSTed there, signed with HMAC-SHA256 (`X-Trainyard-Signature: sha256=<hex>` over the body,
//! key from `[notifications] hmac_key`), with a timeout, retried with backoff, and the outcome
//! kept in the task record (`callback`) and counted (`trainyard_callbacks_total`).
//!
//! Only http and https URLs whose host is in `[notifications] allowed_hosts` are accepted, so
//! the cluster cannot be used to probe internal addresses. Ends are queued durably in the store;
//! any node delivers (the store hands each due delivery to one of them).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::store::{Lookup, Store, TaskRecord};
use crate::telemetry;

/// How often each node looks for due deliveries.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Deliveries taken per look.
const BATCH: usize = 16;
/// First retry wait; it doubles per try.
const FIRST_RETRY_S: f64 = 1.0;
const MAX_RETRY_S: f64 = 60.0;

#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Hosts (`host` or `host:port`) callbacks may go to; none allowed when empty.
    pub allowed_hosts: Vec<String>,
    pub hmac_key: String,
    pub timeout_s: f64,
    pub max_attempts: u32,
}

/// Checks a callback URL: http or https, a host, and that host allowed.
pub fn check_url(url: &str, allowed: &[String]) -> Result<(), String> {
    let uri: warp::http::Uri = url
        .parse()
        .map_err(|e| format!("callback_url {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("callback_url {url:?} must be http or https")),
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(format!("callback_url {url:?} has no host"));
    };
    let host = host.to_ascii_lowercase();
    let with_port = uri.port_u16().map(|p| format!("{host}:{p}"));
    let allowed_here = allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || Some(&a) == with_port.as_ref()
    });
    if !allowed_here {
        return Err(format!(
            "callback host {host:?} is not in [notifications] allowed_hosts"
        ));
    }
    Ok(())
}

/// The signature header's value for `body`.
pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
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

/// Delivers due callbacks until the node stops.
pub async fn run<S: Store>(store: Arc<S>, settings: NotifySettings) {
    let settings = Arc::new(settings);
    let hold_s = settings.timeout_s + 5.0;
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let due = match store.due_callbacks(BATCH, hold_s).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due callbacks");
                continue;
            }
        };
        for id in due {
            tokio::spawn(deliver(store.clone(), settings.clone(), id));
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
    let body = serde_json::to_vec(&payload(&task)).expect("payload serializes");
    let signature = sign(&settings.hmac_key, &body);
    let timeout = Duration::from_secs_f64(settings.timeout_s);
    let sent = tokio::task::spawn_blocking(move || post(&url, &body, &signature, id, timeout))
        .await
        .unwrap_or_else(|e| Err(format!("delivery task failed: {e}")));
    let tries = task.callback.as_ref().map_or(0, |c| c.attempts) + 1;
    let (error, retry_in_s, outcome) = match sent {
        Ok(()) => (None, None, "delivered"),
        Err(e) if tries < settings.max_attempts => {
            let wait = (FIRST_RETRY_S * 2f64.powi(tries as i32 - 1)).min(MAX_RETRY_S);
            (Some(e), Some(wait), "retried")
        }
        Err(e) => (Some(e), None, "failed"),
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

/// One POST; a 2xx answer is a delivery.
fn post(
    url: &str,
    body: &[u8],
    signature: &str,
    id: Uuid,
    timeout: Duration,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into();
    let response = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-trainyard-signature", signature)
        .header("x-trainyard-delivery", id.to_string())
        .send(body)
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_http_hosts_pass() {
        let allowed = vec![
            "hooks.example.com".to_string(),
            "127.0.0.1:9000".to_string(),
        ];
        assert!(check_url("https://hooks.example.com/done", &allowed).is_ok());
        assert!(check_url("http://127.0.0.1:9000/x", &allowed).is_ok());
        assert!(check_url("http://127.0.0.1:9001/x", &allowed).is_err());
        assert!(check_url("http://169.254.169.254/latest", &allowed).is_err());
        assert!(check_url("ftp://hooks.example.com/", &allowed).is_err());
        assert!(check_url("not a url", &allowed).is_err());
        assert!(
            check_url("https://hooks.example.com/", &[]).is_err(),
            "none by default"
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
