//! Metrics on `/metrics`, task inspection, and a real Prometheus scraping a real node and
//! evaluating every dashboard expression and alert rule.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Node, TestStore, free_port, poll, poll_seen, temp_dir};
use serde_json::{Value, json};
use trainyard::telemetry::{Kind, METRICS};

const LONG: Duration = Duration::from_secs(120);
const PROCESS_METRICS: [&str; 3] = [
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A node that has seen every kind of task event: success, failure, retry (after a trainer
/// panic), and cancels of a pending and of a running task.
fn node_with_a_workload() -> Node {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_TEST_PANIC_SEED", "99")],
    );
    let ok = node.submit("linear", json!({"epochs": 2}));
    let retried = node.submit("linear", json!({"epochs": 2, "seed": 99}));
    let failed = node.submit("mlp", json!({"epochs": 100000, "time_limit_s": 0.2}));
    for (id, state) in [
        (&ok, "SUCCESS"),
        (&retried, "SUCCESS"),
        (&failed, "FAILURE"),
    ] {
        node.wait_for(id, state, LONG);
    }
    let running = node.submit("mlp", json!({"epochs": 100000}));
    node.wait_for(&running, "PROGRESS", LONG);
    let pending = node.submit("gbdt", json!({}));
    for id in [&pending, &running] {
        node.post(&format!("/task/{id}/cancel"), json!(null));
        node.wait_for(id, "REVOKED", LONG);
    }
    run_a_sweep(&node);
    node
}

/// Runs a small sweep (two trials) to its end, so its metrics have values.
fn run_a_sweep(node: &Node) {
    let (status, sweep) = node.post(
        "/sweeps",
        json!({"model_type": "linear", "request": {"epochs": 1}, "strategy": "grid",
               "space": {"batch_size": {"choice": [32, 64]}}}),
    );
    assert_eq!(status, 201, "{sweep}");
    let sweep_id = sweep["sweep"]["sweep_id"].as_str().unwrap().to_string();
    poll(LONG, "the sweep to end", || {
        (node.get(&format!("/sweeps/{sweep_id}")).1["state"] == "SUCCESS").then_some(())
    });
}

#[test]
fn every_declared_metric_is_exported_with_its_type_and_no_task_ids() {
    let node = node_with_a_workload();
    let text = node.metrics_text();
    for metric in METRICS {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# TYPE {} {kind}", metric.name)),
            "{} is not exported as a {kind}",
            metric.name
        );
        assert!(metric.name.starts_with("trainyard_"));
        if metric.kind == Kind::Counter {
            assert!(metric.name.ends_with("_total"), "{}", metric.name);
        }
    }
    for name in PROCESS_METRICS {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
    // A failure is counted with its reason, from a fixed set of error codes.
    for (event, labels) in [
        ("succeeded", "model_type=\"linear\""),
        ("retried", "model_type=\"linear\""),
        ("failed", "model_type=\"mlp\",reason=\"time_limit\""),
        ("revoked", "model_type=\"gbdt\""),
        ("revoked", "model_type=\"mlp\""),
    ] {
        let line = format!("trainyard_tasks_{event}_total{{{labels}}} ");
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line}"));
        assert!(value.trim().parse::<f64>().unwrap() >= 1.0, "{line}{value}");
    }
    assert!(
        text.contains("trainyard_trainer_restarts_total{device=\"cpu\"} 1"),
        "one trainer restart"
    );
    // No label carries an id: nothing that looks like a UUID is on the page.
    let uuid = regex_like_uuid(&text);
    assert!(uuid.is_none(), "a task id leaked into a label: {uuid:?}");
}

/// The first UUID-shaped word of `text`, if any.
fn regex_like_uuid(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| w.len() == 36 && w.matches('-').count() == 4)
        .map(str::to_string)
}

#[test]
fn task_inspection_shows_request_attempts_and_timings() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_TEST_PANIC_SEED", "5")],
    );
    let id = node.submit("linear", json!({"epochs": 3, "seed": 5, "priority": 4}));
    node.wait_for(&id, "SUCCESS", LONG);
    let (status, task) = node.get(&format!("/task/{id}"));
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["request"]["spec"]["epochs"], 3);
    assert_eq!(task["request"]["priority"], 4);
    assert_eq!(task["attempt"], 2);
    assert_eq!(task["node"], "node");
    assert_eq!(task["attempts"][0]["node"], "node");
    assert_eq!(task["attempts"][0]["error"]["code"], "trainer_crashed");
    assert!(task["timings"]["waited_s"].as_f64().unwrap() >= 0.0);
    assert!(task["timings"]["ran_s"].as_f64().unwrap() > 0.0);
    assert!(task["result"]["metrics"]["test_r2"].is_f64());
    assert_eq!(node.get("/tasks?node=node").1["count"], 1);
    assert_eq!(node.get("/tasks?node=elsewhere").1["count"], 0);
    assert_eq!(
        node.get("/task/7e0ae3e6-1c8e-4b53-9d1f-0c1e2b3a4d5f").1["error"]["code"],
        "task_not_found"
    );
}

