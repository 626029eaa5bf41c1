//! `POST /tasks`: a batch of training requests, each checked as a single submission is,
//! stored all or nothing in one store round trip (`Tasks::submit_batch`).
//!
//! The rule: a batch with any bad item stores nothing; the 422 lists every problem of every
//! item by its index (`items[3].epochs must be ...`). An item with an idempotency key
//! answers the earlier task of its key (its index is in `replayed`); a key held by a
//! different request refuses the batch (422 `idempotency_key_reused`, nothing stored). An item
//! repeating an earlier item's key with the same request answers the same task.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::submit::{build_parsed, check_request, client_key, fingerprint};
use super::{Reply_, parse_json, reject};
use crate::actors::DispatcherMsg;
use crate::actors::groups;
use crate::api::{BatchAnswer, TrainRequest};
use crate::http::{Api, ApiError};
use crate::store::{BatchItem, Store, Submitted};
use crate::telemetry::{self, TaskEvent};
use crate::training::ModelType;

/// What one item of a batch became once checked.
enum Checked {
    /// A task to store, at this place in the items to store.
    Store(usize),
    /// The same task as the item at this index (its key and request repeated).
    Same(usize),
}

/// `POST /tasks`.
pub async fn submit_batch<S: Store>(
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let answer = batch(&api, &content_type, &body).await.map_err(reject)?;
    Ok(with_status(reply_json(&answer), StatusCode::ACCEPTED).into_response())
}

async fn batch<S: Store>(
    api: &Api<S>,
    content_type: &Option<String>,
    body: &[u8],
) -> Result<BatchAnswer, ApiError> {
    let items: Vec<Value> = parse_json(content_type, body)?;
    let max = api.max_batch;
    if items.is_empty() {
        return Err(ApiError::invalid(
            "invalid_parameters",
            format!("a batch holds 1 to {max} training requests, got none"),
        ));
    }
    if items.len() as u64 > max {
        let mut error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "a batch holds at most {max} training requests (tasks.max_batch), got {}",
                items.len()
            ),
        );
        error.extra = Some(json!({"limit": max}));
        return Err(error);
    }
    let mut problems = Vec::new();
    let mut to_store: Vec<BatchItem> = Vec::new();
    let mut checked = Vec::with_capacity(items.len());
    // Each key's first item: its index and fingerprint.
    let mut keys: HashMap<String, (usize, String)> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        match check_item(api, i, item).await {
            Err(found) => problems.extend(found),
            Ok((task, key)) => {
                if let Some(key) = &key {
                    match keys.get(&key.key) {
                        Some((first, print)) if *print == key.fingerprint => {
                            checked.push(Checked::Same(*first));
                            continue;
                        }
                        Some((first, _)) => {
                            problems.push(format!(
                                "items[{i}].idempotency_key repeats items[{first}]'s with a \
                                 different request"
                            ));
                            continue;
                        }
                        None => {
                            keys.insert(key.key.clone(), (i, key.fingerprint.clone()));
                        }
                    }
                }
                checked.push(Checked::Store(to_store.len()));
                to_store.push(BatchItem { task, key });
            }
        }
    }
    if !problems.is_empty() {
        let mut error = ApiError::invalid("invalid_parameters", problems.join("; "));
        error.extra = Some(json!({"problems": problems}));
        return Err(error);
    }
    let answers = api.store.submit_batch(&to_store, api.queue_limit).await?;
    let reused: Vec<String> = to_store
        .iter()
        .zip(&answers)
        .filter(|(item, answer)| item.reused(answer))
        .map(|(item, _)| {
            let key = item.key.as_ref().map_or("", |k| k.key.as_str());
            format!("idempotency key {key:?} was used for a different request; use a new key")
        })
        .collect();
    if !reused.is_empty() {
        return Err(ApiError::invalid(
            "idempotency_key_reused",
            format!("nothing was stored: {}", reused.join("; ")),
        ));
    }
    let mut new = 0;
    for (item, answer) in to_store.iter().zip(&answers) {
        if *answer == Submitted::New {
            telemetry::task_event(TaskEvent::Submitted, item.task.model_type);
            new += 1;
        }
    }
    let id_of = |at: usize| match &answers[at] {
        Submitted::New => (to_store[at].task.id, false),
        Submitted::Existing { id, .. } => (*id, true),
    };
    let mut task_ids = Vec::with_capacity(checked.len());
    let mut replayed = Vec::new();
    for (i, item) in checked.iter().enumerate() {
        let (id, earlier) = match item {
            Checked::Store(at) => id_of(*at),
            Checked::Same(first) => (task_ids[*first], true),
        };
        task_ids.push(id);
        if earlier {
            replayed.push(i as u32);
        }
    }
    tracing::info!(tasks = new, items = task_ids.len(), "batch submitted");
    if new > 0 {
        // Wake the leader, wherever it runs.
        groups::tell_dispatchers(|| DispatcherMsg::Poll);
    }
    Ok(BatchAnswer {
        success: true,
        task_ids,
        replayed,
    })
}

/// Checks item `i` as a single submission is checked, and builds its task and key; or every
/// problem it has, each named by the item's index.
async fn check_item<S: Store>(
    api: &Api<S>,
    i: usize,
    item: Value,
) -> Result<
    (
        crate::store::TaskRecord,
        Option<crate::store::IdempotencyKey>,
    ),
    Vec<String>,
> {
    let Value::Object(mut fields) = item else {
        return Err(vec![format!(
            "items[{i}] must be an object (a training request with its model_type)"
        )]);
    };
    let model = match fields.remove("model_type") {
        Some(Value::String(model)) => model,
        Some(_) => return Err(vec![format!("items[{i}].model_type must be a string")]),
        None => return Err(vec![format!("items[{i}].model_type is missing")]),
    };
    let key = match fields.remove("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            return Err(vec![format!("items[{i}].idempotency_key must be a string")]);
        }
    };
    let rest = Value::Object(fields);
    let key = match key {
        None => None,
        Some(key) => {
            let print = fingerprint(&model, rest.to_string().as_bytes());
            let key = client_key(&key, print, api.result_expires_s)
                .map_err(|e| vec![format!("items[{i}].idempotency_key: {}", e.message)])?;
            Some(key)
        }
    };
    let (model_type, requested_as) = ModelType::parse_requested(&model)
        .map_err(|e| vec![format!("items[{i}].model_type: {e}")])?;
    let request: TrainRequest = serde_json::from_value(rest)
        .map_err(|e| vec![format!("items[{i}]: invalid request: {e}")])?;
    if request.cache == Some(true) {
        return Err(vec![format!(
            "items[{i}].cache is not taken in a batch: submit a cached request alone"
        )]);
    }
    let problems = |e: ApiError| -> Vec<String> {
        if e.code == "invalid_parameters" {
            e.message
                .split("; ")
                .map(|p| format!("items[{i}].{p}"))
                .collect()
        } else {
            vec![format!("items[{i}]: {} ({})", e.message, e.code)]
        }
    };
    let parsed = check_request(model_type, requested_as, request, &api.bounds).map_err(problems)?;
    let (task, _) = build_parsed(api, parsed).await.map_err(problems)?;
    Ok((task, key))
}
