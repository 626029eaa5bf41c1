//! The model registry and the result cache over real HTTP against real `trainyard up`
//! processes, on both stores: registering, aliases, deletes and their refusals, predictions
//! by name, version and alias (also on other nodes of the same store, and after the task
//! expired), schedules that register and promote, and `"cache": true`.

mod common;

use std::time::Duration;

use common::{Node, TestStore, poll};
use serde_json::{Value, json};
use trainyard_testkit::metrics::sum;

const LONG: Duration = Duration::from_secs(120);
const REGISTRATIONS: &str = "trainyard_model_registrations_total";
const LOOKUPS: &str = "trainyard_result_cache_lookups_total";

/// A quick linear training, told apart by its seed.
fn quick(seed: u64) -> Value {
    json!({"epochs": 5, "learning_rate": 0.01, "seed": seed})
}

fn rows() -> Value {
    json!({"rows": [vec![0.5; 8], vec![0.1; 8]]})
}

fn put(node: &Node, path: &str, body: Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(&body).unwrap();
    node.request(
        "PUT",
        path,
        &[],
        Some((Some("application/json"), bytes.as_slice())),
    )
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

/// Registering checks its body (every problem listed), the task and its state; versions
/// count 1, 2, 3...; aliases move; a version an alias points at is not deleted; predictions
/// come from the newest version, a version or an alias, and outlive the task.
fn models_are_registered_aliased_served_and_deleted(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__RESULT_EXPIRES_S", "8")]);
    let first = node.submit("linear", quick(1));
    let second = node.submit("linear", quick(2));
    node.wait_for(&first, "SUCCESS", LONG);
    node.wait_for(&second, "SUCCESS", LONG);

    let (status, answer) = node.post("/models", json!({}));
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_parameters"),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("name is required") && message.contains("task_id is required"));
    let (status, answer) = node.post("/models", json!({"name": "a b", "task_id": "x"}));
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_parameters"),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("name must be") && message.contains("not a UUID"),
        "{message}"
    );
    let uuid = "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d";
    let (status, answer) = node.post("/models", json!({"name": uuid, "task_id": first}));
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_parameters"),
        "{answer}"
    );
    let (status, answer) = node.post("/models", json!({"name": "prices", "task_id": uuid}));
    assert_eq!((status, code(&answer)), (404, "task_not_found"), "{answer}");
    let (status, answer) = node.post("/models", json!({"name": "prices", "extra": 1}));
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_request"),
        "{answer}"
    );
    let revoked = node.submit("mlp", json!({"epochs": 100000}));
    node.post(&format!("/task/{revoked}/cancel"), json!({}));
    node.wait_for(&revoked, "REVOKED", LONG);
    let (status, answer) = node.post("/models", json!({"name": "prices", "task_id": revoked}));
    assert_eq!(
        (status, code(&answer)),
        (409, "model_not_ready"),
        "{answer}"
    );

    for (task, number) in [(&first, 1), (&second, 2)] {
        let (status, answer) = node.post("/models", json!({"name": "prices", "task_id": task}));
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["version"]["version"], number);
        assert_eq!(answer["version"]["task_id"], task.as_str());
    }
    let (_, list) = node.get("/models");
    assert_eq!(list["count"], 1);
    assert_eq!(list["models"][0]["latest_version"], 2);
    let (status, model) = node.get("/models/prices");
    assert_eq!(status, 200, "{model}");
    let v1 = &model["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["spec"]["seed"], 1);
    assert_eq!(v1["model_type"], "linear");
    assert!(v1["metrics"]["test_r2"].is_f64(), "{v1}");
    assert!(v1["registered_at"].as_f64().unwrap() > 0.0);
    let (status, answer) = node.get("/models/nothing");
    assert_eq!((status, code(&answer)), (404, "model_not_found"));

    let (status, answer) = put(
        &node,
        "/models/prices/aliases/production",
        json!({"version": 1}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["previous"], Value::Null);
    let (status, answer) = put(
        &node,
        "/models/prices/aliases/staging",
        json!({"version": 9}),
    );
    assert_eq!(
        (status, code(&answer)),
        (404, "version_not_found"),
        "{answer}"
    );
    let (status, answer) = put(&node, "/models/prices/aliases/a.b", json!({}));
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_parameters"),
        "{answer}"
    );
    let (status, answer) = put(
        &node,
        "/models/nothing/aliases/production",
        json!({"version": 1}),
    );
    assert_eq!(
        (status, code(&answer)),
        (404, "model_not_found"),
        "{answer}"
    );

    let predict = |path: &str| {
        let (status, answer) = node.post(path, rows());
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    };
    let by_task = predict(&format!("/models/{first}/predict"));
    let latest = predict("/models/prices/predict");
    assert_eq!(
        (latest["name"].as_str(), latest["version"].as_u64()),
        (Some("prices"), Some(2))
    );
    let v1 = predict("/models/prices/versions/1/predict");
    assert_eq!(v1["predictions"], by_task["predictions"]);
    assert_eq!(v1["task_id"], first.as_str());
    let production = predict("/models/prices/aliases/production/predict");
    assert_eq!(production["version"], 1);
    assert_eq!(production["predictions"], by_task["predictions"]);
    for (path, expected) in [
        ("/models/prices/aliases/staging/predict", "alias_not_found"),
        ("/models/prices/versions/7/predict", "version_not_found"),
        ("/models/prices/versions/x/predict", "version_not_found"),
        ("/models/nothing/predict", "model_not_found"),
    ] {
        let (status, answer) = node.post(path, rows());
        assert_eq!((status, code(&answer)), (404, expected), "{path}: {answer}");
    }

    let (status, answer) = node.delete("/models/prices/versions/1");
    assert_eq!(
        (status, code(&answer)),
        (409, "version_aliased"),
        "{answer}"
    );
    assert_eq!(answer["error"]["aliases"], json!(["production"]));
    let (status, answer) = node.delete("/models/prices/versions/2");
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = node.delete("/models/prices/versions/2");
    assert_eq!(
        (status, code(&answer)),
        (404, "version_not_found"),
        "{answer}"
    );
    assert_eq!(predict("/models/prices/predict")["version"], 1);

    // The task's result expires; its registered copy does not.
    poll(LONG, "the task to expire", || {
        let (status, _) = node.get(&format!("/task/{first}/status"));
        (status == 404).then_some(())
    });
    let (status, answer) = node.post(&format!("/models/{first}/predict"), rows());
    assert_eq!((status, code(&answer)), (404, "task_expired"));
    let production = predict("/models/prices/aliases/production/predict");
    assert_eq!(production["predictions"], by_task["predictions"]);
    let text = node.metrics_text();
    assert_eq!(sum(&text, REGISTRATIONS, "source", "api"), 2.0, "{text}");
    assert_eq!(sum(&text, REGISTRATIONS, "promoted", "true"), 0.0, "{text}");
}

