//! `/sweeps`: hyperparameter searches (see `crate::sweeps` for how the leader runs them).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};
use warp::sse::Event as SseEvent;

use super::handlers::{Reply_, build_task, parse_id, parse_json, reject};
use super::{Api, ApiError};
use crate::actors::{TrainerMsg, groups};
use crate::api::{SweepAnswer, SweepList, SweepRequest, SweepView};
use crate::store::{
    Asha, CancelOutcome, MetricMode, Mode, Store, Strategy, Sweep, SweepCreated, SweepState, Trial,
    TrialState, now_s,
};
use crate::sweeps::space::Space;
use crate::training::{ModelType, ValMetric};

/// Longest sweep name.
const MAX_NAME: usize = 64;
/// Most trials of one sweep.
pub const MAX_TRIALS: u32 = 1_000;
/// Most trials of one sweep running at once.
const MAX_PARALLEL: u32 = 1_000;
/// Defaults of the request's optional fields.
const DEFAULT_TRIALS: u32 = 16;
const DEFAULT_PARALLEL: u32 = 4;
const DEFAULT_VALIDATION: f64 = 0.2;
/// How often an event stream reads the sweep's log.
const EVENTS_EVERY: Duration = Duration::from_millis(200);
/// Events read at once.
const EVENTS_BATCH: usize = 256;
/// Tries of a cancel against the leader's concurrent changes.
const CANCEL_TRIES: usize = 20;

/// `POST /sweeps`: 201 with the sweep; 422 listing every problem; 409 when the cluster keeps
/// `[tasks] max_sweeps` sweeps.
pub async fn create<S: Store>(
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let sweep = parse(&api, &content_type, &body).await.map_err(reject)?;
    let event = crate::sweeps::created_event(&sweep);
    let max = api.max_sweeps;
    match api
        .store
        .create_sweep(&sweep, max, &event)
        .await
        .map_err(reject)?
    {
        SweepCreated::Created => {}
        SweepCreated::Full => {
            return Err(reject(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_sweeps",
                format!(
                    "the cluster keeps {max} sweeps ([tasks] max_sweeps); wait for one to expire"
                ),
            )));
        }
    }
    tracing::info!(sweep_id = %sweep.id, trials = sweep.trials.len(), "sweep created");
    let answer = SweepAnswer {
        success: true,
        message: format!("Sweep created with {} trials", sweep.trials.len()),
        sweep: SweepView::of(&sweep, &[], true),
    };
    Ok(with_status(reply_json(&answer), StatusCode::CREATED).into_response())
}

