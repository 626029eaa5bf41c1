//! The `trainyard` command line: `train` in-process, the client verbs against a real node,
//! `node --config` on Redis, and refused configs.

mod common;

use std::process::{Command, Output};

use common::{Node, RedisServer, TestStore, free_port, poll_child, temp_dir};
use serde_json::Value;

fn trainyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(args)
        .output()
        .expect("trainyard runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn train_prints_metrics_as_json_and_saves_the_model() {
    let dir = temp_dir("cli-train");
    let model = dir.join("model.bin");
    let output = trainyard(&[
        "train",
        "gbdt",
        "--rows",
        "500",
        "--trees",
        "10",
        "--json",
        "--save-model",
        model.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(answer["model_type"], "gbdt");
    assert_eq!(answer["dataset"]["rows"], 500);
    assert!(
        answer["metrics"]["test_r2"].as_f64().unwrap() > 0.3,
        "{answer}"
    );
    assert!(answer["peak_rss_bytes"].as_u64().unwrap() > 0);
    let bytes = std::fs::read(&model).unwrap();
    assert_eq!(
        trainyard::training::predict(&bytes, &[vec![0.5; 8]])
            .unwrap()
            .len(),
        1
    );

    let csv = dir.join("data.csv");
    std::fs::write(&csv, "a,y\n1,2\n2,x\n").unwrap();
    let output = trainyard(&[
        "train",
        "linear",
        "--csv",
        csv.to_str().unwrap(),
        "--target",
        "y",
    ]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("line 3") && err.contains("\"y\""), "{err}");
    let output = trainyard(&["train", "mlp", "--epochs", "0", "--learning-rate=-1"]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("epochs") && err.contains("learning_rate"),
        "{err}"
    );
}

#[test]
fn client_verbs_talk_to_a_node() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let output = trainyard(&[
        "submit", "linear", "--epochs", "2", "--follow", "--server", &node.url,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["state"], "SUCCESS");
    let id = result["task_id"].as_str().unwrap();

    let status: Value =
        serde_json::from_str(&stdout(&trainyard(&["status", id, "--server", &node.url]))).unwrap();
    assert_eq!(status["state"], "SUCCESS");
    // `status --follow` follows a running task's event stream to its end.
    let running = node.submit(
        "mlp",
        serde_json::json!({"epochs": 30, "hidden_sizes": [16]}),
    );
    let output = trainyard(&["status", &running, "--follow", "--server", &node.url]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let followed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(followed["state"], "SUCCESS", "{followed}");
    let unknown = trainyard(&[
        "status",
        "00000000-0000-4000-8000-000000000000",
        "--follow",
        "--server",
        &node.url,
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("task_not_found"));
    let result: Value =
        serde_json::from_str(&stdout(&trainyard(&["result", id, "--server", &node.url]))).unwrap();
    assert!(result["result"]["metrics"]["test_r2"].is_f64());
    let output = trainyard(&[
        "predict",
        id,
        "--row",
        "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
        "--server",
        &node.url,
    ]);
    let predictions: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(predictions["predictions"].as_array().unwrap().len(), 1);

    let output = trainyard(&["submit", "mlp", "--epochs", "100000", "--server", &node.url]);
    let submitted: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let long = submitted["task_id"].as_str().unwrap();
    node.wait_for(long, "PROGRESS", std::time::Duration::from_secs(60));
    assert!(
        trainyard(&["cancel", long, "--server", &node.url])
            .status
            .success()
    );
    node.wait_for(long, "REVOKED", std::time::Duration::from_secs(120));

    let output = trainyard(&[
        "status",
        "7e0ae3e6-1c8e-4b53-9d1f-0c1e2b3a4d5f",
        "--server",
        &node.url,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("404 task_not_found"));
}

#[test]
fn a_node_runs_from_its_config_file_on_redis() {
    let redis = RedisServer::start();
    let dir = temp_dir("cli-node");
    // Both ports free ones: the cluster port defaults to 4700, which may be taken.
    let (port, cluster_port) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"node-a\"\ncookie = \"secret\"\nlisten = \"127.0.0.1:{cluster_port}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"{}\"\nprefix = \"cli\"\n[trainers]\ndevices = [\"cpu\", \"cpu\"]\n",
            redis.url
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(["node", "--config", config.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}");
    let health: Value = poll_child(
        &mut child.0,
        std::time::Duration::from_secs(60),
        "the node to answer",
        || {
            let (status, health) = common::read_json(
                common::http_agent(std::time::Duration::from_secs(10))
                    .get(format!("{url}/cluster/health"))
                    .call(),
            )?;
            (status == 200).then_some(health)
        },
    );
    assert_eq!(health["node"], "node-a");
    assert_eq!(health["trainers"].as_array().unwrap().len(), 2);
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_configs_are_refused_at_start_up() {
    let dir = temp_dir("cli-config");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[tasks]\nmax_retrys = 3\n").unwrap();
    let output = trainyard(&["node", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_retrys"));

    std::fs::write(
        &config,
        format!(
            "[node]\nseeds = [\"127.0.0.1:4701\"]\n[store]\nurl = \"embedded:{}/x.redb\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let output = trainyard(&["node", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("embedded store serves one node only"), "{err}");
}

#[test]
fn a_token_guards_every_route_but_health_and_metrics() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_HTTP__TOKEN", "s3cret")],
    );
    for (method, path) in [
        ("POST", "/train/linear/async"),
        ("GET", "/tasks"),
        ("GET", "/datasets"),
        ("GET", "/cluster/nodes"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer s3cret2"),
        ] {
            let (status, answer) = node.with_auth(method, path, auth);
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} {auth:?}"
            );
        }
    }
    let (status, answer) = node.with_auth("POST", "/train/linear/async", Some("Bearer s3cret"));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(node.with_auth("GET", "/cluster/health", None).0, 200);
    assert_eq!(node.with_auth("GET", "/celery/health", None).0, 200);
    let metrics = ureq::get(format!("{}/metrics", node.url)).call().unwrap();
    assert_eq!(metrics.status().as_u16(), 200);

    let id = answer["task_id"].as_str().unwrap();
    // The event streams take the token as `?token=` too (a browser's EventSource sends no
    // headers), percent-encoded or not; the panel itself needs none.
    for (query, status) in [
        ("", 401),
        ("?token=wrong", 401),
        ("?token=s3cret", 200),
        ("?token=s3cr%65t", 200),
    ] {
        let (got, _) = node.with_auth("GET", &format!("/task/{id}/events{query}"), None);
        assert_eq!(got, status, "{query}");
    }
    assert_eq!(node.with_auth("GET", "/", None).0, 200);
    let refused = trainyard(&["status", id, "--server", &node.url]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401 unauthorized"));
    let output = Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(["status", id, "--server", &node.url])
        .env("TRAINYARD_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