/// Waits until the node indexed `n` results for the result cache (the trainer writes the
/// index just after the result).
fn indexed(node: &Node, n: u64) {
    poll(LONG, "the result to be indexed", || {
        (node.store_calls("remember_result") >= n).then_some(())
    });
}

/// `"cache": true` with the same spec (time limit aside), data and seed answers SUCCESS at
/// once with the earlier result and model; another seed, or a changed re-upload of the data,
/// trains; without `cache` nothing is looked up, and the result is not kept for the cache.
fn cached_requests_are_answered_without_training(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let unasked = node.submit("linear", quick(3));
    node.wait_for(&unasked, "SUCCESS", LONG);
    let mut fill = quick(3);
    fill["cache"] = json!(true);
    let first = node.submit("linear", fill);
    node.wait_for(&first, "SUCCESS", LONG);
    indexed(&node, 1);
    let (_, earlier) = node.get(&format!("/task/{first}/result"));

    let mut cached = quick(3);
    cached["cache"] = json!(true);
    cached["time_limit_s"] = json!(600.0);
    let (status, answer) = node.post("/train/linear/async", cached.clone());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["cached_from"], first.as_str());
    let copy = answer["task_id"].as_str().unwrap().to_string();
    assert_ne!(copy, first);
    let (_, result) = node.get(&format!("/task/{copy}/result"));
    assert_eq!(result["state"], "SUCCESS");
    assert_eq!(result["cached_from"], first.as_str());
    assert_eq!(result["result"], earlier["result"]);
    let (_, detail) = node.get(&format!("/task/{copy}"));
    assert_eq!(detail["cached_from"], first.as_str());
    let (status, p) = node.post(&format!("/models/{copy}/predict"), rows());
    let (_, q) = node.post(&format!("/models/{first}/predict"), rows());
    assert_eq!((status, &p["predictions"]), (200, &q["predictions"]));
    // The synchronous route answers at once too.
    let (status, sync) = node.post("/train/linear?wait_s=5", cached.clone());
    assert_eq!(
        (status, &sync["cached_from"]),
        (200, &json!(first)),
        "{sync}"
    );

    // Another seed misses, and trains.
    let mut other = quick(4);
    other["cache"] = json!(true);
    let (_, answer) = node.post("/train/linear/async", other);
    assert!(answer.get("cached_from").is_none(), "{answer}");

    // Uploaded data: the same content hits under another upload, changed content misses.
    let upload = |csv: &str| {
        let (status, answer) = node.post_raw(
            "/datasets?name=prices&target=y",
            Some("text/csv"),
            csv.as_bytes(),
        );
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["dataset"]["sha256"].as_str().map(str::len), Some(64));
        answer["dataset_id"].as_str().unwrap().to_string()
    };
    let csv: String = std::iter::once("a,y\n".to_string())
        .chain((0..100).map(|i| format!("{},{}\n", i as f32 / 100.0, i as f32 / 50.0)))
        .collect();
    let (one, same) = (upload(&csv), upload(&csv));
    let changed = upload(&csv.replace("0.5,1", "0.5,7"));
    let on = |dataset: &str| json!({"epochs": 3, "seed": 5, "dataset": dataset, "cache": true});
    let trained = node.submit("linear", on(&one));
    node.wait_for(&trained, "SUCCESS", LONG);
    indexed(&node, 3);
    let (_, hit) = node.post("/train/linear/async", on(&same));
    assert_eq!(hit["cached_from"], trained.as_str(), "{hit}");
    let (_, miss) = node.post("/train/linear/async", on(&changed));
    assert!(miss.get("cached_from").is_none(), "{miss}");
    let text = node.metrics_text();
    assert_eq!(sum(&text, LOOKUPS, "outcome", "hit"), 3.0, "{text}");
    assert_eq!(sum(&text, LOOKUPS, "outcome", "miss"), 4.0, "{text}");
}

