//! The old FastAPI + Celery service's documented calls, verbatim
//! (`../shared/old-stack-celery-guide.txt`, "API Endpoints"): its model names, bodies, paths
//! and the fields its clients read.

mod common;

use std::time::Duration;

use common::{Node, TestStore, poll};
use serde_json::{Value, json};

/// The guide's request body, as written.
fn guide_body() -> Value {
    json!({
      "epochs": 500,
      "learning_rate": 0.001,
      "hidden_sizes": [64, 32, 16]
    })
}

fn assert_submitted(answer: &Value, model_type: &str) {
    assert_eq!(answer["success"], true, "{answer}");
    assert!(answer["task_id"].as_str().is_some_and(|id| id.len() == 36));
    assert_eq!(
        answer["message"],
        format!("Training task submitted for {model_type}")
    );
    assert_eq!(answer["model_type"], model_type);
}

fn every_documented_call_works_as_written(store: TestStore) {
    let node = Node::up(&store, 2, &[]);

    // GET /celery/health
    let (status, health) = node.get("/celery/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["success"], true);
    assert_eq!(health["celery_status"], "connected");
    assert_eq!(health["worker_response"]["status"], "healthy");
    assert_eq!(
        health["worker_response"]["message"],
        "Celery worker is operational"
    );

    // POST /train/{model_type}/async, for each documented model_type.
    let mut tasks = Vec::new();
    for model_type in ["tensorflow", "pytorch", "xgboost", "all"] {
        let (status, answer) = node.post(&format!("/train/{model_type}/async"), guide_body());
        assert_eq!(status, 202, "{model_type}: {answer}");
        assert_submitted(&answer, model_type);
        tasks.push((model_type, answer["task_id"].as_str().unwrap().to_string()));
    }

    // GET /task/{task_id}/status: a documented state, and progress as documented while it
    // trains.
    let (_, first) = &tasks[0];
    let progress = poll(
        Duration::from_secs(120),
        "the tensorflow task's progress",
        || {
            let (status, answer) = node.get(&format!("/task/{first}/status"));
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["task_id"], first.as_str());
            let state = answer["state"].as_str().unwrap().to_string();
            assert!(
                ["PENDING", "STARTED", "PROGRESS", "SUCCESS"].contains(&state.as_str()),
                "{answer}"
            );
            (state == "PROGRESS").then(|| answer["progress"].clone())
        },
    );
    assert_eq!(progress["total"], 500, "{progress}");
    for field in ["current", "percent"] {
        assert!(progress[field].is_number(), "{field}: {progress}");
    }
    assert!(
        progress["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Training epoch ")),
        "{progress}"
    );

    // GET /task/{task_id}/result, once each ends.
    for (model_type, id) in &tasks {
        node.wait_for(id, "SUCCESS", Duration::from_secs(300));
        let (status, answer) = node.get(&format!("/task/{id}/result"));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["success"], true);
        assert_eq!(answer["state"], "SUCCESS");
        let result = &answer["result"];
        assert_eq!(result["success"], true, "{answer}");
        assert_eq!(result["model_type"], *model_type);
        if *model_type != "all" {
            assert_eq!(
                result["message"],
                format!("{} model trained successfully", model_type.to_uppercase())
            );
            for metric in ["train_r2", "test_r2", "train_rmse", "test_rmse"] {
                assert!(result["metrics"][metric].is_number(), "{metric}: {answer}");
            }
        }
        // What actually trained is in the task's own page.
        let (_, task) = node.get(&format!("/task/{id}"));
        let trained = match *model_type {
            "tensorflow" | "pytorch" => "mlp",
            "xgboost" => "gbdt",
            _ => "all",
        };
        assert_eq!(task["model_type"], trained, "{task}");
        if *model_type != "all" {
            assert_eq!(task["requested_as"], *model_type, "{task}");
        }
    }
    let (_, result) = node.get(&format!("/task/{first}/result"));
    assert!(
        result["result"]["metrics"]["final_loss"].is_number(),
        "{result}"
    );

    // POST /train/{model_type}: blocks until the training ends.
    let (status, answer) = node.post("/train/pytorch", json!({"epochs": 5}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "SUCCESS", "{answer}");
    assert_eq!(answer["result"]["model_type"], "pytorch");
    assert_eq!(
        answer["result"]["message"],
        "PYTORCH model trained successfully"
    );
}

#[test]
fn the_old_guide_s_calls_work_verbatim_on_the_embedded_store() {
    every_documented_call_works_as_written(TestStore::embedded());
}

#[test]
fn the_old_guide_s_calls_work_verbatim_on_redis() {
    every_documented_call_works_as_written(TestStore::redis());
}
