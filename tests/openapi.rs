//! The OpenAPI document: the committed copy (`docs/openapi.json`) is what the binary
//! generates, every route of the route table is in it, and real answers of a node, successes
//! and refusals, match the schemas it gives for their route and status.

mod common;

use std::time::Duration;

use common::{Node, TestStore};
use serde_json::{Value, json};
use trainyard::http::routes::Route;

/// The document as `trainyard openapi` prints it.
fn generated() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .arg("openapi")
        .output()
        .expect("trainyard runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn the_committed_document_is_what_the_binary_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated(),
        "docs/openapi.json differs from what the binary generates: the API changed without its \
         document; run `cargo run -- openapi > docs/openapi.json` and commit it"
    );
}

#[test]
fn every_route_is_documented_and_every_operation_is_a_route() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    // The documentation itself and the panel's page are not operations of the API.
    let undocumented = [Route::Panel, Route::OpenApi, Route::Docs, Route::DocsFile];
    let mut routes: Vec<String> = Route::all()
        .filter(|r| !undocumented.contains(r))
        .map(|r| format!("{} {}", r.method(), r.template()))
        .collect();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.push(format!("{} {path}", method.to_uppercase()));
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for (status, response) in responses {
                assert!(
                    !response["description"].as_str().unwrap_or("").is_empty(),
                    "{method} {path} {status} is not described"
                );
            }
        }
    }
    routes.sort();
    operations.sort();
    assert_eq!(routes, operations);
}

/// Checks `body`, the answer of `method template` with `status`, against the document.
fn check(doc: &Value, method: &str, template: &str, status: u16, body: &Value) -> Option<String> {
    let op = &doc["paths"][template][method.to_lowercase()];
    if op.is_null() {
        return Some(format!("{method} {template}: no such operation"));
    }
    let response = &op["responses"][status.to_string()];
    if response.is_null() {
        return Some(format!(
            "{method} {template}: status {status} is not documented ({body})"
        ));
    }
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Some(format!("{method} {template} {status}: no JSON schema"));
    }
    // The response's schema, with the document's components beside it for its `$ref`s.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = match jsonschema::validator_for(&root) {
        Ok(v) => v,
        Err(e) => return Some(format!("{method} {template} {status}: bad schema: {e}")),
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| {
        format!(
            "{method} {template} {status}: {} in {body}",
            errors.join("; ")
        )
    })
}

/// A request: method, path, the route's template, and a body with its content type.
type Request<'a> = (&'a str, String, &'a str, Option<(&'a str, &'a [u8])>);