/// Every PromQL expression of the dashboards, with Grafana's variables filled in.
fn dashboard_expressions() -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "grafana/dashboards/overview.json",
        "grafana/dashboards/training.json",
    ] {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(repo(file)).unwrap())
            .expect("dashboard is JSON");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        for name in ["datasource", "job", "node", "model_type"] {
            assert!(
                variables.iter().any(|v| v["name"] == name),
                "{file}: ${name}"
            );
        }
        // No fixed data source or job: each dashboard works in any Grafana, for any job name.
        let text = dashboard.to_string();
        assert!(
            !text.contains("\"uid\":\"prometheus\""),
            "{file}: a fixed datasource uid"
        );
        assert!(
            !text.contains("job=\\\"trainyard\\\""),
            "{file}: a fixed job"
        );
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    expr.contains("job=~\"$job\""),
                    "{file}: {expr} is not of $job"
                );
                out.push(
                    expr.replace("$job", "trainyard")
                        .replace("$node", ".*")
                        .replace("$model_type", ".*")
                        .replace("$__rate_interval", "30s")
                        .replace("$__range", "5m"),
                );
            }
        }
    }
    out
}

#[test]
fn finished_tasks_leave_nothing_running_behind() {
    let node = Node::up(&TestStore::embedded(), 2, &[]);
    let warm = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&warm, "SUCCESS", LONG);
    let before = node.metric_value("trainyard_runtime_tasks");
    let ids: Vec<String> = (0..100)
        .map(|_| node.submit("linear", json!({"epochs": 1})))
        .collect();
    for id in &ids {
        node.wait_for(id, "SUCCESS", LONG);
    }
    // Each attempt's hard-limit timer (an hour by default), lease renewer and progress
    // writer end with it: 100 tasks later the runtime holds about what it held before. The
    // last ends are written after SUCCESS is readable, and their tasks end a moment later.
    poll_seen(LONG, "the runtime's tasks to be back", || {
        let after = node.metric_value("trainyard_runtime_tasks");
        if after < before + 20.0 {
            Ok(())
        } else {
            Err(format!(
                "runtime tasks grew from {before} to {after} over 100 trainings"
            ))
        }
    });
}

#[test]
fn dashboards_name_only_metrics_that_exist() {
    let known: BTreeSet<&str> = METRICS
        .iter()
        .map(|m| m.name)
        .chain(PROCESS_METRICS)
        .chain(["up"])
        .collect();
    for expr in dashboard_expressions() {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("trainyard_") || word.starts_with("process_") {
                let base = word
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    known.contains(base),
                    "{expr} names {word}, which is not a metric"
                );
            }
        }
    }
}

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn query(prometheus: &Prometheus, expr: &str) -> Value {
    let response = ureq::get(format!("{}/api/v1/query", prometheus.url))
        .query("query", expr)
        .call()
        .unwrap();
    response.into_body().read_json().unwrap()
}