/// A `POST /sweeps` body as a sweep (nothing stored), or every problem with it.
async fn parse<S: Store>(
    api: &Api<S>,
    content_type: &Option<String>,
    body: &[u8],
) -> Result<Sweep, ApiError> {
    let request: SweepRequest = parse_json(content_type, body)?;
    let mut problems = Vec::new();
    let name = request.name.clone().unwrap_or_else(|| "sweep".into());
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        problems.push(format!(
            "name must be 1 to {MAX_NAME} letters, digits or -_. ; got {name:?}"
        ));
    }
    let Some(model_name) = request.model_type.clone() else {
        return Err(invalid(vec![
            "model_type is required (mlp, linear or gbdt)".into(),
        ]));
    };
    let mut fixed = match request.request.clone().unwrap_or_else(|| json!({})) {
        Value::Object(fixed) => fixed,
        _ => {
            return Err(invalid(vec![
                "request must be a JSON object: the body of POST /train/{model_type}/async".into(),
            ]));
        }
    };
    if let Some(dataset) = &request.dataset {
        fixed.insert("dataset".into(), json!(dataset));
    }
    let metric = match request.metric.as_deref() {
        None => ValMetric::ValLoss,
        Some(name) => ValMetric::parse(name).unwrap_or_else(|| {
            problems.push(format!(
                "metric must be one of {}, got {name:?}",
                ValMetric::NAMES.join(", ")
            ));
            ValMetric::ValLoss
        }),
    };
    let mode = match request.mode.as_deref() {
        None if metric.higher_is_better() => Mode::Max,
        None => Mode::Min,
        Some("min") => Mode::Min,
        Some("max") => Mode::Max,
        Some(other) => {
            problems.push(format!("mode must be min or max, got {other:?}"));
            Mode::Min
        }
    };
    let strategy = match request.strategy.as_deref() {
        None | Some("random") => Strategy::Random,
        Some("grid") => Strategy::Grid,
        Some(other) => {
            problems.push(format!("strategy must be random or grid, got {other:?}"));
            Strategy::Random
        }
    };
    let parallel = request.parallel.unwrap_or(DEFAULT_PARALLEL);
    if parallel == 0 || parallel > MAX_PARALLEL {
        problems.push(format!(
            "parallel must be between 1 and {MAX_PARALLEL}, got {parallel}"
        ));
    }
    if let Some(priority) = request.priority
        && priority > 9
    {
        problems.push(format!("priority must be between 0 and 9, got {priority}"));
    }
    let validation = request.validation_fraction.unwrap_or(DEFAULT_VALIDATION);
    if !(validation > 0.0 && validation < 1.0) {
        problems.push(format!(
            "validation_fraction must be above 0 and below 1, got {validation}"
        ));
    }
    let asha = parse_asha(request.early_stopping.as_ref(), &mut problems);
    let train_body = Bytes::from(serde_json::to_vec(&fixed).expect("JSON values serialize"));
    let json_type = Some("application/json".to_string());
    let template = match build_task(api, &model_name, &json_type, &train_body).await {
        Ok(task) if matches!(task.model_type, ModelType::All | ModelType::Noop) => {
            problems.push(format!(
                "model_type must be one model that learns (mlp, linear or gbdt), not {}",
                task.model_type
            ));
            None
        }
        Ok(task) => Some(task),
        Err(e) => {
            problems.push(format!("request: {}", e.message));
            None
        }
    };
    let model_type = template.as_ref().map_or(ModelType::Mlp, |t| t.model_type);
    // ASHA's resource is the trial's length: every trial trains up to max_resource.
    let mut template = template;
    if let (Some(asha), Some(task)) = (asha, &mut template) {
        let (asked, length) = if model_type == ModelType::Gbdt {
            let asked = fixed
                .get("gbdt")
                .and_then(|g| g.get("n_trees"))
                .and_then(Value::as_u64);
            (
                asked.map(|n| ("request.gbdt.n_trees", n)),
                &mut task.spec.gbdt.n_trees,
            )
        } else {
            let asked = fixed.get("epochs").and_then(Value::as_u64);
            (asked.map(|n| ("request.epochs", n)), &mut task.spec.epochs)
        };
        match asked {
            Some((key, n)) if n != asha.max_resource => problems.push(format!(
                "{key} ({n}) must be left out or be early_stopping.asha.max_resource ({})",
                asha.max_resource
            )),
            _ => *length = asha.max_resource.min(u32::MAX as u64) as u32,
        }
    }
    let space = match &request.space {
        None => {
            problems.push("space is required: at least one parameter to search".into());
            None
        }
        Some(space) => Space::parse(space, model_type)
            .map_err(|p| problems.extend(p))
            .ok(),
    };
    if let (Some(space), Some(_)) = (&space, asha) {
        let resource = if model_type == ModelType::Gbdt {
            "n_trees"
        } else {
            "epochs"
        };
        if space.has(resource) {
            problems.push(format!(
                "space.{resource}: with early stopping every trial trains up to max_resource"
            ));
        }
    }
    let params: Vec<Map<String, Value>> = match (&space, strategy) {
        (Some(space), Strategy::Random) => {
            let trials = request.trials.unwrap_or(DEFAULT_TRIALS);
            if trials == 0 || trials > MAX_TRIALS {
                problems.push(format!(
                    "trials must be between 1 and {MAX_TRIALS}, got {trials}"
                ));
                Vec::new()
            } else {
                space.sample(trials as usize, request.seed.unwrap_or(0))
            }
        }
        (Some(space), Strategy::Grid) => match space.grid_size() {
            Err(problem) => {
                problems.push(problem);
                Vec::new()
            }
            Ok(size) if size > MAX_TRIALS as usize => {
                problems.push(format!(
                    "the grid has {size} points, more than {MAX_TRIALS}"
                ));
                Vec::new()
            }
            Ok(size) => match request.trials {
                Some(trials) if trials as usize != size => {
                    problems.push(format!(
                        "trials ({trials}) must be left out or be the grid's {size} points"
                    ));
                    Vec::new()
                }
                _ => space.grid(),
            },
        },
        (None, _) => Vec::new(),
    };
    let Some(mut template) = template else {
        return Err(invalid(problems));
    };
    template.spec.validation_fraction = Some(validation);
    if let Some(priority) = request.priority {
        template.priority = priority;
    }
    // Each trial's training is checked as a submission would be.
    for (i, set) in params.iter().enumerate() {
        let mut spec = template.spec.clone();
        crate::sweeps::space::apply(set, &mut spec);
        if let Err(crate::training::TrainError::InvalidSpec { problems: found }) = spec.validate() {
            problems.extend(found.into_iter().map(|p| format!("trials[{i}]: {p}")));
        }
    }
    let register = request.register.map(|mut rule| {
        problems.extend(rule.problems());
        // Compared on the sweep's own metric unless the rule names one.
        if rule.metric.is_none() {
            rule.metric = Some(metric.as_str().to_string());
            rule.mode = rule.mode.or(Some(match mode {
                Mode::Min => MetricMode::Min,
                Mode::Max => MetricMode::Max,
            }));
        }
        rule
    });
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let now = now_s();
    Ok(Sweep {
        id: Uuid::now_v7(),
        name,
        model_type,
        strategy,
        metric,
        mode,
        asha,
        parallel,
        seed: request.seed.unwrap_or(0),
        request: request.request.unwrap_or_else(|| json!({})),
        space: request.space.unwrap_or_else(|| json!({})),
        template,
        trials: params
            .into_iter()
            .enumerate()
            .map(|(i, params)| Trial {
                trial: i as u32,
                params,
                state: TrialState::Waiting,
                task_id: None,
                resource: None,
                metric: None,
                test_r2: None,
            })
            .collect(),
        state: SweepState::Running,
        created_at: now,
        keep_s: api.result_expires_s,
        finished_at: None,
        expires_at: None,
        cancel_requested: false,
        register,
        registered: None,
        version: 1,
    })
}

