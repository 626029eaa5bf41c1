//! The task routes: `GET /task/{id}/status` (the hottest), `/result`, `GET /task/{id}`,
//! `POST /task/{id}/cancel` and `GET /tasks`.

use std::sync::Arc;

use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::{Reply_, find, found, parse_id, reject};
use crate::actors::TrainerMsg;
use crate::actors::groups;
use crate::api::{
    CancelAnswer, ResultAnswer, ShownProgress, StatusAnswer, TaskDetail, TaskList, TaskSummary,
    TasksQuery,
};
use crate::http::{Api, ApiError, health};
use crate::store::{CancelOutcome, Lookup, Store, TaskFilter, TaskState, now_s};
use crate::telemetry::{self, TaskEvent};
use crate::training::ModelType;

pub async fn status<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let id = parse_id(&id, "task").map_err(reject)?;
    let lookup = api.store.status(id).await.map_err(reject)?;
    let task = found(id, lookup).map_err(reject)?;
    let waiting_for = match task.state {
        TaskState::Pending => health::waiting_for(&api, task.device).await,
        _ => None,
    };
    Ok(reply_json(&StatusAnswer {
        task_id: task.id,
        state: task.state,
        progress: ShownProgress::of(task.progress.as_ref(), task.state),
        attempt: task.attempt,
        waiting_for,
    })
    .into_response())
}

pub async fn result<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task = find(&api, &id).await.map_err(reject)?;
    Ok(reply_json(&ResultAnswer::of(&task)).into_response())
}

pub async fn cancel<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task_id = parse_id(&id, "task").map_err(reject)?;
    let outcome = api.store.cancel(task_id).await.map_err(reject)?;
    let (state, message) = match outcome {
        CancelOutcome::Revoked => (
            {
                if let Ok(Lookup::Found(task)) = api.store.get(task_id).await {
                    telemetry::task_event(TaskEvent::Revoked, task.model_type);
                }
                TaskState::Revoked
            },
            "Task revoked before it started".to_string(),
        ),
        CancelOutcome::Running { trainer, .. } => {
            // Straight to the trainer, on whichever node; it also sees the flag when it renews
            // its lease.
            if let Some(trainer) = groups::trainer(&trainer) {
                let _ = trainer.cast(TrainerMsg::Cancel { id: task_id });
            }
            (TaskState::Progress, "Task is stopping".to_string())
        }
        CancelOutcome::AlreadyFinished(state) => {
            let error = ApiError::new(
                StatusCode::CONFLICT,
                "task_finished",
                format!("task {task_id} already ended as {}", state.as_str()),
            );
            return Err(reject(error));
        }
        CancelOutcome::Expired => {
            return Err(reject(ApiError::not_found(
                "task_expired",
                format!("task {task_id} finished and its result expired"),
            )));
        }
        CancelOutcome::Missing => {
            return Err(reject(ApiError::not_found(
                "task_not_found",
                format!("task {task_id} not found"),
            )));
        }
    };
    Ok(with_status(
        reply_json(&CancelAnswer {
            success: true,
            task_id,
            state,
            message,
        }),
        StatusCode::ACCEPTED,
    )
    .into_response())
}

pub async fn tasks<S: Store>(api: Arc<Api<S>>, query: TasksQuery) -> Reply_ {
    let mut problems = Vec::new();
    let state = query.state.as_deref().and_then(|s| {
        let parsed = TaskState::parse(s);
        if parsed.is_none() {
            problems.push(format!(
                "state {s:?} is not one of PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, REVOKED"
            ));
        }
        parsed
    });
    let model_type = query
        .model_type
        .as_deref()
        .and_then(|m| m.parse::<ModelType>().map_err(|e| problems.push(e)).ok());
    let limit = match query.limit.as_deref().map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            problems.push("limit must be a whole number from 1 to 1000".into());
            0
        }
    };
    if !problems.is_empty() {
        return Err(reject(ApiError::bad_request(
            "invalid_query",
            problems.join("; "),
        )));
    }
    let found = api
        .store
        .list(&TaskFilter {
            state,
            model_type,
            node: query.node,
            limit,
        })
        .await
        .map_err(reject)?;
    let tasks: Vec<TaskSummary> = found.iter().map(TaskSummary::of).collect();
    Ok(reply_json(&TaskList {
        success: true,
        count: tasks.len(),
        tasks,
    })
    .into_response())
}

/// `GET /task/{id}`: everything known about a task (what Flower's task page showed): the
/// request, state, progress, each attempt with its node and trainer, timings and the outcome.
pub async fn inspect<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task = find(&api, &id).await.map_err(reject)?;
    let waiting_for = match task.state {
        TaskState::Pending => health::waiting_for(&api, task.device).await,
        _ => None,
    };
    Ok(reply_json(&TaskDetail::of(&task, waiting_for, now_s())).into_response())
}