#[test]
fn promtool_accepts_the_shipped_config_and_rules_and_the_rules_pass_their_unit_tests() {
    for args in [
        ["check", "config", "config/prometheus.yml"],
        ["check", "rules", "config/alerts.yml"],
        ["test", "rules", "config/alerts.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(repo("."))
            .output()
            .expect("promtool runs (scripts/test installs prometheus)");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = Command::new("amtool")
        .args(["check-config", "config/alertmanager.yml"])
        .current_dir(repo("."))
        .output()
        .expect("amtool runs (scripts/test installs prometheus-alertmanager)");
    assert!(
        output.status.success(),
        "amtool check-config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every alert has the annotations an operator needs, and its runbook has a section.
    let rules = std::fs::read_to_string(repo("config/alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "no runbook section for {alert}"
        );
        assert!(
            rules.contains(&format!(
                "runbook_url: \"docs/runbook.md#{}\"",
                alert.to_lowercase()
            )),
            "{alert} has no runbook_url"
        );
    }
    assert_eq!(
        rules.matches("summary:").count(),
        rules.matches("description:").count(),
        "every alert has a summary and a description"
    );
}

#[test]
fn prometheus_scrapes_a_node_and_every_expression_returns_data() {
    let node = node_with_a_workload();
    let dir = temp_dir("prometheus");
    let node_addr = node.url.trim_start_matches("http://");
    // The shipped config and rules, as docker compose mounts them, scraping every second; the
    // targets file names the node once with a `node` label and once by host only (named
    // `localhost` by the config's relabelling).
    let config = dir.join("prometheus.yml");
    let shipped = std::fs::read_to_string(repo("config/prometheus.yml")).unwrap();
    assert!(shipped.contains("scrape_interval: 5s"));
    std::fs::write(&config, shipped.replace(": 5s", ": 1s")).unwrap();
    std::fs::copy(repo("config/alerts.yml"), dir.join("alerts.yml")).unwrap();
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let port_of_node = node_addr.rsplit_once(':').unwrap().1;
    std::fs::write(
        dir.join("targets/test.yml"),
        format!(
            "- targets: [\"{node_addr}\"]\n  labels: {{node: node-test}}\n\
             - targets: [\"localhost:{port_of_node}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs (scripts/test installs it)");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Wait for a few scrapes so that rates over 30 s have points.
    poll(
        Duration::from_secs(60),
        "prometheus to scrape the node 4 times",
        || {
            let answer = ureq::get(format!("{}/api/v1/query", prometheus.url))
                .query("query", "count_over_time(up{job=\"trainyard\"}[1m])")
                .call()
                .ok()?
                .into_body()
                .read_json::<Value>()
                .ok()?;
            (answer["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?
                >= 4.0)
                .then_some(())
        },
    );
    // One more task after Prometheus started, so rates of task counters are not all zero;
    // its counts are in once Prometheus has scraped after it.
    let id = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&id, "SUCCESS", LONG);
    // And a sweep that ends, for the sweep panels.
    run_a_sweep(&node);
    poll_seen(LONG, "every expression to return data", || {
        let mut none = Vec::new();
        for expr in dashboard_expressions() {
            let answer = query(&prometheus, &expr);
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            if answer["data"]["result"].as_array().unwrap().is_empty() {
                none.push(expr);
            }
        }
        if none.is_empty() {
            Ok(())
        } else {
            Err(format!("no data for {none:?}"))
        }
    });
    let values: Value = ureq::get(format!("{}/api/v1/label/node/values", prometheus.url))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    for node in ["node-test", "localhost"] {
        assert!(
            values["data"].as_array().unwrap().contains(&json!(node)),
            "{node} in {values}"
        );
    }

    let rules = poll(LONG, "every alert rule to be evaluated", || {
        let answer: Value = ureq::get(format!("{}/api/v1/rules", prometheus.url))
            .call()
            .ok()?
            .into_body()
            .read_json()
            .ok()?;
        let rules: Vec<Value> = answer["data"]["groups"][0]["rules"].as_array()?.clone();
        rules
            .iter()
            .all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .then_some(rules)
    });
    let shipped_rules = std::fs::read_to_string(repo("config/alerts.yml")).unwrap();
    assert_eq!(rules.len(), shipped_rules.matches("- alert: ").count());
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
}

/// `[log] format = "json"`: every line of the node's log is one JSON object with a timestamp,
/// a level, a target and the node's name; the lines of a task's work carry its `task_id` and
/// `trainer` as fields of their own.
#[test]
fn json_logs_carry_the_task_node_and_trainer_as_fields() {
    let dir = temp_dir("json-log");
    let log = dir.join("node.log");
    let node = Node::up_logged(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_LOG__FORMAT", "json"), ("RUST_LOG", "info")],
        &log,
    );
    let id = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&id, "SUCCESS", LONG);
    let lines = poll(LONG, "the task's end in the log", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("task succeeded").then_some(text)
    });
    let mut of_the_task = Vec::new();
    for line in lines.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(entry[field].is_string(), "{field} in {line}");
        }
        assert_eq!(entry["node"], "node", "{line}");
        if entry["task_id"] == id.as_str() {
            of_the_task.push(entry);
        }
    }
    let succeeded = of_the_task
        .iter()
        .find(|e| e["message"] == "task succeeded")
        .unwrap_or_else(|| panic!("no line of the task's success: {of_the_task:?}"));
    assert_eq!(succeeded["level"], "INFO");
    assert!(
        succeeded["trainer"].as_str().unwrap().contains("cpu"),
        "{succeeded}"
    );
    assert_eq!(succeeded["attempt"], 1, "{succeeded}");
}