/// `early_stopping`: none, or `{"asha": {...}}` with every bound checked.
fn parse_asha(value: Option<&Value>, problems: &mut Vec<String>) -> Option<Asha> {
    let value = value.filter(|v| !v.is_null())?;
    let Some(asha) = value
        .get("asha")
        .filter(|_| value.as_object().is_some_and(|o| o.len() == 1))
    else {
        problems.push("early_stopping must be {\"asha\": {...}} or null".into());
        return None;
    };
    let field = |name: &str, default: Option<u64>| -> Option<u64> {
        match asha.get(name) {
            None => default,
            Some(v) => v.as_u64(),
        }
    };
    let (min, max, rf) = (
        field("min_resource", Some(1)),
        field("max_resource", None),
        field("reduction_factor", Some(3)),
    );
    let known = ["min_resource", "max_resource", "reduction_factor"];
    if let Some(object) = asha.as_object() {
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            problems.push(format!("early_stopping.asha.{key}: unknown field"));
        }
    }
    match (min, max, rf) {
        (Some(min), Some(max), Some(rf)) if min >= 1 && max > min && rf >= 2 => Some(Asha {
            min_resource: min,
            max_resource: max,
            reduction_factor: rf,
        }),
        _ => {
            problems.push(
                "early_stopping.asha needs whole numbers: min_resource >= 1 (default 1), \
                 max_resource > min_resource, reduction_factor >= 2 (default 3)"
                    .into(),
            );
            None
        }
    }
}

fn invalid(problems: Vec<String>) -> ApiError {
    let mut error = ApiError::invalid("invalid_sweep", problems.join("; "));
    error.extra = Some(json!({ "problems": problems }));
    error
}

/// `GET /sweeps`: every sweep kept, newest first, without their trials.
pub async fn list<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let mut sweeps = api.store.sweeps().await.map_err(reject)?;
    sweeps.reverse();
    let sweeps = sweeps
        .iter()
        .map(|s| SweepView::of(s, &[], false))
        .collect();
    Ok(reply_json(&SweepList { sweeps }).into_response())
}

async fn find<S: Store>(api: &Api<S>, raw_id: &str) -> Result<Sweep, ApiError> {
    let id = parse_id(raw_id, "sweep")?;
    api.store.get_sweep(id).await?.ok_or_else(|| {
        ApiError::not_found("sweep_not_found", format!("no sweep {id} (or it expired)"))
    })
}

