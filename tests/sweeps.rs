//! Hyperparameter sweeps end to end on one node: a real `trainyard up` process, real HTTP.
//! Validation lists every problem; a grid runs each point once; ASHA stops the worse trials at
//! their rungs (as a state that says so, freeing their trainers) and the best trial's model
//! answers predictions; the event stream tells it all in order; a cancel revokes the rest.
//! (Failover of the leader mid-sweep is in `tests/cluster.rs`.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Node, TestStore, poll, read_sse};
use serde_json::{Value, json};

/// Waits until sweep `id` has ended; returns it.
fn wait_ended(node: &Node, id: &str, timeout: Duration) -> Value {
    poll(timeout, "the sweep to end", || {
        let (status, sweep) = node.get(&format!("/sweeps/{id}"));
        assert_eq!(status, 200, "{sweep}");
        (sweep["state"] != "RUNNING").then_some(sweep)
    })
}

fn create(node: &Node, body: Value) -> String {
    let (status, created) = node.post("/sweeps", body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sweep"]["state"], "RUNNING");
    created["sweep"]["sweep_id"].as_str().unwrap().to_string()
}

#[test]
fn a_sweep_is_validated_and_every_problem_listed() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let (status, answer) = node.post(
        "/sweeps",
        json!({
            "name": "no spaces allowed",
            "model_type": "mlp",
            "request": {"epochs": 5},
            "space": {"learning_rate": {"loguniform": [0, 1]}, "n_trees": {"int": [1, 9]},
                      "dropout": {"uniform": [0, 1]}},
            "strategy": "sideways",
            "parallel": 0,
            "metric": "accuracy",
            "early_stopping": {"asha": {"min_resource": 10, "max_resource": 2}},
            "validation_fraction": 1.5,
            "register": {"name": "no spaces either", "promote_alias": "prod uction"},
        }),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_sweep");
    let problems: Vec<String> = answer["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    for needle in [
        "name",
        "strategy",
        "parallel",
        "metric",
        "early_stopping.asha",
        "validation_fraction",
        "space.learning_rate",
        "space.n_trees",
        "space.dropout",
        "register.name",
        "register.promote_alias",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle}: {problems:?}"
        );
    }
    // A trial whose drawn parameters break a training's bounds is named by index; a grid of
    // continuous parameters and a model of several types are refused; nothing is stored.
    let (status, answer) = node.post(
        "/sweeps",
        json!({"model_type": "mlp", "space": {"batch_size": {"choice": [16, 0]}},
               "strategy": "grid"}),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trials[1]: batch_size"),
        "{answer}"
    );
    let (status, answer) = node.post(
        "/sweeps",
        json!({"model_type": "all", "strategy": "grid",
               "space": {"learning_rate": {"uniform": [0.01, 0.1]}}}),
    );
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("not all"), "{answer}");
    let (_, list) = node.get("/sweeps");
    assert_eq!(list["sweeps"], json!([]));
    let (status, missing) = node.get("/sweeps/0190a0a0-0000-7000-8000-000000000000");
    assert_eq!(
        (status, missing["error"]["code"].clone()),
        (404, json!("sweep_not_found"))
    );
}

