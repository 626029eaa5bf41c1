//! The web panel and the API's docs (`/docs`) in a real browser: Debian's headless Chromium
//! driven by playwright-core (`tests/browser/panel.mjs`, `tests/browser/sweeps.mjs`,
//! `tests/browser/docs.mjs`), against a real node. `scripts/test` installs both.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Node, TestStore, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn the_panel_trains_cancels_predicts_and_shows_errors_in_a_browser() {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists() && browser_tests.join("node_modules/playwright-core").exists(),
        "the browser test needs {CHROMIUM} and tests/browser/node_modules: run scripts/test, \
         which installs them (apt-get install chromium; npm ci in tests/browser)"
    );
    // With a token, so the panel's way of asking for one and keeping it is tested too.
    let token = "panel-admin-token-0123456789";
    let tokens = format!(r#"[{{name = "panel", role = "admin", token = "{token}"}}]"#);
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_HTTP__TOKENS", &tokens)],
    );
    let screenshot = temp_dir("panel").join("panel.png");
    let output = Command::new("node")
        .arg(browser_tests.join("panel.mjs"))
        .arg(&node.url)
        .arg(&screenshot)
        .arg(token)
        .output()
        .expect("node runs");
    let log = String::from_utf8_lossy(&output.stdout);
    eprintln!("{log}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser test failed; see its steps above"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    eprintln!("screenshot: {}", screenshot.display());
}

#[test]
fn the_docs_page_sends_a_request_from_the_browser() {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists() && browser_tests.join("node_modules/playwright-core").exists(),
        "the browser test needs {CHROMIUM} and tests/browser/node_modules: run scripts/test"
    );
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let screenshot = temp_dir("docs").join("docs.png");
    let output = Command::new("node")
        .arg(browser_tests.join("docs.mjs"))
        .arg(&node.url)
        .arg(&screenshot)
        .output()
        .expect("node runs");
    let log = String::from_utf8_lossy(&output.stdout);
    eprintln!("{log}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the docs browser test failed; see its steps above"
    );
    eprintln!("screenshot: {}", screenshot.display());
}

#[test]
fn the_panel_shows_a_sweep_its_trials_and_one_line_per_trial() {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists() && browser_tests.join("node_modules/playwright-core").exists(),
        "the browser test needs {CHROMIUM} and tests/browser/node_modules: run scripts/test"
    );
    // One trainer, held by a long training, so that the sweeps wait until the browser test
    // lets them go (by cancelling it): the page must follow them from then on.
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let blocker = node.submit("mlp", serde_json::json!({"epochs": 100_000}));
    let sweep = |name: &str, trials: u32| {
        // ASHA gives every trial rungs, so every line of the chart has points.
        let (status, answer) = node.post(
            "/sweeps",
            serde_json::json!({"name": name, "model_type": "mlp", "dataset": "diabetes",
                "request": {"hidden_sizes": [8]},
                "space": {"learning_rate": {"loguniform": [0.001, 0.1]},
                          "batch_size": {"choice": [16, 64]}},
                "trials": trials, "parallel": 2, "seed": 5,
                "early_stopping": {"asha": {"min_resource": 1, "max_resource": 6,
                                            "reduction_factor": 2}},
                "register": {"name": name, "promote_alias": "production"}}),
        );
        assert_eq!(status, 201, "{answer}");
        answer["sweep"]["sweep_id"].as_str().unwrap().to_string()
    };
    let to_cancel = sweep("panel-cancel", 2);
    let trials = 4;
    let id = sweep("panel-search", trials);
    let screenshot = temp_dir("panel-sweeps").join("sweeps.png");
    let output = Command::new("node")
        .arg(browser_tests.join("sweeps.mjs"))
        .arg(&node.url)
        .arg(&blocker)
        .arg(&to_cancel)
        .arg(&id)
        .arg(trials.to_string())
        .arg(&screenshot)
        .output()
        .expect("node runs");
    let log = String::from_utf8_lossy(&output.stdout);
    eprintln!("{log}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the sweeps browser test failed; see its steps above"
    );
    eprintln!("screenshot: {}", screenshot.display());
}