/// A schedule's `register` registers each success and moves its alias only to a version
/// that beats the one it points at.
fn schedules_register_and_promote_only_better_models(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let (status, answer) = node.post(
        "/schedules",
        json!({"name": "bad", "cron": "* * * * * *", "model_type": "linear",
               "register": {"name": "a b", "promote_alias": "12"}}),
    );
    assert_eq!(
        (status, code(&answer)),
        (422, "invalid_schedule"),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("register.name") && message.contains("register.promote_alias"));
    // A schedule that fires every second, registering into "nightly".
    let (status, answer) = node.post(
        "/schedules",
        json!({"name": "every-second", "cron": "* * * * * *", "model_type": "linear",
               "request": {"epochs": 3},
               "register": {"name": "nightly", "promote_alias": "production",
                            "metric": "test_rmse"}}),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["schedule"]["register"]["name"], "nightly");
    let model = poll(LONG, "two registered versions", || {
        let (status, model) = node.get("/models/nightly");
        (status == 200 && model["versions"].as_array().unwrap().len() >= 2).then_some(model)
    });
    node.post("/schedules/every-second/pause", json!({}));
    // Every firing trains the same spec and seed: the same rmse, so the first version took
    // the alias and no later one beat it.
    assert_eq!(model["aliases"]["production"], 1, "{model}");
    let text = node.metrics_text();
    assert_eq!(sum(&text, REGISTRATIONS, "promoted", "true"), 1.0, "{text}");
}