#[test]
fn real_answers_match_the_document() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    // The node serves the same document, and Swagger UI.
    let (status, served) = node.get("/openapi.json");
    assert_eq!((status, &served), (200, &doc));
    let mut wrong = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut call = |method: &str, path: &str, template: &str, body: Option<(&str, &[u8])>| {
        let (status, answer) = node.request(method, path, &[], body.map(|(ct, b)| (Some(ct), b)));
        seen.insert(format!("{method} {template} {status}"));
        if let Some(problem) = check(&doc, method, template, status, &answer) {
            wrong.push(problem);
        }
        answer
    };
    let post = |body: &'static str| Some(("application/json", body.as_bytes()));

    // Training, the task routes, and predictions from its model.
    let answer = call(
        "POST",
        "/train/mlp/async",
        "/train/{model_type}/async",
        post("{\"epochs\": 2}"),
    );
    let id = answer["task_id"].as_str().unwrap().to_string();
    node.wait_for(&id, "SUCCESS", Duration::from_secs(120));
    let old = call(
        "POST",
        "/train/tensorflow?wait_s=120",
        "/train/{model_type}",
        post("{\"epochs\": 2}"),
    );
    assert_eq!(old["state"], "SUCCESS", "{old}");
    call(
        "GET",
        &format!("/task/{id}/status"),
        "/task/{id}/status",
        None,
    );
    call(
        "GET",
        &format!("/task/{id}/result"),
        "/task/{id}/result",
        None,
    );
    call("GET", &format!("/task/{id}"), "/task/{id}", None);
    call("GET", "/tasks?limit=5", "/tasks", None);
    call(
        "POST",
        &format!("/task/{id}/cancel"),
        "/task/{id}/cancel",
        None,
    );
    let rows = "{\"rows\": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]}";
    call(
        "POST",
        &format!("/models/{id}/predict"),
        "/models/{id}/predict",
        post(rows),
    );
    let pending = call(
        "POST",
        "/train/gbdt/async",
        "/train/{model_type}/async",
        post("{\"priority\": 1, \"device\": \"gpu\"}"),
    );
    let pending = pending["task_id"].as_str().unwrap().to_string();
    call(
        "GET",
        &format!("/task/{pending}/status"),
        "/task/{id}/status",
        None,
    );
    call("GET", &format!("/task/{pending}"), "/task/{id}", None);
    call(
        "POST",
        &format!("/task/{pending}/cancel"),
        "/task/{id}/cancel",
        None,
    );
    call(
        "GET",
        &format!("/task/{pending}/result"),
        "/task/{id}/result",
        None,
    );

    // Data sets.
    let csv = b"a,b,y\n1,2,3\n2,3,5\n3,4,7\n4,5,9\n5,6,11\n";
    let upload = call(
        "POST",
        "/datasets?name=lines&target=y",
        "/datasets",
        Some(("text/csv", csv)),
    );
    let dataset = upload["dataset_id"].as_str().unwrap().to_string();
    call("GET", "/datasets", "/datasets", None);
    call(
        "DELETE",
        &format!("/datasets/{dataset}"),
        "/datasets/{id}",
        None,
    );

    // The cluster.
    let nodes = call("GET", "/cluster/nodes", "/cluster/nodes", None);
    let name = nodes["node"].as_str().unwrap().to_string();
    call(
        "POST",
        &format!("/cluster/nodes/{name}/drain"),
        "/cluster/nodes/{name}/{action}",
        None,
    );
    call("GET", "/readyz", "/readyz", None);
    call(
        "POST",
        &format!("/cluster/nodes/{name}/resume"),
        "/cluster/nodes/{name}/{action}",
        None,
    );
    call("DELETE", "/queue", "/queue", None);
    call("GET", "/cluster/health", "/cluster/health", None);
    call("GET", "/celery/health", "/celery/health", None);
    call("GET", "/healthz", "/healthz", None);
    call("GET", "/readyz", "/readyz", None);

    // Schedules.
    let schedule = "{\"name\": \"nightly\", \"cron\": \"0 3 * * *\", \"model_type\": \"mlp\", \
                    \"request\": {\"epochs\": 5}}";
    call("POST", "/schedules", "/schedules", post(schedule));
    call("POST", "/schedules", "/schedules", post(schedule));
    call("GET", "/schedules", "/schedules", None);
    call("GET", "/schedules/nightly", "/schedules/{name}", None);
    call(
        "POST",
        "/schedules/nightly/pause",
        "/schedules/{name}/{action}",
        None,
    );
    call("DELETE", "/schedules/nightly", "/schedules/{name}", None);

    // The model registry.
    let register = format!("{{\"name\": \"prices\", \"task_id\": \"{id}\"}}");
    let register = Some(("application/json", register.as_bytes()));
    call("POST", "/models", "/models", register);
    call("POST", "/models", "/models", register);
    call("POST", "/models", "/models", post("{}"));
    call("GET", "/models", "/models", None);
    call("GET", "/models/prices", "/models/{name}", None);
    call("GET", "/models/nothing", "/models/{name}", None);
    let alias = "/models/{name}/aliases/{alias}";
    let version = Some(("application/json", &b"{\"version\": 1}"[..]));
    call("PUT", "/models/prices/aliases/production", alias, version);
    call(
        "PUT",
        "/models/prices/aliases/production",
        alias,
        post("{}"),
    );
    let rows8 = "{\"rows\": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}";
    call(
        "POST",
        "/models/prices/predict",
        "/models/{id}/predict",
        post(rows8),
    );
    let by_version = "/models/{name}/versions/{version}/predict";
    call(
        "POST",
        "/models/prices/versions/1/predict",
        by_version,
        post(rows8),
    );
    call(
        "POST",
        "/models/prices/versions/9/predict",
        by_version,
        post(rows8),
    );
    let by_alias = "/models/{name}/aliases/{alias}/predict";
    call(
        "POST",
        "/models/prices/aliases/production/predict",
        by_alias,
        post(rows8),
    );
    call(
        "POST",
        "/models/prices/aliases/staging/predict",
        by_alias,
        post(rows8),
    );
    let delete = "/models/{name}/versions/{version}";
    call("DELETE", "/models/prices/versions/1", delete, None);
    call("DELETE", "/models/prices/versions/2", delete, None);
    call("DELETE", "/models/prices/versions/2", delete, None);

    // Refusals: each documented with its status and the error body.
    let uuid = "9b2f2d7e-0000-4000-8000-000000000000";
    let bad: Vec<Request> = vec![
        (
            "POST",
            "/train/resnet/async".into(),
            "/train/{model_type}/async",
            post("{}"),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            post("{\"epochs\": 0}"),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            post("{\"epoch\": 5}"),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            post("{"),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            Some(("text/plain", b"{}")),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            post("{\"hidden_sizes\": [4096, 4096, 4096, 4096, 4096]}"),
        ),
        (
            "POST",
            "/train/mlp/async".into(),
            "/train/{model_type}/async",
            post("{\"dataset\": \"nope\"}"),
        ),
        (
            "POST",
            "/train/mlp?wait_s=-1".into(),
            "/train/{model_type}",
            post("{}"),
        ),
        (
            "POST",
            "/train/mlp?colour=red".into(),
            "/train/{model_type}",
            post("{}"),
        ),
        (
            "GET",
            "/task/not-a-uuid/status".into(),
            "/task/{id}/status",
            None,
        ),
        (
            "GET",
            format!("/task/{uuid}/status"),
            "/task/{id}/status",
            None,
        ),
        (
            "GET",
            format!("/task/{uuid}/result"),
            "/task/{id}/result",
            None,
        ),
        ("GET", format!("/task/{uuid}"), "/task/{id}", None),
        ("GET", "/task/12345".into(), "/task/{id}", None),
        (
            "POST",
            format!("/task/{uuid}/cancel"),
            "/task/{id}/cancel",
            None,
        ),
        (
            "POST",
            format!("/task/{id}/cancel"),
            "/task/{id}/cancel",
            None,
        ),
        ("GET", "/tasks?state=DONE".into(), "/tasks", None),
        ("GET", "/tasks?colour=red".into(), "/tasks", None),
        ("GET", "/tasks?limit=0".into(), "/tasks", None),
        (
            "POST",
            "/datasets?name=d".into(),
            "/datasets",
            Some(("text/csv", b"a,y\n1,2\n")),
        ),
        (
            "POST",
            "/datasets?name=d&target=y&x=1".into(),
            "/datasets",
            Some(("text/csv", b"a,y\n1,2\n")),
        ),
        (
            "POST",
            "/datasets?name=d&target=y".into(),
            "/datasets",
            post("{}"),
        ),
        (
            "POST",
            "/datasets?name=d&target=y".into(),
            "/datasets",
            Some(("text/csv", b"a,b\n1,2\n")),
        ),
        (
            "DELETE",
            format!("/datasets/{uuid}"),
            "/datasets/{id}",
            None,
        ),
        ("DELETE", "/datasets/nope".into(), "/datasets/{id}", None),
        (
            "POST",
            format!("/models/{uuid}/predict"),
            "/models/{id}/predict",
            post(rows),
        ),
        (
            "POST",
            format!("/models/{pending}/predict"),
            "/models/{id}/predict",
            post(rows),
        ),
        (
            "POST",
            format!("/models/{id}/predict"),
            "/models/{id}/predict",
            post("{\"rows\": [[1]]}"),
        ),
        (
            "POST",
            "/models/nope/predict".into(),
            "/models/{id}/predict",
            post(rows),
        ),
        (
            "POST",
            "/cluster/nodes/nobody/drain".into(),
            "/cluster/nodes/{name}/{action}",
            None,
        ),
        (
            "POST",
            format!("/cluster/nodes/{name}/jump"),
            "/cluster/nodes/{name}/{action}",
            None,
        ),
        (
            "POST",
            "/schedules".into(),
            "/schedules",
            post("{\"name\": \"x\"}"),
        ),
        (
            "POST",
            "/schedules".into(),
            "/schedules",
            post("{\"name\": \"x\", \"cron\": \"nope\", \"model_type\": \"mlp\"}"),
        ),
        ("GET", "/schedules/nobody".into(), "/schedules/{name}", None),
        (
            "DELETE",
            "/schedules/nobody".into(),
            "/schedules/{name}",
            None,
        ),
        (
            "POST",
            "/schedules/nobody/pause".into(),
            "/schedules/{name}/{action}",
            None,
        ),
    ];
    for (method, path, template, body) in &bad {
        let answer = call(method, path, template, *body);
        assert_eq!(answer["success"], false, "{method} {path}: {answer}");
    }
    assert!(
        wrong.is_empty(),
        "answers that do not match the document:\n{}",
        wrong.join("\n")
    );
    assert!(
        seen.len() >= 45,
        "{} route and status pairs checked",
        seen.len()
    );
}

#[test]
fn swagger_ui_is_served_from_the_binary() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    let agent = common::http_agent(Duration::from_secs(10));
    let page = agent.get(format!("{}/docs/", node.url)).call().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.into_body().read_to_string().unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let init = agent
        .get(format!("{}/docs/swagger-initializer.js", node.url))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let (status, answer) = node.get("/docs/nothing.js");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
