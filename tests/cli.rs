//! The `trainyard` command line: `train` in-process, the client verbs against a real node,
//! `node --config` on Redis, and refused configs.

mod common;
#[path = "cli/sweeps.rs"]
mod sweeps;

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
        "submit", "linear", "--epochs", "2", "--follow", "--json", "--server", &node.url,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["state"], "SUCCESS");
    let id = result["task_id"].as_str().unwrap();

    let status: Value = serde_json::from_str(&stdout(&trainyard(&[
        "status", id, "--json", "--server", &node.url,
    ])))
    .unwrap();
    assert_eq!(status["state"], "SUCCESS");
    // `status --follow` follows a running task's event stream to its end.
    let running = node.submit(
        "mlp",
        serde_json::json!({"epochs": 30, "hidden_sizes": [16]}),
    );
    let output = trainyard(&[
        "status", &running, "--follow", "--json", "--server", &node.url,
    ]);
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
    let result: Value = serde_json::from_str(&stdout(&trainyard(&[
        "--json", "result", id, "--server", &node.url,
    ])))
    .unwrap();
    assert!(result["result"]["metrics"]["test_r2"].is_f64());
    let output = trainyard(&[
        "predict",
        id,
        "--row",
        "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
        "--json",
        "--server",
        &node.url,
    ]);
    let predictions: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(predictions["predictions"].as_array().unwrap().len(), 1);

    // Without --json, submit prints the task's id alone.
    let output = trainyard(&["submit", "mlp", "--epochs", "100000", "--server", &node.url]);
    let long = stdout(&output);
    let long = long.trim();
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
fn submit_count_sends_a_batch_and_prints_every_id() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_TASKS__ALLOW_NOOP", "true")],
    );
    let output = trainyard(&[
        "submit",
        "noop",
        "--sleep-ms",
        "1",
        "--count",
        "3",
        "--idempotency-key",
        "cli-n",
        "--server",
        &node.url,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in &ids {
        node.wait_for(id, "SUCCESS", std::time::Duration::from_secs(60));
    }
    // The same keys again: the same tasks.
    let again = trainyard(&[
        "submit",
        "noop",
        "--sleep-ms",
        "1",
        "--count",
        "3",
        "--idempotency-key",
        "cli-n",
        "--server",
        &node.url,
    ]);
    assert_eq!(stdout(&again).lines().collect::<Vec<_>>(), ids);
    // A bad request is a usage error (exit 2), naming the item.
    let bad = trainyard(&[
        "submit", "linear", "--epochs", "0", "--count", "2", "--server", &node.url,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("items[0].epochs"));
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

/// `trainyard ARGS` with extra environment variables: its exit code and output.
fn trainyard_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
    command.args(args).env_remove("TRAINYARD_SERVER");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("trainyard runs");
    (
        output.status.code().unwrap_or(-1),
        stdout(&output),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `trainyard ARGS --json --server URL`: exit code 0 and the JSON it printed.
fn json_of(url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--server", url]);
    let (code, out, err) = trainyard_env(&all, &[]);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

#[test]
fn every_verb_and_its_exit_code() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let url = node.url.as_str();
    // TRAINYARD_SERVER, with a trailing slash; text by default, JSON with --json.
    let slash = format!("{url}/");
    let env = [("TRAINYARD_SERVER", slash.as_str())];
    let (code, out, err) = trainyard_env(&["health"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("healthy"), "{out}");
    let (code, out, _) = trainyard_env(&["--json", "health"], &env);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "healthy"
    );

    // Every request field of submit, the idempotency key, and --wait.
    let submit = [
        "submit",
        "gbdt",
        "--trees",
        "5",
        "--max-depth",
        "3",
        "--min-samples-leaf",
        "2",
        "--tree-learning-rate",
        "0.2",
        "--test-fraction",
        "0.25",
        "--max-retries",
        "0",
        "--device",
        "cpu",
        "--priority",
        "9",
        "--seed",
        "7",
        "--time-limit-s",
        "60",
        "--dataset",
        "diabetes",
        "--idempotency-key",
        "cli-key-1",
    ];
    let (code, out, err) = trainyard_env(&[&submit[..], &["--wait", "--json"]].concat(), &env);
    assert_eq!(code, 0, "{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["state"], "SUCCESS", "{result}");
    let id = result["task_id"].as_str().unwrap().to_string();
    let (code, again, _) = trainyard_env(&submit, &env);
    assert_eq!(
        (code, again.trim()),
        (0, id.as_str()),
        "the same key, the same task"
    );
    let detail = json_of(url, &["inspect", &id]);
    let request = &detail["request"];
    assert_eq!(request["priority"], 9);
    assert_eq!(request["device"], "cpu");
    assert_eq!(request["max_retries"], 0);
    assert_eq!(request["spec"]["gbdt"]["n_trees"], 5);
    assert_eq!(request["spec"]["gbdt"]["min_samples_leaf"], 2);
    assert_eq!(request["spec"]["test_fraction"], 0.25);
    assert_eq!(request["spec"]["dataset"], "diabetes");
    assert_eq!(
        detail["resumed_from"], 0,
        "a first attempt starts at step 0"
    );
    let (code, out, _) = trainyard_env(&["inspect", &id], &env);
    assert!(
        code == 0 && out.contains("SUCCESS") && out.contains("diabetes"),
        "{out}"
    );
    assert!(out.contains("resumed at  0"), "{out}");

    // tasks, with the API's filters.
    let listed = json_of(
        url,
        &[
            "tasks",
            "--state",
            "SUCCESS",
            "--model-type",
            "gbdt",
            "--limit",
            "5",
        ],
    );
    assert_eq!(listed["tasks"][0]["task_id"], id.as_str(), "{listed}");
    let listed = json_of(url, &["tasks", "--state", "FAILURE"]);
    assert_eq!(listed["count"], 0);
    let (code, out, _) = trainyard_env(&["tasks", "--server", url], &[]);
    assert!(
        code == 0 && out.starts_with("TASK") && out.contains(&id),
        "{out}"
    );

    // 1: a task that ends in FAILURE (its time limit), with --wait.
    let (code, out, err) = trainyard_env(
        &[
            "submit",
            "mlp",
            "--epochs",
            "100000",
            "--time-limit-s",
            "0.3",
            "--wait",
        ],
        &env,
    );
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        out.contains("FAILURE") && err.contains("ended as FAILURE"),
        "{out} {err}"
    );

    // 3: a task revoked while it runs, followed.
    let (_, long, _) = trainyard_env(&["submit", "mlp", "--epochs", "100000"], &env);
    let long = long.trim().to_string();
    node.wait_for(&long, "PROGRESS", std::time::Duration::from_secs(60));
    let (code, out, _) = trainyard_env(&["cancel", &long], &env);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = trainyard_env(&["status", &long, "--follow"], &env);
    assert_eq!(code, 3, "{out} {err}");
    assert!(err.contains("revoked"), "{err}");

    // 2: bad requests: a usage error, a 4xx answer, an unreadable local file.
    assert_eq!(
        trainyard_env(&["submit", "mlp", "--priority", "10"], &env).0,
        2
    );
    assert_eq!(trainyard_env(&["submit", "nope"], &env).0, 2);
    let (code, _, err) = trainyard_env(&["submit", "mlp", "--learning-rate=-1"], &env);
    assert!(
        code == 2 && err.contains("422 invalid_parameters"),
        "{code} {err}"
    );
    let (code, _, err) = trainyard_env(&["inspect", "7e0ae3e6-1c8e-4b53-9d1f-0c1e2b3a4d5f"], &env);
    assert!(
        code == 2 && err.contains("404 task_not_found"),
        "{code} {err}"
    );
    let (code, _, err) = trainyard_env(
        &["datasets", "upload", "/no/such.csv", "--target", "y"],
        &env,
    );
    assert!(code == 2 && err.contains("/no/such.csv"), "{code} {err}");

    // 4: nothing listens there.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = trainyard_env(&["tasks", "--server", &closed], &env);
    assert!(code == 4 && err.contains("cannot reach"), "{code} {err}");
    let (code, _, _) = trainyard_env(&["health"], &[("TRAINYARD_SERVER", closed.as_str())]);
    assert_eq!(code, 4);

    // datasets: upload, list, train on it, delete.
    let dir = temp_dir("cli-datasets");
    let csv = dir.join("houses.csv");
    let mut text = String::from("a,b,price\n");
    for i in 0..40 {
        text.push_str(&format!("{i},{},{}\n", i % 7, 2 * i + i % 7));
    }
    std::fs::write(&csv, text).unwrap();
    let (code, out, err) = trainyard_env(
        &[
            "datasets",
            "upload",
            csv.to_str().unwrap(),
            "--target",
            "price",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let dataset = out.trim().to_string();
    let listed = json_of(url, &["datasets", "list"]);
    assert_eq!(listed["datasets"][0]["name"], "houses", "{listed}");
    let (code, out, _) = trainyard_env(&["datasets", "list"], &env);
    assert!(
        code == 0 && out.contains(&dataset) && out.contains("friedman1"),
        "{out}"
    );
    let (code, _, err) = trainyard_env(
        &[
            "submit",
            "linear",
            "--dataset",
            &dataset,
            "--epochs",
            "2",
            "--wait",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = trainyard_env(&["datasets", "delete", &dataset], &env);
    assert!(code == 0 && out.contains("deleted"), "{out}");

    // schedules: from flags and from a file; list, pause, resume, delete.
    let (code, out, err) = trainyard_env(
        &[
            "schedules",
            "create",
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--model",
            "linear",
            "--timezone",
            "Europe/Paris",
            "--epochs",
            "2",
            "--priority",
            "4",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nightly") && out.contains("Europe/Paris"),
        "{out}"
    );
    let file = dir.join("schedule.json");
    std::fs::write(&file, r#"{"name": "hourly", "cron": "0 * * * *", "model_type": "gbdt", "request": {"epochs": 1}}"#).unwrap();
    let created = json_of(
        url,
        &["schedules", "create", "--file", file.to_str().unwrap()],
    );
    assert_eq!(created["schedule"]["name"], "hourly", "{created}");
    let listed = json_of(url, &["schedules", "list"]);
    assert_eq!(listed["count"], 2, "{listed}");
    let nightly = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nightly")
        .unwrap();
    assert_eq!(nightly["request"]["priority"], 4, "{nightly}");
    assert_eq!(
        json_of(url, &["schedules", "pause", "nightly"])["schedule"]["paused"],
        true
    );
    assert_eq!(
        json_of(url, &["schedules", "resume", "nightly"])["schedule"]["paused"],
        false
    );
    let (code, out, _) = trainyard_env(&["schedules", "delete", "hourly"], &env);
    assert!(code == 0 && out.contains("hourly deleted"), "{out}");
    let (code, _, err) = trainyard_env(
        &[
            "schedules",
            "create",
            "--name",
            "bad",
            "--cron",
            "not a cron",
            "--model",
            "mlp",
        ],
        &env,
    );
    assert!(
        code == 2 && err.contains("422 invalid_cron"),
        "{code} {err}"
    );
    let (code, out, _) = trainyard_env(&["schedules", "list"], &env);
    assert!(
        code == 0 && out.starts_with("NAME") && out.contains("nightly"),
        "{out}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = trainyard_env(&["completions", shell], &[]);
        assert_eq!(code, 0, "{err}");
        for verb in ["submit", "schedules", "datasets", "health", "sweeps"] {
            assert!(out.contains(verb), "{shell} completions lack {verb}");
        }
    }
    let (code, out, _) = trainyard_env(&["man"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") || out.contains(".TH"),
        "{}",
        &out[..out.len().min(200)]
    );
    for verb in ["submit", "inspect", "schedules", "sweep", "Exit codes"] {
        assert!(out.contains(verb), "the man page lacks {verb}");
    }
    let (code, out, _) = trainyard_env(&["--help"], &[]);
    assert!(
        code == 0 && out.contains("Exit codes") && out.contains("REVOKED"),
        "{out}"
    );
    let (_, out, _) = trainyard_env(&["submit", "--help"], &[]);
    for text in [
        "0-9",
        "tensorflow",
        "xgboost",
        "TRAINYARD_SERVER",
        "TRAINYARD_TOKEN",
    ] {
        assert!(out.contains(text), "submit --help lacks {text}: {out}");
    }
    // The token's value is never shown.
    let (_, out, _) = trainyard_env(
        &["submit", "--help"],
        &[("TRAINYARD_TOKEN", "s3cret-token")],
    );
    assert!(!out.contains("s3cret-token"));
}

/// A node process killed when the test ends, and the file its log goes to.
fn spawn_logged(args: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
    command
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    KillOnDrop(command.spawn().unwrap())
}

/// Whether every line of the log at `path` is a JSON object (and there is one).
fn json_lines(path: &std::path::Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    !lines.is_empty()
        && lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_config_file() {
    let dir = temp_dir("cli-precedence");
    let wait = |child: &mut KillOnDrop, url: &str| {
        trainyard_testkit::wait_ready(&mut child.0, url, std::time::Duration::from_secs(60), url)
    };
    // `up`: --http and --log-format over TRAINYARD_HTTP__LISTEN and TRAINYARD_LOG__FORMAT; the
    // trainers from TRAINYARD_TRAINERS__DEVICES, as no --trainers is given.
    let (env_port, flag_port) = (free_port(), free_port());
    let log = dir.join("up.log");
    let env_listen = format!("127.0.0.1:{env_port}");
    let data = dir.join("up-data");
    let mut up = spawn_logged(
        &[
            "up",
            "--http",
            &format!("127.0.0.1:{flag_port}"),
            "--log-format",
            "json",
            "--data",
            data.to_str().unwrap(),
        ],
        &[
            ("TRAINYARD_HTTP__LISTEN", env_listen.as_str()),
            ("TRAINYARD_LOG__FORMAT", "text"),
            ("TRAINYARD_TRAINERS__DEVICES", "[\"cpu\", \"cpu\"]"),
        ],
        &log,
    );
    let url = format!("http://127.0.0.1:{flag_port}");
    wait(&mut up, &url);
    let health = json_of(&url, &["health"]);
    assert_eq!(health["trainers"].as_array().unwrap().len(), 2, "{health}");
    drop(up);
    assert!(
        json_lines(&log),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // `node --config`: the environment over the file, --log-format over both.
    let (file_port, env_port) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{file_port}\"\n[store]\nurl = \"embedded:{}/n.redb\"\n[log]\nformat = \"text\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let log = dir.join("node.log");
    let env_listen = format!("127.0.0.1:{env_port}");
    let mut node = spawn_logged(
        &[
            "node",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[
            ("TRAINYARD_HTTP__LISTEN", env_listen.as_str()),
            ("TRAINYARD_LOG__FORMAT", "text"),
        ],
        &log,
    );
    wait(&mut node, &format!("http://{env_listen}"));
    drop(node);
    assert!(
        json_lines(&log),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