#[test]
fn a_grid_sweep_runs_each_point_once_and_its_best_trial_predicts() {
    let node = Node::up(&TestStore::embedded(), 2, &[]);
    let id = create(
        &node,
        json!({
            "name": "grid",
            "model_type": "linear",
            "dataset": "diabetes",
            "request": {"epochs": 3},
            "space": {"learning_rate": {"choice": [0.01, 0.05, 0.2]},
                      "batch_size": {"choice": [16, 64]}},
            "strategy": "grid",
            "parallel": 2,
            "register": {"name": "grid-best", "promote_alias": "production"},
        }),
    );
    let sweep = wait_ended(&node, &id, Duration::from_secs(120));
    assert_eq!(sweep["state"], "SUCCESS", "{sweep}");
    let trials = sweep["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let points: HashSet<String> = trials.iter().map(|t| t["params"].to_string()).collect();
    assert_eq!(points.len(), 6, "each point of the grid once: {sweep}");
    let tasks: HashSet<&str> = trials
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(tasks.len(), 6, "one task per trial");
    assert_eq!(sweep["counts"]["completed"], 6, "{sweep}");
    for t in trials {
        assert_eq!(t["state"], "SUCCESS", "{t}");
        assert_eq!(t["resource"], 3);
        assert!(t["latest_metric"].is_f64(), "{t}");
        let (_, task) = node.get(&format!("/task/{}", t["task_id"].as_str().unwrap()));
        assert_eq!(task["sweep"]["id"], json!(id), "{task}");
        assert_eq!(task["sweep"]["trial"], t["trial"]);
        let metrics = &task["result"]["metrics"];
        assert!(
            metrics["val_loss"].is_f64() && metrics["val_r2"].is_f64(),
            "{task}"
        );
        assert_eq!(metrics["val_loss"], t["latest_metric"]);
    }
    // The best is the lowest validation loss, and its task's model answers predictions.
    let best = &sweep["best"];
    let lowest = trials
        .iter()
        .map(|t| t["latest_metric"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best["metric"].as_f64().unwrap(), lowest, "{sweep}");
    let (status, predicted) = node.post(
        &format!("/models/{}/predict", best["task_id"].as_str().unwrap()),
        json!({"rows": [vec![0.01; 10]]}),
    );
    assert_eq!(status, 200, "{predicted}");
    // Registered once it ended: the best trial's model as version 1, the alias moved to it
    // (it pointed nowhere), compared on the sweep's own metric; predictions by alias.
    assert_eq!(
        sweep["registered"],
        json!({"name": "grid-best", "version": 1, "promoted": true}),
        "{sweep}"
    );
    assert_eq!(sweep["register"]["metric"], "val_loss");
    assert_eq!(sweep["register"]["mode"], "min");
    let (_, model) = node.get("/models/grid-best");
    assert_eq!(model["versions"].as_array().unwrap().len(), 1, "{model}");
    assert_eq!(model["versions"][0]["task_id"], best["task_id"], "{model}");
    assert_eq!(model["aliases"]["production"], 1, "{model}");
    let (status, by_alias) = node.post(
        "/models/grid-best/aliases/production/predict",
        json!({"rows": [vec![0.01; 10]]}),
    );
    assert_eq!(status, 200, "{by_alias}");
    assert_eq!(by_alias["predictions"], predicted["predictions"]);

    // The events, from the first: created, each trial's start and end, the end; in order.
    let (events, ended) = read_sse(&format!("{}/sweeps/{id}/events", node.url), None, |_| false);
    assert!(ended, "the stream ends after the sweep's end");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"created"));
    assert_eq!(kinds.last(), Some(&"end"));
    assert_eq!(kinds.iter().filter(|k| **k == "trial_started").count(), 6);
    assert_eq!(kinds.iter().filter(|k| **k == "trial_ended").count(), 6);
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(events.last().unwrap().data["best_task_id"], best["task_id"]);
    assert_eq!(
        events.last().unwrap().data["registered"],
        sweep["registered"]
    );
    // Resumed after an event: the ones after it, no more.
    let (tail, _) = read_sse(
        &format!("{}/sweeps/{id}/events", node.url),
        Some(&numbers[numbers.len() - 3].to_string()),
        |_| false,
    );
    assert_eq!(tail.len(), 2);

    // Listed, newest first, without its trials; a finished sweep cannot be cancelled.
    let (_, list) = node.get("/sweeps");
    assert_eq!(list["sweeps"][0]["sweep_id"], json!(id));
    assert!(list["sweeps"][0].get("trials").is_none());
    let (status, answer) = node.post(&format!("/sweeps/{id}/cancel"), json!({}));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("sweep_finished"))
    );
}

