//! `trainyard sweep` and `trainyard sweeps` against a real node (included by `tests/cli.rs`).

use std::process::Command;

use crate::common::{Node, TestStore, temp_dir};
use serde_json::Value;

/// Runs `trainyard` with `args`: its exit code, standard output and standard error.
fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(args)
        .output()
        .expect("trainyard runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_followed_sweep_ends_with_its_best_trial_and_a_bad_space_lists_its_problems() {
    let node = Node::up(&TestStore::embedded(), 2, &[]);
    let dir = temp_dir("cli-sweep");
    let space = dir.join("space.json");
    std::fs::write(
        &space,
        r#"{"learning_rate": {"loguniform": [0.001, 0.1]},
            "hidden_sizes": {"choice": [[8], [16, 8]]}}"#,
    )
    .unwrap();
    let space = space.to_str().unwrap();
    let (code, out, err) = run(&[
        "sweep",
        "mlp",
        "--space",
        space,
        "--dataset",
        "diabetes",
        "--trials",
        "4",
        "--parallel",
        "2",
        "--asha",
        "1,4,2",
        "--name",
        "cli-search",
        "--seed",
        "3",
        "--register",
        "cli-best",
        "--promote-alias",
        "production",
        "--follow",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // One line per event (stdout is not a terminal), then the table and the best trial.
    assert!(out.contains("created cli-search with 4 trials"), "{out}");
    assert_eq!(out.matches("started: task").count(), 4, "{out}");
    assert!(out.contains("after 1 epochs: val_loss "), "{out}");
    assert!(out.contains("ended SUCCESS"), "{out}");
    assert!(
        out.contains("TRIAL") && out.contains("BEST_VAL_LOSS"),
        "{out}"
    );
    let best_line = out
        .lines()
        .find(|l| l.starts_with("best trial "))
        .unwrap_or_else(|| panic!("no best trial in:\n{out}"));
    assert!(out.contains("trainyard predict "), "{out}");
    // Its best model registered once it ended, the alias moved to it.
    assert!(
        out.contains("registered as cli-best version 1, alias production moved to it"),
        "{out}"
    );

    // The list, and `sweeps show --json` agree with what was printed.
    let (code, list, err) = run(&["sweeps", "--server", &node.url]);
    assert_eq!(code, 0, "{err}");
    assert!(
        list.contains("cli-search") && list.contains("SUCCESS"),
        "{list}"
    );
    let id = list
        .lines()
        .find(|l| l.contains("cli-search"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, shown, err) = run(&["sweeps", "show", &id, "--json", "--server", &node.url]);
    assert_eq!(code, 0, "{err}");
    let sweep: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(sweep["trials"].as_array().unwrap().len(), 4);
    let best_task = sweep["best"]["task_id"].as_str().unwrap();
    assert!(best_line.contains(best_task), "{best_line} vs {shown}");
    assert!(best_line.starts_with(&format!("best trial {}:", sweep["best"]["trial"])));
    // The winner serves predictions.
    let (code, predicted, err) = run(&[
        "predict",
        best_task,
        "--row",
        "0,0,0,0,0,0,0,0,0,0",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(predicted.trim().parse::<f64>().is_ok(), "{predicted}");
    // An ended sweep cannot be cancelled: 409, exit 2.
    let (code, _, err) = run(&["sweeps", "cancel", &id, "--server", &node.url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("409 sweep_finished"), "{err}");

    // A bad space: the 422's problems, one per line, and exit 2; nothing created.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"learning_rate": {"uniform": [1, 0]}, "colour": {"choice": ["red"]}}"#,
    )
    .unwrap();
    let (code, out, err) = run(&[
        "sweep",
        "mlp",
        "--space",
        bad.to_str().unwrap(),
        "--parallel",
        "0",
        "--follow",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("422 invalid_sweep:"), "{err}");
    assert!(
        err.contains("\n  - ") && err.contains("colour") && err.contains("parallel"),
        "{err}"
    );
    assert!(err.lines().count() >= 4, "{err}");
    let (_, list, _) = run(&["sweeps", "list", "--json", "--server", &node.url]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["sweeps"].as_array().unwrap().len(), 1);
    // Unknown sweeps and unreadable files.
    let (code, _, err) = run(&[
        "sweeps",
        "show",
        "00000000-0000-4000-8000-000000000000",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sweep_not_found"), "{err}");
    let (code, _, err) = run(&[
        "sweep",
        "mlp",
        "--space",
        "/nonexistent.json",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_cancelled_sweep_exits_3_when_followed() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let dir = temp_dir("cli-sweep-cancel");
    let space = dir.join("space.json");
    std::fs::write(&space, r#"{"batch_size": {"choice": [16, 32]}}"#).unwrap();
    let (code, id, err) = run(&[
        "sweep",
        "mlp",
        "--space",
        space.to_str().unwrap(),
        "--epochs",
        "100000",
        "--trials",
        "3",
        "--parallel",
        "1",
        "--server",
        &node.url,
    ]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let (code, out, err) = run(&["sweeps", "cancel", &id, "--server", &node.url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stopping"), "{out}");
    let (code, out, err) = run(&["sweeps", "follow", &id, "--server", &node.url]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("cancel requested") && out.contains("REVOKED"),
        "{out}"
    );
    assert!(err.contains("was cancelled"), "{err}");
}
