//! Who may call what, and from where (issue 25): no open API off loopback, tokens with roles,
//! and no state changed by a web page of another site (Content-Type, Origin and Host checks).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Node, TestStore, free_port, http_agent, poll, read_json, temp_dir};
use serde_json::json;

const READ: &str = "read-token-0123456789";
const SUBMIT: &str = "submit-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// `[[http.tokens]]` as an environment override: read and admin as tokens, submit as its
/// SHA-256 only.
fn tokens_env() -> String {
    let submit_sha256 = {
        use std::io::Write;
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(SUBMIT.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    format!(
        r#"[{{name = "dash", role = "read", token = "{READ}"}},
            {{name = "ci", role = "submit", sha256 = "{submit_sha256}"}},
            {{name = "ops", role = "admin", token = "{ADMIN}"}}]"#
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn an_open_api_on_an_address_other_than_loopback_is_refused_unless_asked_for() {
    let up = |env: &[(&str, &str)]| {
        let data = temp_dir("open-api");
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
        command
            .args(["up", "--trainers", "1", "--http"])
            .arg(format!("0.0.0.0:{}", free_port()))
            .arg("--data")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        command.spawn().unwrap()
    };
    // No token: the node does not start, and says which key to set.
    let out = up(&[]).wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an open API off loopback started: {log}"
    );
    assert!(
        log.contains("http.token") && log.contains("allow_unauthenticated"),
        "{log}"
    );

    // A short token is refused too: a guessable secret on a network.
    let out = up(&[("TRAINYARD_HTTP__TOKEN", "short")])
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16"));

    // Opting out starts the node, with a warning at the start.
    let log_file = temp_dir("open-api-log").join("stderr");
    let mut child = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainyard"));
        let port = free_port();
        command
            .args(["up", "--trainers", "1", "--http"])
            .arg(format!("0.0.0.0:{port}"))
            .arg("--data")
            .arg(temp_dir("open-api"))
            .env("RUST_LOG", "warn")
            .env("TRAINYARD_HTTP__ALLOW_UNAUTHENTICATED", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap());
        let child = command.spawn().unwrap();
        poll(Duration::from_secs(60), "the open node to answer", || {
            read_json(
                http_agent(Duration::from_secs(5))
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .call(),
            )
            .filter(|(status, _)| *status == 200)
        });
        child
    };
    let log = std::fs::read_to_string(&log_file).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("the API is open"), "{log}");
}

#[test]
fn tokens_have_roles_and_admin_actions_are_logged_with_the_token_s_name() {
    let log = temp_dir("roles").join("stderr");
    let node = Node::up_logged(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_HTTP__TOKENS", &tokens_env()),
            ("RUST_LOG", "warn,trainyard::audit=info"),
        ],
        &log,
    );
    let (read, submit, admin) = (bearer(READ), bearer(SUBMIT), bearer(ADMIN));
    let train = |auth: &str| {
        node.request(
            "POST",
            "/train/linear/async",
            &[("authorization", auth)],
            Some((Some("application/json"), br#"{"epochs": 1}"#)),
        )
    };

    // No token, a wrong one, or one in the query string of a route that is not a stream: 401.
    for (path, headers) in [
        ("/tasks", vec![]),
        (
            "/tasks",
            vec![("authorization", "Bearer nope-nope-nope-nope")],
        ),
        (&*format!("/tasks?token={READ}"), vec![]),
    ] {
        let (status, answer) = node.request("GET", path, &headers, None);
        assert_eq!(
            (status, &answer["error"]["code"]),
            (401, &json!("unauthorized")),
            "{path}"
        );
    }

    // read: reads, and is told which role a write needs.
    assert_eq!(
        node.request("GET", "/tasks", &[("authorization", &read)], None)
            .0,
        200
    );
    let (status, answer) = train(&read);
    assert_eq!(
        (status, &answer["error"]["code"]),
        (403, &json!("forbidden")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submit role"),
        "{answer}"
    );

    // submit (given in the config as its SHA-256 only): trains, in any case of the scheme.
    let (status, answer) = train(&format!("bEaReR {SUBMIT}"));
    assert_eq!(status, 202, "{answer}");
    let id = answer["task_id"].as_str().unwrap().to_string();
    let (status, answer) = node.request("DELETE", "/queue", &[("authorization", &submit)], None);
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin role")
    );

    // A client may send ?token= everywhere: /tasks and POST /datasets do not refuse it.
    let (status, answer) = node.request(
        "GET",
        &format!("/tasks?token={SUBMIT}"),
        &[("authorization", &submit)],
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = node.request(
        "POST",
        &format!("/datasets?name=d&target=y&token={SUBMIT}"),
        &[("authorization", &submit)],
        Some((Some("text/csv"), b"a,y\n1,2\n2,4\n3,6\n")),
    );
    assert_eq!(status, 201, "{answer}");

    // Event streams take the token from the query string (EventSource sends no headers).
    let response = http_agent(Duration::from_secs(10))
        .get(format!("{}/task/{id}/events?token={READ}", node.url))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // admin: purges; the log names the token.
    let (status, answer) = node.request("DELETE", "/queue", &[("authorization", &admin)], None);
    assert_eq!(status, 200, "{answer}");
    let logged = poll(
        Duration::from_secs(10),
        "the admin action in the log",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|text| text.contains("admin action"))
        },
    );
    assert!(
        logged.contains("ops") && logged.contains("DELETE /queue"),
        "{logged}"
    );
    assert!(!logged.contains(ADMIN), "the token itself is never logged");
}

