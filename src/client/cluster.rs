//! The cluster verbs: `nodes`, `health`, `purge`, `drain NODE` and `resume NODE`.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::{Body, Client, ClientError, cell, table};

/// `trainyard drain NODE`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node's name (as `trainyard nodes` lists it).
    pub node: String,
    /// Wait until the node's running tasks have ended.
    #[arg(long)]
    pub wait: bool,
}

/// `trainyard resume NODE`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The node's name (as `trainyard nodes` lists it).
    pub node: String,
}

/// `trainyard nodes`: the cluster as a table, one row per trainer.
pub fn nodes(client: &Client) -> Result<(), ClientError> {
    let answer = client.get("/cluster/nodes")?;
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{}", nodes_table(&answer));
    }
    Ok(())
}

/// `trainyard health`: the cluster's health (`GET /cluster/health`); unhealthy is exit 4.
pub fn health(client: &Client) -> Result<(), ClientError> {
    let (status, answer) = client.send("GET", "/cluster/health", &[], Body::None)?;
    // 503 with the health itself is an unhealthy cluster; any other refusal is an error.
    if status != 200 && !(status == 503 && answer["status"].is_string()) {
        return Err(ClientError::refusal(status, &answer));
    }
    if client.json {
        Client::print_json(&answer);
    } else {
        let cluster = &answer["cluster"];
        println!(
            "{}  node {}  store {}  queue {}  trainers {}  nodes {}  leader {}",
            cell(&answer["status"]),
            cell(&answer["node"]),
            cell(&answer["store"]),
            cell(&answer["queue_depth"]),
            cell(&answer["workers"]),
            cell(&cluster["nodes"]),
            cell(&cluster["leader"]),
        );
    }
    if status == 200 && answer["status"] == "healthy" {
        return Ok(());
    }
    Err(ClientError::Unhealthy(format!(
        "status {}, store {}",
        cell(&answer["status"]),
        cell(&answer["store"])
    )))
}

/// `trainyard purge`: revokes every pending task.
pub fn purge(client: &Client) -> Result<(), ClientError> {
    let answer = client.delete("/queue")?;
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{} pending tasks revoked", answer["purged"]);
    }
    Ok(())
}

/// `trainyard drain NODE` (or `resume`, `action`): with `wait`, until the node's running tasks
/// ended.
pub fn drain(client: &Client, node: &str, action: &str, wait: bool) -> Result<(), ClientError> {
    let answer = client.post(&format!("/cluster/nodes/{node}/{action}"))?;
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{}", answer["message"].as_str().unwrap_or(""));
    }
    if !(wait && action == "drain") {
        return Ok(());
    }
    loop {
        let nodes = client.get("/cluster/nodes")?;
        let drained = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == node && n["drained"] == true);
        if drained {
            if !client.json {
                println!("node {node} is drained");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn nodes_table(answer: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut rows = vec![
        [
            "NODE", "ROLE", "LINK", "HTTP", "CLUSTER", "TRAINER", "DEVICE", "STATE", "TASK",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for node in answer["nodes"].as_array().into_iter().flatten() {
        let role = if node["leader"] == true {
            "leader"
        } else {
            "follower"
        };
        let link = match (node["alive"] == true, node["connected"] == true) {
            (false, _) => "down",
            (true, true) => "connected",
            (true, false) => "unreachable",
        };
        let link = if node["draining"] == true {
            format!("{link},draining")
        } else {
            link.to_string()
        };
        let trainers = node["trainers"].as_array().cloned().unwrap_or_default();
        for (i, t) in trainers.iter().enumerate() {
            let first = i == 0;
            let keep = |s: String| if first { s } else { String::new() };
            rows.push(vec![
                keep(text(&node["name"])),
                keep(role.to_string()),
                keep(link.clone()),
                keep(text(&node["http"])),
                keep(text(&node["cluster"])),
                text(&t["name"]),
                text(&t["device"]),
                text(&t["state"]),
                text(&t["task_id"]),
            ]);
        }
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_print_as_a_table() {
        let answer = serde_json::json!({"nodes": [
            {"name": "node-a", "leader": true, "alive": true, "connected": true,
             "http": "127.0.0.1:5000", "cluster": "127.0.0.1:4700", "trainers": [
                {"name": "node-a/cpu-0", "device": "cpu", "state": "busy", "task_id": "t1"},
                {"name": "node-a/cpu-1", "device": "cpu", "state": "idle", "task_id": null}]},
            {"name": "node-b", "leader": false, "alive": false, "connected": false,
             "http": "127.0.0.1:5001", "cluster": "127.0.0.1:4701", "trainers": [
                {"name": "node-b/cpu-0", "device": "cpu", "state": "down", "task_id": null}]}
        ]});
        let table = nodes_table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("NODE"));
        assert!(
            lines[1].contains("leader") && lines[1].contains("busy") && lines[1].contains("t1")
        );
        assert!(lines[2].trim_start().starts_with("node-a/cpu-1"));
        assert!(lines[3].contains("down") && lines[3].contains("follower"));
    }
}
