//! A sweep as text: the list of sweeps, a sweep's table of trials (best first), its best
//! trial and how to predict with it; and following a sweep's event stream
//! (`GET /sweeps/{id}/events`) to its end, redrawing the table of the best trials after each
//! event on a terminal (clearing the screen first), or printing one line per event elsewhere.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use super::events::read_stream;
use super::{Client, ClientError, cell, table};

/// Rows of the live table: the best trials.
const LIVE_ROWS: usize = 10;
/// Clears a terminal's screen and puts the cursor at its top left.
const CLEAR: &str = "\x1b[2J\x1b[H";
/// Most times `follow_sweep` reconnects to a stream that dropped before the sweep ended.
const MAX_RECONNECTS: u32 = 20;

/// Follows sweep `id` to its end, then prints its best trials, the best one and how to
/// predict with it (`--json`: the sweep as `GET /sweeps/{id}` answers it). A cancelled sweep
/// is [`ClientError::SweepRevoked`], one without a single successful trial
/// [`ClientError::SweepFailed`]. A dropped connection resumes with `Last-Event-ID`.
pub fn follow_sweep(client: &Client, id: &str) -> Result<(), ClientError> {
    let path = format!("/sweeps/{id}/events");
    let live = !client.json && std::io::stdout().is_terminal();
    // What the event lines name: the resource's unit and the metric.
    let words = Words::of(&client.get(&format!("/sweeps/{id}"))?);
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    loop {
        let ended = read_stream(client, &path, &mut last_id, |event| {
            if live {
                // As `watch` does: clear the screen, then draw the table from the top (a long
                // line that wraps cannot leave a half-erased table behind).
                let sweep = client.get(&format!("/sweeps/{id}"))?;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{CLEAR}{}", sweep_text(&sweep, LIVE_ROWS));
                let _ = out.flush();
            } else if !client.json {
                println!("{}", event_line(event, &words));
            }
            Ok(event["type"].as_str() == Some("end"))
        })?;
        if ended {
            break;
        }
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(ClientError::Unreachable {
                url: client.url(&path),
                reason: "the event stream kept dropping".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let sweep = client.get(&format!("/sweeps/{id}"))?;
    if client.json {
        Client::print_json(&sweep);
    } else {
        if live {
            print!("{CLEAR}");
        }
        print_sweep(&sweep, LIVE_ROWS);
    }
    match (sweep["state"].as_str(), sweep["best"].is_object()) {
        (Some("REVOKED"), _) => Err(ClientError::SweepRevoked { id: id.to_string() }),
        (_, false) => Err(ClientError::SweepFailed { id: id.to_string() }),
        _ => Ok(()),
    }
}

/// The words of a sweep's event lines.
struct Words {
    /// `epochs`, or `trees` for gbdt.
    unit: &'static str,
    metric: String,
}

impl Words {
    fn of(sweep: &Value) -> Words {
        Words {
            unit: if sweep["model_type"].as_str() == Some("gbdt") {
                "trees"
            } else {
                "epochs"
            },
            metric: cell(&sweep["metric"]),
        }
    }
}

/// One line for a sweep event.
fn event_line(event: &Value, words: &Words) -> String {
    let Words { unit, metric: name } = words;
    let trial = cell(&event["trial"]);
    match event["type"].as_str().unwrap_or("") {
        "created" => format!(
            "created {} with {} trials, ranked by {}",
            cell(&event["name"]),
            cell(&event["trials"]),
            cell(&event["metric"])
        ),
        "trial_started" => format!(
            "trial {trial} started: task {} {}",
            cell(&event["task_id"]),
            params(&event["params"])
        ),
        "rung" => format!(
            "trial {trial} after {} {unit}: {name} {} ({})",
            cell(&event["step"]),
            metric(&event["value"]),
            cell(&event["decision"])
        ),
        "trial_ended" => format!(
            "trial {trial} ended {} after {} {unit}: {name} {}",
            cell(&event["state"]),
            cell(&event["resource"]),
            metric(&event["metric"])
        ),
        "cancel_requested" => "cancel requested".to_string(),
        "end" => format!(
            "ended {}: best trial {}",
            cell(&event["state"]),
            cell(&event["best_trial"])
        ),
        other => format!("{other}: {event}"),
    }
}

/// Prints `GET /sweeps`'s answer as a table.
pub fn print_list(answer: &Value) {
    let mut rows = vec![
        [
            "ID", "NAME", "STATE", "MODEL", "TRIALS", "RUNNING", "DONE", "STOPPED", "FAILED",
            "METRIC", "BEST",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in answer["sweeps"].as_array().into_iter().flatten() {
        let c = &s["counts"];
        let total: u64 = [
            "waiting",
            "running",
            "completed",
            "stopped_early",
            "failed",
            "revoked",
        ]
        .iter()
        .filter_map(|k| c[*k].as_u64())
        .sum();
        rows.push(vec![
            cell(&s["sweep_id"]),
            cell(&s["name"]),
            cell(&s["state"]),
            cell(&s["model_type"]),
            total.to_string(),
            cell(&c["running"]),
            cell(&c["completed"]),
            cell(&c["stopped_early"]),
            cell(&c["failed"]),
            format!("{} ({})", cell(&s["metric"]), cell(&s["mode"])),
            metric(&s["best"]["metric"]),
        ]);
    }
    println!("{}", table(&rows));
}

/// Prints a sweep (`GET /sweeps/{id}`): its head, its `top` best trials, the best one.
pub fn print_sweep(sweep: &Value, top: usize) {
    println!("{}", sweep_text(sweep, top));
}

/// A sweep as text: a head line, the table of its `top` best trials, the best trial and
/// how to predict with it.
pub fn sweep_text(sweep: &Value, top: usize) -> String {
    let c = &sweep["counts"];
    let mut text = format!(
        "sweep {} ({}) {}: {} running, {} waiting, {} completed, {} stopped early, {} failed, \
         {} revoked; resource {} of {}\n",
        cell(&sweep["sweep_id"]),
        cell(&sweep["name"]),
        cell(&sweep["state"]),
        cell(&c["running"]),
        cell(&c["waiting"]),
        cell(&c["completed"]),
        cell(&c["stopped_early"]),
        cell(&c["failed"]),
        cell(&c["revoked"]),
        cell(&sweep["resource_used"]),
        cell(&sweep["resource_full"]),
    );
    let trials: Vec<&Value> = sweep["trials"].as_array().into_iter().flatten().collect();
    let ranked = rank(&trials, sweep["mode"].as_str() == Some("max"));
    let best_trial = sweep["best"]["trial"].as_u64();
    let name = cell(&sweep["metric"]);
    let mut rows = vec![vec![
        "TRIAL".to_string(),
        "STATE".into(),
        "RESOURCE".into(),
        format!("LATEST_{}", name.to_uppercase()),
        format!("BEST_{}", name.to_uppercase()),
        "TASK".into(),
        "PARAMS".into(),
    ]];
    for t in ranked.iter().take(top) {
        let mark = if t["trial"].as_u64().is_some() && t["trial"].as_u64() == best_trial {
            "*"
        } else {
            ""
        };
        rows.push(vec![
            format!("{}{mark}", cell(&t["trial"])),
            cell(&t["state"]),
            cell(&t["resource"]),
            metric(&t["latest_metric"]),
            metric(&t["best_metric"]),
            cell(&t["task_id"]),
            params(&t["params"]),
        ]);
    }
    text.push_str(&table(&rows));
    if ranked.len() > top {
        text.push_str(&format!("\n({} more trials)", ranked.len() - top));
    }
    let best = &sweep["best"];
    if best.is_object() {
        let task = cell(&best["task_id"]);
        text.push_str(&format!(
            "\nbest trial {}: {name} {}, test_r2 {}, task {task} {}",
            cell(&best["trial"]),
            metric(&best["metric"]),
            metric(&best["test_r2"]),
            params(&best["params"]),
        ));
        if sweep["state"].as_str() != Some("RUNNING") {
            text.push_str(&format!(
                "\npredict with it: trainyard predict {task} --row V1,V2,... \
                 (or POST /models/{task}/predict)"
            ));
        }
    }
    let registered = &sweep["registered"];
    if !registered.is_object() && sweep["register"].is_object() && sweep["state"] == "REVOKED" {
        text.push_str(&format!(
            "\nnot registered as {}: the sweep was cancelled",
            cell(&sweep["register"]["name"])
        ));
    }
    if registered.is_object() {
        let name = cell(&registered["name"]);
        match registered["version"].as_u64() {
            Some(v) => {
                let promoted = match sweep["register"]["promote_alias"].as_str() {
                    Some(alias) if registered["promoted"] == true => {
                        format!(", alias {alias} moved to it")
                    }
                    Some(alias) => format!(", alias {alias} left where it was (not better)"),
                    None => String::new(),
                };
                text.push_str(&format!(
                    "
registered as {name} version {v}{promoted}: \
                     trainyard models predict {name} --version {v} --row V1,V2,..."
                ));
            }
            None => text.push_str(&format!(
                "
not registered as {name}: {}",
                cell(&registered["error"])
            )),
        }
    }
    text
}

/// The trials best first: those with a metric by their latest one (the end's, as the
/// sweep's best is chosen; `max`: highest first), then the others by number.
fn rank<'a>(trials: &[&'a Value], max: bool) -> Vec<&'a Value> {
    let mut ranked = trials.to_vec();
    ranked.sort_by(|a, b| {
        let (x, y) = (a["latest_metric"].as_f64(), b["latest_metric"].as_f64());
        match (x, y) {
            (Some(x), Some(y)) if max => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a["trial"].as_u64().cmp(&b["trial"].as_u64()),
        }
    });
    ranked
}

/// A metric to 4 significant digits, `-` when absent.
fn metric(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) => format!("{v:.3e}"),
        Some(v) => {
            let digits = (4 - (v.abs().log10().floor() as i32 + 1)).clamp(0, 8) as usize;
            format!("{v:.digits$}")
        }
        None => "-".to_string(),
    }
}