/// `GET /sweeps/{id}`: the sweep with every trial and its rung results.
pub async fn show<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let sweep = find(&api, &id).await.map_err(reject)?;
    let rungs = api.store.rungs(sweep.id).await.map_err(reject)?;
    Ok(reply_json(&SweepView::of(&sweep, &rungs, true)).into_response())
}

/// `POST /sweeps/{id}/cancel`: no more trials start, the running ones are revoked; 409 if
/// the sweep has ended.
pub async fn cancel<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let mut tries = 0;
    let sweep = loop {
        let mut sweep = find(&api, &id).await.map_err(reject)?;
        if sweep.state != SweepState::Running {
            return Err(reject(ApiError::new(
                StatusCode::CONFLICT,
                "sweep_finished",
                format!(
                    "sweep {} already ended as {}",
                    sweep.id,
                    sweep.state.as_str()
                ),
            )));
        }
        if sweep.cancel_requested {
            break sweep;
        }
        sweep.cancel_requested = true;
        sweep.version += 1;
        let event = json!({"type": "cancel_requested", "sweep_id": sweep.id}).to_string();
        if api
            .store
            .update_sweep(&sweep, &[event])
            .await
            .map_err(reject)?
        {
            break sweep;
        }
        tries += 1;
        if tries >= CANCEL_TRIES {
            return Err(reject(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sweep_busy",
                "the sweep kept changing; try again",
            )));
        }
    };
    // The running trials stop now; the leader revokes the rest and ends the sweep.
    for task_id in sweep
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .filter_map(|t| t.task_id)
    {
        if let CancelOutcome::Running { trainer, .. } =
            api.store.cancel(task_id).await.map_err(reject)?
            && let Some(trainer) = groups::trainer(&trainer)
        {
            let _ = trainer.cast(TrainerMsg::Cancel { id: task_id });
        }
    }
    tracing::info!(sweep_id = %sweep.id, "sweep cancel requested");
    let answer = SweepAnswer {
        success: true,
        message: "Sweep is stopping: no more trials start, the running ones are revoked".into(),
        sweep: SweepView::of(&sweep, &[], true),
    };
    Ok(with_status(reply_json(&answer), StatusCode::ACCEPTED).into_response())
}

/// `GET /sweeps/{id}/events`: the sweep's events (`created`, `trial_started`, `rung`,
/// `trial_ended`, `cancel_requested`, `end`) from the first, or after `Last-Event-ID` (an
/// event's number); the stream ends after `end`.
pub async fn events<S: Store>(
    raw_id: String,
    last_event_id: Option<String>,
    client: Option<IpAddr>,
    api: Arc<Api<S>>,
) -> Reply_ {
    let mut after = match last_event_id {
        None => 0,
        Some(raw) => raw.trim().parse::<u64>().map_err(|_| {
            reject(ApiError::bad_request(
                "invalid_event_id",
                format!("Last-Event-ID {raw:?} is not a sweep event number"),
            ))
        })?,
    };
    let permit = api.limits.open_stream(client).map_err(reject)?;
    let sweep = find(&api, &raw_id).await.map_err(reject)?;
    let (tx, rx) = mpsc::channel(64);
    let store = api.store.clone();
    let mut stop = api.stopping.clone();
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let logged = store
                .sweep_events(sweep.id, after, EVENTS_BATCH)
                .await
                .unwrap_or_default();
            let mut ended = false;
            for event in &logged {
                let kind = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "sweep".into());
                ended |= kind == "end";
                let message = SseEvent::default()
                    .id(event.seq.to_string())
                    .event(kind)
                    .data(event.data.clone());
                if tx.send(message).await.is_err() {
                    return;
                }
                after = event.seq;
            }
            if ended {
                return;
            }
            if logged.len() == EVENTS_BATCH {
                continue;
            }
            // A sweep that ended (or expired) before the client came has nothing more.
            if logged.is_empty()
                && !matches!(store.get_sweep(sweep.id).await, Ok(Some(s)) if s.state == SweepState::Running)
                && store
                    .sweep_events(sweep.id, after, 1)
                    .await
                    .unwrap_or_default()
                    .is_empty()
            {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(EVENTS_EVERY) => {}
                () = tx.closed() => return,
                _ = stop.wait_for(|stopping| *stopping) => return,
            }
        }
    });
    Ok(super::events::reply(rx))
}
