//! The deployment files: docker-compose.yml is valid (checked by Debian's docker-compose, which
//! needs no container engine for `config`) and mounts only files of this repository, and the
//! systemd unit passes `systemd-analyze verify`. The compose cluster itself runs from the same
//! files in network namespaces in `tests/faults.rs`
//! (`the_compose_cluster_runs_from_its_own_files`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::compose_config;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_compose_file_is_valid_and_mounts_only_files_that_exist() {
    let config = compose_config();
    let services = config["services"].as_object().unwrap();
    for name in [
        "redis",
        "node-a",
        "node-b",
        "node-c",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "no service {name}");
    }
    let mut mounted = Vec::new();
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            // Bind mounts name a path on the host; named volumes do not.
            let source = match volume {
                Value::String(s) => s.split(':').next().unwrap().to_string(),
                v => v["source"].as_str().unwrap_or_default().to_string(),
            };
            if source.starts_with('/') {
                assert!(
                    Path::new(&source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
                assert!(
                    Path::new(&source).starts_with(repo(".").canonicalize().unwrap()),
                    "{name} mounts {source}, outside the repository"
                );
                mounted.push(source);
            }
        }
        if let Some(build) = service.get("build") {
            let context = build["context"].as_str().unwrap();
            assert!(
                Path::new(context).join("Dockerfile").exists(),
                "{name}: {build}"
            );
        }
    }
    for file in [
        "config/node-a.toml",
        "config/redis.conf",
        "config/prometheus.yml",
        "config/alerts.yml",
        "config/alertmanager.yml",
        "grafana/provisioning",
        "grafana/dashboards",
    ] {
        let path = repo(file).canonicalize().unwrap();
        assert!(
            mounted.iter().any(|m| Path::new(m) == path),
            "compose does not mount {file}"
        );
    }
    // Every node gets its secrets from the environment and dials the others by name.
    for node in ["node-a", "node-b", "node-c"] {
        let env = &services[node]["environment"];
        assert_eq!(env["TRAINYARD_NODE__LISTEN"], "0.0.0.0:4700");
        assert_eq!(services[node]["hostname"], node);
        assert!(
            env["TRAINYARD_NODE__SEEDS"]
                .as_str()
                .unwrap()
                .contains(":4700")
        );
        assert!(env["TRAINYARD_HTTP__TOKEN"].as_str().unwrap().len() >= 16);
    }
}

#[test]
fn the_dockerfile_builds_locked_runs_as_a_user_and_checks_health() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    for needed in [
        "cargo build --release --locked",
        "FROM debian:bookworm-slim",
        "USER trainyard",
        "HEALTHCHECK",
        "/healthz",
    ] {
        assert!(
            dockerfile.contains(needed),
            "the Dockerfile lacks {needed:?}"
        );
    }
    let rust = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .unwrap();
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        rust.starts_with(wanted),
        "the build image (rust:{rust}) is not the crate's rust-version {wanted}"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/trainyard.service")).unwrap();
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // Verified with the binary just built where the unit expects the installed one.
    let dir = std::env::temp_dir().join(format!("trainyard-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trainyard.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/trainyard", env!("CARGO_BIN_EXE_trainyard")),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("Unknown") && !stderr.contains("ignoring"),
        "systemd-analyze verify: {stderr}"
    );
}