/// A trial's parameters as `name=value` pairs, numbers to 4 significant digits.
fn params(value: &Value) -> String {
    value
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(k, v)| match v {
                    Value::Number(n) if n.is_f64() => format!("{k}={}", metric(v)),
                    other => format!("{k}={}", cell(other).replace(' ', "")),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trials_are_ranked_best_first_and_the_best_is_marked() {
        let sweep = json!({
            "sweep_id": "s1", "name": "search", "state": "SUCCESS", "metric": "val_loss",
            "mode": "min", "counts": {"completed": 2, "stopped_early": 1, "running": 0,
            "waiting": 1, "failed": 0, "revoked": 0}, "resource_used": 9, "resource_full": 16,
            "best": {"trial": 2, "task_id": "t2", "metric": 0.0123456, "params": {}, "test_r2": 0.9},
            "trials": [
                {"trial": 0, "state": "STOPPED", "params": {"learning_rate": 0.0123456},
                 "resource": 1, "latest_metric": 0.5, "best_metric": 0.5, "task_id": "t0"},
                {"trial": 1, "state": "WAITING", "params": {"hidden_sizes": [16, 8]}},
                {"trial": 2, "state": "SUCCESS", "params": {}, "resource": 4,
                 "latest_metric": 0.0123456, "best_metric": 0.0123456, "task_id": "t2"},
                {"trial": 3, "state": "SUCCESS", "params": {}, "resource": 4,
                 "latest_metric": 0.2, "best_metric": 0.1, "task_id": "t3"},
            ]
        });
        let text = sweep_text(&sweep, 3);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("sweep s1 (search) SUCCESS"), "{text}");
        assert!(
            lines[2].starts_with("2*") && lines[2].contains("0.01235"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("3 ") && lines[4].starts_with("0 "),
            "{text}"
        );
        assert!(lines[4].contains("learning_rate=0.01235"), "{text}");
        assert!(text.contains("(1 more trials)"), "{text}");
        assert!(text.contains("best trial 2: val_loss 0.01235"), "{text}");
        assert!(text.contains("trainyard predict t2"), "{text}");
        // max: the highest first.
        let mut sweep = sweep;
        sweep["mode"] = json!("max");
        let text = sweep_text(&sweep, 10);
        assert!(text.lines().nth(2).unwrap().starts_with("0 "), "{text}");
        assert!(text.contains("hidden_sizes=[16,8]"), "{text}");
    }

    #[test]
    fn events_read_as_lines() {
        let words = Words::of(&json!({"model_type": "gbdt", "metric": "val_r2"}));
        let line = event_line(
            &json!({"type": "rung", "trial": 3, "step": 20, "value": 0.25, "decision": "stop"}),
            &words,
        );
        assert_eq!(line, "trial 3 after 20 trees: val_r2 0.2500 (stop)");
        let line = event_line(
            &json!({"type": "trial_ended", "trial": 3, "state": "STOPPED", "resource": 20,
                "metric": 0.25}),
            &words,
        );
        assert_eq!(line, "trial 3 ended STOPPED after 20 trees: val_r2 0.2500");
        let line = event_line(
            &json!({"type": "end", "state": "SUCCESS", "best_trial": 1}),
            &words,
        );
        assert_eq!(line, "ended SUCCESS: best trial 1");
    }
}