#[test]
fn asha_stops_the_worse_trials_at_their_rungs() {
    let node = Node::up(&TestStore::embedded(), 2, &[]);
    let id = create(
        &node,
        json!({
            "name": "asha",
            "model_type": "mlp",
            "dataset": "diabetes",
            "request": {"hidden_sizes": [16]},
            "space": {"learning_rate": {"choice": [0.00001, 0.0001, 0.003, 0.01, 0.03]},
                      "batch_size": {"choice": [16, 32]}},
            "trials": 12,
            "parallel": 2,
            "seed": 3,
            "early_stopping": {"asha": {"min_resource": 1, "max_resource": 9,
                                        "reduction_factor": 3}},
        }),
    );
    let sweep = wait_ended(&node, &id, Duration::from_secs(240));
    assert_eq!(sweep["state"], "SUCCESS", "{sweep}");
    let counts = &sweep["counts"];
    let stopped = counts["stopped_early"].as_u64().unwrap();
    assert!(stopped > 0, "some trials stop early: {sweep}");
    assert_eq!(
        counts["completed"].as_u64().unwrap() + stopped,
        12,
        "{sweep}"
    );
    assert!(
        sweep["resource_used"].as_u64().unwrap() < sweep["resource_full"].as_u64().unwrap(),
        "{sweep}"
    );
    for t in sweep["trials"].as_array().unwrap() {
        let rungs = t["rungs"].as_array().unwrap();
        let steps: Vec<u64> = rungs.iter().map(|r| r["step"].as_u64().unwrap()).collect();
        let (_, task) = node.get(&format!("/task/{}", t["task_id"].as_str().unwrap()));
        // A stopped trial is a task that succeeded with its model as it was at its rung.
        assert_eq!(task["state"], "SUCCESS", "{task}");
        if t["state"] == "STOPPED" {
            let last = rungs.last().unwrap();
            assert_eq!(last["decision"], "stop", "{t}");
            assert_eq!(t["resource"], last["step"], "{t}");
            assert_eq!(
                task["result"]["stopped_early"]["at"], last["step"],
                "{task}"
            );
            assert!(
                rungs[..rungs.len() - 1]
                    .iter()
                    .all(|r| r["decision"] == "continue")
            );
        } else {
            assert_eq!(t["state"], "SUCCESS", "{t}");
            assert_eq!(steps, vec![1, 3], "judged at each rung below 9: {t}");
            assert_eq!(t["resource"], 9);
        }
    }
    let text = node.metrics_text();
    let trials = |outcome: &str| {
        trainyard_testkit::metrics::sum(&text, "trainyard_sweep_trials_total", "outcome", outcome)
    };
    assert_eq!(trials("stopped_early"), stopped as f64);
    assert_eq!(trials("started"), 12.0);
}

#[test]
fn a_cancelled_sweep_revokes_its_running_and_waiting_trials() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let id = create(
        &node,
        json!({
            "model_type": "mlp",
            "request": {"epochs": 2000, "hidden_sizes": [64, 64]},
            "space": {"learning_rate": {"loguniform": [0.0001, 0.01]}},
            "trials": 4,
            "parallel": 1,
        }),
    );
    let running = poll(Duration::from_secs(60), "a trial to run", || {
        let (_, sweep) = node.get(&format!("/sweeps/{id}"));
        let trial = sweep["trials"][0].clone();
        let task = trial["task_id"].as_str().map(str::to_string)?;
        (node.state(&task) == "PROGRESS").then_some(task)
    });
    let (status, answer) = node.post(&format!("/sweeps/{id}/cancel"), json!({}));
    assert_eq!(status, 202, "{answer}");
    let sweep = wait_ended(&node, &id, Duration::from_secs(60));
    assert_eq!(sweep["state"], "REVOKED", "{sweep}");
    assert_eq!(sweep["counts"]["revoked"], 4, "{sweep}");
    assert_eq!(node.state(&running), "REVOKED");
    let launched = sweep["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"].is_string())
        .count();
    assert_eq!(launched, 1, "no trial starts after the cancel: {sweep}");
}