/// A model registered through one node of a three-node cluster (one Redis, the nodes joined
/// through the first) is listed and served by the others; the result cache is the cluster's.
#[test]
fn a_model_registered_on_one_node_is_served_by_the_others() {
    let store = TestStore::redis();
    let first = format!("127.0.0.1:{}", common::free_port());
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let name = format!("\"models-{i}\"");
            let mut env = vec![("TRAINYARD_NODE__NAME", name)];
            if i == 0 {
                env.push(("TRAINYARD_NODE__LISTEN", format!("\"{first}\"")));
            } else {
                env.push(("TRAINYARD_NODE__SEEDS", format!("[\"{first}\"]")));
            }
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Node::up(&store, 1, &env)
        })
        .collect();
    poll(LONG, "three connected nodes", || {
        let (_, answer) = nodes[0].get("/cluster/nodes");
        let nodes = answer["nodes"].as_array().cloned().unwrap_or_default();
        let connected = nodes.iter().filter(|n| n["connected"] == true).count();
        (connected == 3).then_some(())
    });
    let mut cached = quick(6);
    cached["cache"] = json!(true);
    let id = nodes[0].submit("linear", cached.clone());
    nodes[0].wait_for(&id, "SUCCESS", LONG);
    let (status, answer) = nodes[0].post("/models", json!({"name": "shared", "task_id": id}));
    assert_eq!(status, 201, "{answer}");
    let (status, _) = put(
        &nodes[1],
        "/models/shared/aliases/production",
        json!({"version": 1}),
    );
    assert_eq!(status, 200);
    let expected = nodes[0].post(&format!("/models/{id}/predict"), rows()).1["predictions"].clone();
    for node in &nodes {
        assert_eq!(node.get("/models").1["models"][0]["name"], "shared");
        let (status, p) = node.post("/models/shared/aliases/production/predict", rows());
        assert_eq!((status, &p["predictions"]), (200, &expected), "{p}");
    }
    // An equal request through another node is answered from the cache (the result is
    // indexed just after it is written; a miss trains an equal task, indexed the same way).
    let copy = poll(LONG, "an equal request answered from the cache", || {
        let (status, answer) = nodes[2].post("/train/linear/async", cached.clone());
        assert_eq!(status, 202, "{answer}");
        answer["cached_from"]
            .is_string()
            .then(|| answer["task_id"].clone())
    });
    let copy = copy.as_str().unwrap();
    let (_, result) = nodes[1].get(&format!("/task/{copy}/result"));
    assert_eq!(result["state"], "SUCCESS", "{result}");
    let (status, p) = nodes[1].post(&format!("/models/{copy}/predict"), rows());
    assert_eq!((status, &p["predictions"]), (200, &expected), "{p}");
}

fn cli(node: &Node, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(args)
        .args(["--server", &node.url])
        .output()
        .expect("trainyard runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `trainyard models ...` and `trainyard submit --cache` against a node.
#[test]
fn the_cli_registers_aliases_predicts_and_submits_cached() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let (ok, out, err) = cli(
        &node,
        &[
            "submit", "linear", "--epochs", "3", "--seed", "9", "--cache", "--wait", "--json",
        ],
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = cli(&node, &["models", "register", "cli-model", &id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "cli-model version 1");
    let (ok, out, err) = cli(&node, &["models", "alias", "cli-model", "production", "1"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "cli-model production -> version 1");
    let (ok, out, _) = cli(&node, &["models", "list"]);
    assert!(
        ok && out.contains("cli-model") && out.contains("production=1"),
        "{out}"
    );
    let (ok, out, _) = cli(&node, &["models", "show", "cli-model"]);
    assert!(ok && out.contains(&id) && out.contains("test_r2="), "{out}");
    let row = "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5";
    let (ok, by_alias, err) = cli(
        &node,
        &[
            "models",
            "predict",
            "cli-model",
            "--alias",
            "production",
            "--row",
            row,
        ],
    );
    assert!(ok, "{err}");
    let (_, by_task, _) = cli(&node, &["predict", &id, "--row", row]);
    assert_eq!(by_alias, by_task);
    let (ok, _, err) = cli(&node, &["models", "delete", "cli-model", "1"]);
    assert!(!ok && err.contains("version_aliased"), "{err}");
    let (ok, _, err) = cli(&node, &["models", "show", "nothing"]);
    assert!(!ok && err.contains("model_not_found"), "{err}");
    indexed(&node, 1);
    let (ok, out, err) = cli(
        &node,
        &[
            "submit", "linear", "--epochs", "3", "--seed", "9", "--cache", "--json",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["cached_from"],
        id.as_str()
    );
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[test] fn $name() { super::$name(super::TestStore::embedded()) })*
        }
        mod redis {
            $(#[test] fn $name() { super::$name(super::TestStore::redis()) })*
        }
    };
}

on_both_stores!(
    models_are_registered_aliased_served_and_deleted,
    cached_requests_are_answered_without_training,
    schedules_register_and_promote_only_better_models,
);
