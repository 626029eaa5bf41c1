//! Devices: `auto` falls back to CPU trainers, a missing GPU stops the start, tasks wait for the
//! kind of device they ask for, and `GET /cluster/nodes` shows each trainer's device.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Node, TestStore, free_port, temp_dir};
use serde_json::json;

#[test]
fn tasks_run_only_on_the_kind_of_device_they_ask_for() {
    let node = Node::up(&TestStore::embedded(), 2, &[]);
    let (status, nodes) = node.get("/cluster/nodes");
    assert_eq!(status, 200);
    let trainers = nodes["nodes"][0]["trainers"].as_array().unwrap();
    assert_eq!(trainers.len(), 2);
    assert!(
        trainers
            .iter()
            .all(|t| t["device"] == "cpu" && t["name"].as_str().unwrap().starts_with("node/cpu"))
    );

    let on_gpu = node.submit(
        "linear",
        json!({"epochs": 1, "device": "gpu", "priority": 9}),
    );
    let on_cpu = node.submit("linear", json!({"epochs": 1, "device": "cpu"}));
    let anywhere = node.submit("linear", json!({"epochs": 1}));
    for id in [&on_cpu, &anywhere] {
        node.wait_for(id, "SUCCESS", Duration::from_secs(120));
    }
    // No GPU trainer here: the GPU task waits, it is neither run on a CPU nor failed. (Health
    // is computed at most once a second: an answer from before the others ran may be served.)
    assert_eq!(node.state(&on_gpu), "PENDING");
    common::poll_seen(
        Duration::from_secs(120),
        "health to count the GPU task alone",
        || match node.get("/cluster/health").1 {
            health if health["queue_depth"] == 1 => Ok(()),
            health => Err(health),
        },
    );
    assert_eq!(node.state(&on_gpu), "PENDING");
    // It says why it waits, as Ray shows a pending task's reason; the others say nothing.
    let (_, status) = node.get(&format!("/task/{on_gpu}/status"));
    assert_eq!(status["waiting_for"], "gpu: no node offers it", "{status}");
    let (_, inspected) = node.get(&format!("/task/{on_gpu}"));
    assert_eq!(inspected["waiting_for"], "gpu: no node offers it");
    assert_eq!(inspected["request"]["device"], "gpu");
    let (_, status) = node.get(&format!("/task/{on_cpu}/status"));
    assert!(status.get("waiting_for").is_none(), "{status}");
    let (status, answer) = node.post("/train/linear/async", json!({"device": "tpu"}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{answer}"
    );
    node.post(&format!("/task/{on_gpu}/cancel"), json!(null));
    assert_eq!(node.state(&on_gpu), "REVOKED");
}

fn node_with_devices(devices: &str) -> std::process::Output {
    let dir = temp_dir("devices");
    let config = dir.join("node.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!("[http]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"embedded:{}/s.redb\"\n[trainers]\ndevices = {devices}\n", dir.display()),
    )
    .unwrap();
    // A node that starts is stopped after its first log lines; one that cannot start exits.
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(["node", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = common::poll(Duration::from_secs(60), "the node to start or stop", || {
        if child.try_wait().unwrap().is_some() {
            return Some(false);
        }
        ureq::get(format!("http://127.0.0.1:{port}/cluster/health"))
            .call()
            .ok()
            .map(|_| true)
    });
    if started {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn auto_falls_back_to_cpu_trainers_and_a_missing_gpu_stops_the_start() {
    if trainyard::training::gpu_count() == 0 {
        let output = node_with_devices("\"auto\"");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            log.contains("found no GPU") && log.contains("CPU trainer"),
            "{log}"
        );

        let output = node_with_devices("[\"cpu\", \"gpu:0\"]");
        assert!(!output.status.success());
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains("\"gpu:0\" does not exist"), "{log}");
    }
    let output = node_with_devices("[\"tpu:0\"]");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tpu:0"));
}