#[test]
fn a_page_of_another_site_changes_nothing() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let json_body = Some((Some("application/json"), &br#"{"epochs": 100000}"#[..]));
    let (status, answer) = node.request("POST", "/train/mlp/async", &[], json_body);
    assert_eq!(status, 202, "{answer}");
    let id = answer["task_id"].as_str().unwrap().to_string();
    let own_origin = node.url.clone();

    let refused = [
        // A form or fetch with no preflight: text/plain, or no content type at all.
        (
            "POST",
            "/train/mlp/async".to_string(),
            vec![],
            Some((Some("text/plain"), &b"{}"[..])),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            vec![],
            Some((None, &b"{\"epochs\": 1}"[..])),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/datasets?name=d&target=y".into(),
            vec![],
            Some((Some("text/plain"), &b"a,y\n1,2\n"[..])),
            415,
            "unsupported_media_type",
        ),
        // Another origin, with or without a body.
        (
            "POST",
            format!("/task/{id}/cancel"),
            vec![("origin", "http://attacker.example")],
            None,
            403,
            "origin_not_allowed",
        ),
        (
            "DELETE",
            "/queue".into(),
            vec![("origin", "null")],
            None,
            403,
            "origin_not_allowed",
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            vec![("origin", "http://attacker.example")],
            json_body,
            403,
            "origin_not_allowed",
        ),
        // DNS rebinding: the attacker's name, resolved to this node.
        (
            "GET",
            "/tasks".into(),
            vec![("host", "attacker.example")],
            None,
            421,
            "host_not_allowed",
        ),
    ];
    for (method, path, headers, body, status, code) in refused {
        let (got, answer) = node.request(method, &path, &headers, body);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {headers:?}: {answer}"
        );
    }
    assert_ne!(
        node.state(&id),
        "REVOKED",
        "the cancel from another site did nothing"
    );
    assert_eq!(node.get("/tasks").1["count"], 1, "nothing else was stored");

    // The node's own page may.
    let (status, answer) = node.request(
        "POST",
        &format!("/task/{id}/cancel"),
        &[("origin", &own_origin)],
        None,
    );
    assert!(
        answer["success"] == true && status < 300,
        "{status} {answer}"
    );
}

#[test]
fn origins_and_host_names_the_operator_lists_are_accepted() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            (
                "TRAINYARD_HTTP__ALLOWED_ORIGINS",
                r#"["https://panel.example.com"]"#,
            ),
            ("TRAINYARD_HTTP__ALLOWED_HOSTS", r#"["trainyard.internal"]"#),
        ],
    );
    let body = Some((Some("application/json"), &br#"{"epochs": 1}"#[..]));
    let (status, answer) = node.request(
        "POST",
        "/train/linear/async",
        &[
            ("origin", "https://panel.example.com"),
            ("host", "trainyard.internal:5000"),
        ],
        body,
    );
    assert_eq!(status, 202, "{answer}");
    let (status, _) = node.request("GET", "/tasks", &[("host", "localhost")], None);
    assert_eq!(status, 200);
}

#[test]
fn the_panel_is_sent_with_a_content_security_policy() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let response = http_agent(Duration::from_secs(10))
        .get(format!("{}/", node.url))
        .call()
        .unwrap();
    let csp = response
        .headers()
        .get("content-security-policy")
        .expect("a Content-Security-Policy header")
        .to_str()
        .unwrap()
        .to_string();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = response.into_body().read_to_string().unwrap();
    assert!(page.contains("sessionStorage") && !page.contains("localStorage"));
}
