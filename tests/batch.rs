//! Batch submission (`POST /tasks`) and the `noop` model type over real HTTP, against a real
//! `trainyard up` process on each store: ids in order, all or nothing with every problem by
//! index, idempotency keys per item, the bound on items; no-op tasks that end SUCCESS with no
//! model, honour cancel and time limits, and are refused unless allowed.

mod common;

use std::time::Duration;

use common::{Node, TestStore, poll};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// A node that takes no-op tasks and batches of at most 5.
fn node(store: &TestStore) -> Node {
    Node::up(
        store,
        2,
        &[
            ("TRAINYARD_TASKS__ALLOW_NOOP", "true"),
            ("TRAINYARD_TASKS__MAX_BATCH", "5"),
        ],
    )
}

fn task_ids(answer: &Value) -> Vec<String> {
    answer["task_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no task_ids in {answer}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

/// How many tasks the node lists.
fn listed(node: &Node) -> u64 {
    let (status, list) = node.get("/tasks?limit=1000");
    assert_eq!(status, 200, "{list}");
    list["count"].as_u64().unwrap()
}

fn batches_are_stored_in_order_all_or_nothing(store: TestStore) {
    let node = node(&store);
    let (status, answer) = node.post(
        "/tasks",
        json!([
            {"model_type": "noop"},
            {"model_type": "linear", "epochs": 2, "priority": 3},
            {"model_type": "noop", "sleep_ms": 20},
            {"model_type": "xgboost", "gbdt": {"n_trees": 3}},
        ]),
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["replayed"], json!([]));
    let ids = task_ids(&answer);
    assert_eq!(ids.len(), 4);
    for (id, model) in ids.iter().zip(["noop", "linear", "noop", "gbdt"]) {
        let (status, task) = node.get(&format!("/task/{id}"));
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["model_type"], model, "{task}");
    }
    let (_, linear) = node.get(&format!("/task/{}", ids[1]));
    assert_eq!(linear["request"]["priority"], 3, "{linear}");
    let (_, gbdt) = node.get(&format!("/task/{}", ids[3]));
    assert_eq!(gbdt["requested_as"], "xgboost", "{gbdt}");
    for id in &ids {
        node.wait_for(id, "SUCCESS", LONG);
    }
    // A no-op's result is tiny, and it has no model to predict with.
    let (_, result) = node.get(&format!("/task/{}/result", ids[2]));
    assert_eq!(result["result"]["model_type"], "noop", "{result}");
    assert!(
        result["result"]["metrics"]["duration_s"].as_f64().unwrap() >= 0.02,
        "{result}"
    );
    let (status, answer) = node.post(
        &format!("/models/{}/predict", ids[0]),
        json!({"rows": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("no_model")),
        "{answer}"
    );

    // Any bad item: every problem by index, nothing stored.
    let before = listed(&node);
    let (status, answer) = node.post(
        "/tasks",
        json!([
        {"model_type": "linear"},
        {"model_type": "mlp", "epochs": 0, "priority": 12},
        {"model_type": "forest"},
        {"epochs": 3},
        {"model_type": "linear", "colour": "blue"},
        ]),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_parameters");
    let message = answer["error"]["message"].as_str().unwrap();
    for expected in [
        "items[1].epochs must be between",
        "items[1].priority must be between 0 and 9",
        "items[2].model_type: unknown model type",
        "items[3].model_type is missing",
        "items[4]: invalid request: unknown field `colour`",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    assert!(!message.contains("items[0]"), "{message}");
    assert_eq!(answer["error"]["problems"].as_array().unwrap().len(), 5);
    assert_eq!(listed(&node), before, "a refused batch stores nothing");

    // The bound on items, an empty batch, and a body that is not an array.
    let six: Vec<Value> = (0..6).map(|_| json!({"model_type": "noop"})).collect();
    let (status, answer) = node.post("/tasks", Value::Array(six));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "batch_too_large");
    assert_eq!(answer["error"]["limit"], 5);
    let (status, answer) = node.post("/tasks", json!([]));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_parameters"))
    );
    let (status, answer) = node.post("/tasks", json!({"model_type": "noop"}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    assert_eq!(listed(&node), before);

    // Idempotency keys per item.
    let (status, first) = node.post(
        "/tasks",
        json!([{"model_type": "noop", "idempotency_key": "batch-a"}]),
    );
    assert_eq!(status, 202, "{first}");
    let a = task_ids(&first)[0].clone();
    let (status, again) = node.post(
        "/tasks",
        json!([
            {"model_type": "noop", "idempotency_key": "batch-b"},
            {"model_type": "noop", "idempotency_key": "batch-a"},
            {"model_type": "noop", "idempotency_key": "batch-b"},
        ]),
    );
    assert_eq!(status, 202, "{again}");
    let again_ids = task_ids(&again);
    assert_eq!(again_ids[1], a, "the key's earlier task answers");
    assert_eq!(
        again_ids[2], again_ids[0],
        "a key repeated in a batch answers once"
    );
    assert_ne!(again_ids[0], a);
    assert_eq!(again["replayed"], json!([1, 2]));
    let stored = listed(&node);
    assert_eq!(stored, before + 2);
    // A key held by a different request refuses the whole batch.
    let (status, answer) = node.post(
        "/tasks",
        json!([
            {"model_type": "noop", "idempotency_key": "batch-c"},
            {"model_type": "noop", "sleep_ms": 5, "idempotency_key": "batch-a"},
        ]),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "idempotency_key_reused");
    // So does a key repeated with different requests within the batch.
    let (status, answer) = node.post(
        "/tasks",
        json!([
            {"model_type": "noop", "idempotency_key": "batch-d"},
            {"model_type": "noop", "sleep_ms": 5, "idempotency_key": "batch-d"},
        ]),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[1].idempotency_key repeats items[0]'s"),
        "{answer}"
    );
    assert_eq!(listed(&node), stored, "nothing stored");
}

fn noop_tasks_honour_cancel_and_time_limits(store: TestStore) {
    let node = node(&store);
    let sleeper = node.submit("noop", json!({"sleep_ms": 600000}));
    let limited = node.submit("noop", json!({"sleep_ms": 600000, "time_limit_s": 1.0}));
    poll(LONG, "the sleeper to start", || {
        (node.state(&sleeper) != "PENDING").then_some(())
    });
    let (status, answer) = node.post(&format!("/task/{sleeper}/cancel"), json!({}));
    assert_eq!(status, 202, "a running task is asked to stop: {answer}");
    node.wait_for(&sleeper, "REVOKED", LONG);
    node.wait_for(&limited, "FAILURE", LONG);
    let (_, result) = node.get(&format!("/task/{limited}/result"));
    assert_eq!(result["error"]["code"], "time_limit", "{result}");
    // sleep_ms is bounded, and for no-ops only.
    let (status, answer) = node.post("/train/noop/async", json!({"sleep_ms": 600001}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_parameters"))
    );
    let (status, answer) = node.post("/train/linear/async", json!({"sleep_ms": 5}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_parameters"))
    );
}

#[test]
fn noop_tasks_are_refused_unless_allowed() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let (status, answer) = node.post("/train/noop/async", json!({}));
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "noop_not_allowed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_noop"),
        "{answer}"
    );
    let (status, answer) = node.post("/tasks", json!([{"model_type": "noop"}]));
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[0]: the noop model type"),
        "{answer}"
    );
}

#[test]
fn batches_on_the_embedded_store() {
    batches_are_stored_in_order_all_or_nothing(TestStore::embedded());
}

#[test]
fn batches_on_redis() {
    batches_are_stored_in_order_all_or_nothing(TestStore::redis());
}

#[test]
fn noop_tasks_on_the_embedded_store() {
    noop_tasks_honour_cancel_and_time_limits(TestStore::embedded());
}

#[test]
fn noop_tasks_on_redis() {
    noop_tasks_honour_cancel_and_time_limits(TestStore::redis());
}
