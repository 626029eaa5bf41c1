//! The REST API over real HTTP against a real `trainyard up` process (embedded store).

mod common;

use std::time::Duration;

use common::{Node, SseMessage, TestStore, poll, read_sse};
use serde_json::{Value, json};
use trainyard::store::now_s;

const LONG: Duration = Duration::from_secs(120);

/// Method, path, content type, body, expected status, expected error code.
type BadRequest<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

/// A training that runs until it is stopped (or for minutes).
fn endless() -> Value {
    json!({"epochs": 100000, "hidden_sizes": [64, 64]})
}

fn a_training_goes_from_submit_to_predictions(store: TestStore) {
    let node = Node::up(&store, 2, &[]);
    let (status, answer) = node.post(
        "/train/mlp/async",
        json!({"epochs": 5, "learning_rate": 0.005, "hidden_sizes": [32, 16]}),
    );
    assert_eq!(status, 202);
    assert_eq!(answer["success"], true);
    assert_eq!(answer["message"], "Training task submitted for mlp");
    assert_eq!(answer["model_type"], "mlp");
    let id = answer["task_id"].as_str().unwrap().to_string();

    node.wait_for(&id, "SUCCESS", LONG);
    let (status, s) = node.get(&format!("/task/{id}/status"));
    assert_eq!(status, 200);
    assert_eq!(s["task_id"], id.as_str());
    assert_eq!(s["progress"]["percent"], 100.0);
    assert_eq!(s["progress"]["message"], "Training epoch 5/5");
    for key in ["current", "total", "percent", "message"] {
        assert!(!s["progress"][key].is_null(), "{s}");
    }

    let (status, r) = node.get(&format!("/task/{id}/result"));
    assert_eq!(status, 200);
    assert_eq!(
        (r["success"].clone(), r["state"].clone()),
        (json!(true), json!("SUCCESS"))
    );
    assert_eq!(r["result"]["success"], true);
    assert_eq!(r["result"]["message"], "MLP model trained successfully");
    assert_eq!(r["result"]["model_type"], "mlp");
    for key in [
        "train_r2",
        "test_r2",
        "train_rmse",
        "test_rmse",
        "final_loss",
        "duration_s",
        "samples_per_s",
    ] {
        assert!(r["result"]["metrics"][key].is_f64(), "{key}: {r}");
    }
    assert!(
        r["result"]["metrics"]["test_r2"].as_f64().unwrap() > 0.5,
        "{r}"
    );

    let (status, p) = node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [vec![0.5; 8], vec![0.1; 8]]}),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["predictions"].as_array().unwrap().len(), 2);
    let (status, p) = node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [vec![0.5; 7]]}),
    );
    assert_eq!(
        (status, p["error"]["code"].clone()),
        (422, json!("invalid_input")),
        "{p}"
    );
    // More bad predictions: NaN cannot be sent as JSON; strings, empty input, ragged rows.
    let predict = format!("/models/{id}/predict");
    for (body, status, code) in [
        (
            r#"{"rows": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}"#,
            400,
            "invalid_json",
        ),
        (
            r#"{"rows": [["x", 1, 1, 1, 1, 1, 1, 1]]}"#,
            422,
            "invalid_request",
        ),
        (r#"{"rows": []}"#, 422, "invalid_input"),
        (
            r#"{"rows": [[1,1,1,1,1,1,1,1], [1]]}"#,
            422,
            "invalid_input",
        ),
        (r#"{"rows": [[1e999,1,1,1,1,1,1,1]]}"#, 400, "invalid_json"),
        (r#"{"row": [1]}"#, 422, "invalid_request"),
    ] {
        let (got, p) = node.post_raw(&predict, Some("application/json"), body.as_bytes());
        assert_eq!(
            (got, p["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {p}"
        );
    }

    let (status, list) = node.get("/tasks?state=SUCCESS&model_type=mlp&limit=5");
    assert_eq!(status, 200);
    assert_eq!(list["tasks"][0]["task_id"], id.as_str());
    let (status, health) = node.get("/cluster/health");
    assert_eq!(status, 200);
    assert_eq!(health["trainers"].as_array().unwrap().len(), 2);
    assert_eq!(health["queue_depth"], 0);
    assert_eq!(node.get("/celery/health").0, 200);
}

fn every_model_type_trains_and_all_reports_each(store: TestStore) {
    let node = Node::up(&store, 2, &[]);
    let small = json!({"epochs": 3, "hidden_sizes": [8], "gbdt": {"n_trees": 10}});
    let ids: Vec<(String, &str)> = ["linear", "gbdt", "all"]
        .iter()
        .map(|m| (node.submit(m, small.clone()), *m))
        .collect();
    for (id, model) in &ids {
        node.wait_for(id, "SUCCESS", LONG);
        let (_, r) = node.get(&format!("/task/{id}/result"));
        assert_eq!(r["result"]["model_type"], *model);
        if *model == "all" {
            for member in ["mlp", "linear", "gbdt"] {
                assert!(r["result"]["metrics"][member]["test_r2"].is_f64(), "{r}");
            }
            assert_eq!(r["result"]["message"], "All models trained successfully");
        }
    }
}

fn bad_requests_get_their_status_and_code_and_store_nothing(store: TestStore) {
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_HTTP__MAX_BODY_BYTES", "1000"),
            ("TRAINYARD_HTTP__MAX_UPLOAD_BYTES", "50000"),
        ],
    );
    let uuid = "9b2f2d7e-0000-4000-8000-000000000000";
    let mut cases: Vec<BadRequest> = vec![
        (
            "POST",
            "/train/resnet/async",
            Some("application/json"),
            b"{}".to_vec(),
            404,
            "unknown_model_type",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epochs\": 5".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"[1,2".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epochs\": \"many\"}".to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epochs\": -5}".to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epoch\": 5}".to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epochs\": 0}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"epochs\": 100001}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"learning_rate\": 0}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"hidden_sizes\": [0]}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"hidden_sizes\": [1,1,1,1,1,1,1,1,1]}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"priority\": 10}".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            b"{\"dataset\": \"mnist\"}".to_vec(),
            404,
            "dataset_not_found",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            format!("{{\"dataset\": \"{uuid}\"}}").into_bytes(),
            404,
            "dataset_not_found",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/train/mlp/async",
            Some("application/json"),
            vec![b' '; 2000],
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/train/mlp?wait_s=-1",
            Some("application/json"),
            b"{}".to_vec(),
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/task/not-a-uuid/status",
            None,
            vec![],
            400,
            "invalid_id",
        ),
        (
            "GET",
            "/task/9b2f2d7e-0000-4000-8000-000000000000/status",
            None,
            vec![],
            404,
            "task_not_found",
        ),
        (
            "GET",
            "/task/9b2f2d7e-0000-4000-8000-000000000000/result",
            None,
            vec![],
            404,
            "task_not_found",
        ),
        (
            "POST",
            "/task/9b2f2d7e-0000-4000-8000-000000000000/cancel",
            None,
            vec![],
            404,
            "task_not_found",
        ),
        (
            "POST",
            "/models/9b2f2d7e-0000-4000-8000-000000000000/predict",
            Some("application/json"),
            b"{\"rows\": [[1]]}".to_vec(),
            404,
            "task_not_found",
        ),
        (
            "GET",
            "/tasks?state=DONE",
            None,
            vec![],
            400,
            "invalid_query",
        ),
        ("GET", "/tasks?limit=0", None, vec![], 400, "invalid_query"),
        (
            "GET",
            "/tasks?colour=red",
            None,
            vec![],
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/datasets?name=d",
            Some("text/csv"),
            b"a,y\n1,2\n".to_vec(),
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("application/json"),
            b"a,y\n1,2\n".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            b"".to_vec(),
            422,
            "invalid_csv",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            b"a,b\n1,2\n".to_vec(),
            422,
            "invalid_csv",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            b"a,y\n1,2\n3\n".to_vec(),
            422,
            "invalid_csv",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            b"a,y\n1,x\n".to_vec(),
            422,
            "invalid_csv",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            b"a,y\n\xff,2\n".to_vec(),
            422,
            "invalid_csv",
        ),
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            vec![b'1'; 60000],
            413,
            "body_too_large",
        ),
        ("GET", "/nowhere", None, vec![], 404, "not_found"),
        (
            "GET",
            "/train/mlp/async",
            None,
            vec![],
            405,
            "method_not_allowed",
        ),
    ];
    let json_case = |path: &str, body: &str, status: u16, code: &'static str| -> BadRequest {
        (
            "POST",
            Box::leak(path.to_string().into_boxed_str()),
            Some("application/json"),
            body.as_bytes().to_vec(),
            status,
            code,
        )
    };
    let csv_case = |body: Vec<u8>, code: &'static str| -> BadRequest {
        (
            "POST",
            "/datasets?name=d&target=y",
            Some("text/csv"),
            body,
            422,
            code,
        )
    };
    let get_case = |path: &str, status: u16, code: &'static str| -> BadRequest {
        (
            "GET",
            Box::leak(path.to_string().into_boxed_str()),
            None,
            vec![],
            status,
            code,
        )
    };
    let mlp = "/train/mlp/async";
    let deep = format!("{}{}", "[".repeat(400), "]".repeat(400));
    let wide_csv = format!(
        "{},y\n",
        (0..5000)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    cases.extend([
        json_case(mlp, "{\"learning_rate\": NaN}", 400, "invalid_json"),
        json_case(mlp, "{\"learning_rate\": Infinity}", 400, "invalid_json"),
        json_case(mlp, "{\"learning_rate\": 1e999}", 400, "invalid_json"),
        json_case(mlp, "{\"learning_rate\": -0.1}", 422, "invalid_parameters"),
        json_case(mlp, "{\"learning_rate\": 11}", 422, "invalid_parameters"),
        json_case(
            mlp,
            "{\"hidden_sizes\": [5000000]}",
            422,
            "invalid_parameters",
        ),
        json_case(mlp, "{\"hidden_sizes\": \"64,32\"}", 422, "invalid_request"),
        json_case(mlp, "{\"hidden_sizes\": [-1]}", 422, "invalid_request"),
        json_case(mlp, "{\"batch_size\": 0}", 422, "invalid_parameters"),
        json_case(mlp, "{\"batch_size\": 2.5}", 422, "invalid_request"),
        json_case(mlp, "{\"epochs\": 5.5}", 422, "invalid_request"),
        json_case(
            mlp,
            "{\"epochs\": 99999999999999999999}",
            422,
            "invalid_request",
        ),
        json_case(mlp, "{\"seed\": -1}", 422, "invalid_request"),
        json_case(mlp, "{\"test_fraction\": 0}", 422, "invalid_parameters"),
        json_case(mlp, "{\"test_fraction\": 1.5}", 422, "invalid_parameters"),
        json_case(
            "/train/gbdt/async",
            "{\"gbdt\": {\"n_trees\": 0}}",
            422,
            "invalid_parameters",
        ),
        json_case(
            "/train/gbdt/async",
            "{\"gbdt\": {\"max_depth\": 100}}",
            422,
            "invalid_parameters",
        ),
        json_case(
            "/train/gbdt/async",
            "{\"gbdt\": {\"trees\": 5}}",
            422,
            "invalid_request",
        ),
        json_case(mlp, "{\"max_retries\": -1}", 422, "invalid_request"),
        json_case(mlp, "{\"time_limit_s\": 0}", 422, "invalid_parameters"),
        json_case(mlp, "{\"device\": \"tpu\"}", 422, "invalid_request"),
        json_case(mlp, "{\"priority\": -1}", 422, "invalid_request"),
        json_case(mlp, "\"just a string\"", 422, "invalid_request"),
        json_case(mlp, "[1, 2]", 422, "invalid_request"),
        json_case(mlp, "{\"epochs\": 5} trailing", 400, "invalid_json"),
        json_case(mlp, &deep, 422, "invalid_request"),
        (
            "POST",
            mlp,
            Some("application/json"),
            b"{\"epochs\": \"\xff\"}".to_vec(),
            400,
            "invalid_json",
        ),
        json_case("/train/mlp?wait_s=100000", "{}", 400, "invalid_query"),
        json_case("/task/not-a-uuid/cancel", "", 400, "invalid_id"),
        // Not a task's id: a registered model's name, and there is none.
        json_case(
            "/models/not-a-uuid/predict",
            "{\"rows\": [[1]]}",
            404,
            "model_not_found",
        ),
        get_case("/task/not-a-uuid", 400, "invalid_id"),
        get_case("/task/12345/result", 400, "invalid_id"),
        get_case(&format!("/task/{uuid}"), 404, "task_not_found"),
        get_case("/tasks?limit=100000000", 400, "invalid_query"),
        get_case("/tasks?limit=ten", 400, "invalid_query"),
        get_case("/tasks?model_type=resnet", 400, "invalid_query"),
        json_case("/datasets?name=&target=y", "", 400, "invalid_query"),
        csv_case(b"a,y\n".to_vec(), "invalid_csv"),
        csv_case(b"a,a,y\n1,2,3\n".to_vec(), "invalid_csv"),
        csv_case(b",y\n1,2\n".to_vec(), "invalid_csv"),
        csv_case(b"y\n1\n2\n".to_vec(), "invalid_csv"),
        csv_case(b"a,y\n1,inf\n".to_vec(), "invalid_csv"),
        csv_case(b"a,y\n1,NaN\n".to_vec(), "invalid_csv"),
        csv_case(b"a,y\n1,2,3\n".to_vec(), "invalid_csv"),
        csv_case(b"\"a,y\n1,2\n".to_vec(), "invalid_csv"),
        csv_case(wide_csv, "invalid_csv"),
        (
            "POST",
            "/cluster/nodes",
            Some("application/json"),
            b"{}".to_vec(),
            405,
            "method_not_allowed",
        ),
    ]);
    assert!(cases.len() >= 60, "{} bad requests", cases.len());
    let mut wrong = Vec::new();
    for (method, path, content_type, body, status, code) in &cases {
        let (got, answer) = match *method {
            "GET" => node.get(path),
            _ => node.post_raw(path, *content_type, body),
        };
        let fine = (got, answer["error"]["code"].as_str()) == (*status, Some(*code))
            && answer["success"] == false
            && !answer["error"]["message"].as_str().unwrap_or("").is_empty();
        if !fine {
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
            wrong.push(format!(
                "{method} {path} {shown:?}: expected {status} {code}, got {got} {answer}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Each invalid value is listed, and unknown fields are named.
    let (_, answer) = node.post(
        "/train/mlp/async",
        json!({"epochs": 0, "learning_rate": -1, "batch_size": 0}),
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("epochs")
            && message.contains("learning_rate")
            && message.contains("batch_size"),
        "{message}"
    );
    let (_, answer) = node.post("/train/mlp/async", json!({"epoch": 5}));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("epoch"),
        "{answer}"
    );
    // Nothing was stored, and the node is still healthy.
    assert_eq!(node.get("/tasks").1["count"], 0);
    assert_eq!(node.get("/datasets").1["datasets"], json!([]));
    assert_eq!(node.get("/cluster/health").0, 200);
}

fn cancel_revokes_pending_tasks_at_once_and_stops_running_ones(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let running = node.submit("mlp", endless());
    node.wait_for(&running, "PROGRESS", LONG);
    let pending = node.submit("mlp", json!({"epochs": 1}));
    assert_eq!(node.state(&pending), "PENDING");

    let (status, answer) = node.post(&format!("/task/{pending}/cancel"), json!(null));
    assert_eq!(
        (status, answer["state"].as_str()),
        (202, Some("REVOKED")),
        "{answer}"
    );
    assert_eq!(node.state(&pending), "REVOKED");

    let (status, _) = node.post(&format!("/task/{running}/cancel"), json!(null));
    assert_eq!(status, 202);
    node.wait_for(&running, "REVOKED", LONG);
    let (_, r) = node.get(&format!("/task/{running}/result"));
    assert_eq!(r["success"], false);
    assert_eq!(r["error"]["code"], "revoked");

    let (status, answer) = node.post(&format!("/task/{running}/cancel"), json!(null));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("task_finished"))
    );
    // The trainer is free again: the next task runs.
    let next = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&next, "SUCCESS", LONG);
}

fn the_sync_route_waits_for_the_result_or_answers_504_with_the_task(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let (status, r) = node.post("/train/linear?wait_s=120", json!({"epochs": 2}));
    assert_eq!((status, r["state"].as_str()), (200, Some("SUCCESS")), "{r}");
    assert!(r["result"]["metrics"]["test_r2"].is_f64());

    let (status, r) = node.post("/train/mlp?wait_s=0.2", endless());
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{r}"
    );
    let id = r["error"]["task_id"].as_str().unwrap().to_string();
    assert!(["PENDING", "STARTED", "PROGRESS"].contains(&node.state(&id).as_str()));
    node.post(&format!("/task/{id}/cancel"), json!(null));
}

fn finished_tasks_expire_and_then_answer_task_expired(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__RESULT_EXPIRES_S", "1")]);
    let id = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&id, "SUCCESS", LONG);
    let code = poll(LONG, "the task to expire", || {
        let (status, answer) = node.get(&format!("/task/{id}/status"));
        (status == 404).then(|| answer["error"]["code"].as_str().unwrap().to_string())
    });
    assert_eq!(code, "task_expired");
    let (status, answer) = node.get(&format!("/task/{id}/result"));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("task_expired"))
    );
    let (status, answer) = node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [vec![0.5; 8]]}),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("task_expired"))
    );
    assert_eq!(node.get("/tasks").1["count"], 0);
}

fn a_trainer_that_panics_is_restarted_and_its_task_retried(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_TEST_PANIC_SEED", "777")]);
    let id = node.submit("linear", json!({"epochs": 2, "seed": 777}));
    node.wait_for(&id, "SUCCESS", LONG);
    let (_, r) = node.get(&format!("/task/{id}/result"));
    assert_eq!(r["attempts"][0]["attempt"], 1, "{r}");
    assert_eq!(r["attempts"][0]["error"]["code"], "trainer_crashed", "{r}");
    assert_eq!(node.get(&format!("/task/{id}/status")).1["attempt"], 2);
    // The restarted trainer keeps working.
    let next = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&next, "SUCCESS", LONG);
    // The trainer reports itself idle once its end is written, and health is computed at most
    // once a second: the first answer after SUCCESS may still say busy.
    common::poll_seen(LONG, "the trainer to be idle", || {
        let (_, health) = node.get("/cluster/health");
        match health["trainers"][0]["state"] == "idle" {
            true => Ok(()),
            false => Err(health),
        }
    });
}

fn retries_back_off_with_jitter_and_stop_at_their_limit(store: TestStore) {
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_TEST_PANIC_SEED", "777"),
            ("TRAINYARD_TASKS__RETRY_BACKOFF_S", "1"),
        ],
    );
    // Seed 778 crashes its trainer on every attempt.
    let id = node.submit(
        "linear",
        json!({"epochs": 1, "seed": 778, "max_retries": 2}),
    );
    node.wait_for(&id, "FAILURE", LONG);
    let (_, r) = node.get(&format!("/task/{id}"));
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "two retries, then the end: {r}");
    assert_eq!(r["attempt"], 3, "{r}");
    assert_eq!(r["error"]["code"], "trainer_crashed", "{r}");
    for a in attempts {
        assert_eq!(a["error"]["code"], "trainer_crashed", "{r}");
    }
    // Backoff: at least half of 1 s before the second attempt, half of 2 s before the third.
    let failed: Vec<f64> = attempts
        .iter()
        .map(|a| a["failed_at"].as_f64().unwrap())
        .collect();
    assert!(failed[1] - failed[0] >= 0.5, "{failed:?}");
    let started_last = r["timings"]["started_at"].as_f64().unwrap();
    assert!(
        started_last - failed[1] >= 1.0,
        "{started_last} after {failed:?}"
    );
}

fn an_idempotency_key_submits_once(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let body = json!({"epochs": 1, "seed": 5});
    let key = [("idempotency-key", "order-42:retrain")];
    let (status, headers, first) = node.post_with("/train/linear/async", &key, body.clone());
    assert_eq!(status, 202, "{first}");
    let replayed = |h: &[(String, String)]| {
        h.iter()
            .find(|(k, _)| k == "idempotent-replayed")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(replayed(&headers).as_deref(), Some("false"));
    let (status, headers, again) = node.post_with("/train/linear/async", &key, body.clone());
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["task_id"], first["task_id"], "the same task");
    assert_eq!(replayed(&headers).as_deref(), Some("true"));
    let id = first["task_id"].as_str().unwrap();
    node.wait_for(id, "SUCCESS", LONG);
    // Still the same task after it ended, and only one was ever stored.
    let (_, _, late) = node.post_with("/train/linear/async", &key, body);
    assert_eq!(late["task_id"], first["task_id"]);
    assert_eq!(node.get("/tasks").1["count"], 1);
    // The same key for another request is refused; a malformed key too.
    let (status, _, other) = node.post_with("/train/linear/async", &key, json!({"epochs": 2}));
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{other}"
    );
    for bad in ["", "has space", &"k".repeat(256)] {
        let (status, _, answer) = node.post_with(
            "/train/linear/async",
            &[("idempotency-key", bad)],
            json!({"epochs": 1}),
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_idempotency_key")),
            "{bad:?}: {answer}"
        );
    }
    assert_eq!(node.get("/tasks").1["count"], 1, "nothing else was stored");
}

fn uploaded_csv_data_sets_train_and_predict(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let mut csv = String::from("a,b,price\n");
    for i in 0..300 {
        let (a, b) = (i as f32 / 300.0, (i % 5) as f32);
        csv.push_str(&format!("{a},{b},{}\n", 2.0 * a + b));
    }
    let (status, answer) = node.post_raw(
        "/datasets?name=prices&target=price",
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["dataset"]["rows"], 300);
    assert_eq!(answer["dataset"]["features"], json!(["a", "b"]));
    let dataset_id = answer["dataset_id"].as_str().unwrap().to_string();
    let (_, list) = node.get("/datasets");
    assert_eq!(list["datasets"][0]["id"], dataset_id.as_str());
    assert!(
        list["builtin"]
            .as_array()
            .unwrap()
            .contains(&json!("friedman1"))
    );

    let id = node.submit(
        "linear",
        json!({"dataset": dataset_id, "epochs": 50, "learning_rate": 0.05}),
    );
    node.wait_for(&id, "SUCCESS", LONG);
    let (_, p) = node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [[0.5, 2.0]]}),
    );
    let prediction = p["predictions"][0].as_f64().unwrap();
    assert!((prediction - 3.0).abs() < 0.2, "{p}");
}

fn a_full_queue_answers_429_with_retry_after(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__QUEUE_LIMIT", "1")]);
    let running = node.submit("mlp", endless());
    node.wait_for(&running, "PROGRESS", LONG);
    let queued = node.submit("linear", json!({"epochs": 1}));
    let (status, answer) = node.post("/train/linear/async", json!({"epochs": 1}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (429, Some("queue_full")),
        "{answer}"
    );
    assert_eq!(node.get("/tasks").1["count"], 2);
    for id in [&queued, &running] {
        node.post(&format!("/task/{id}/cancel"), json!(null));
    }
}

fn tasks_survive_a_restart_and_interrupted_ones_run_again(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__SHUTDOWN_GRACE_S", "0.2")]);
    let done = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&done, "SUCCESS", LONG);
    let interrupted = node.submit("mlp", json!({"epochs": 400, "hidden_sizes": [64, 64]}));
    node.wait_for(&interrupted, "PROGRESS", LONG);
    assert!(node.terminate().success());

    let node = Node::up(&store, 1, &[]);
    assert_eq!(node.state(&done), "SUCCESS");
    node.wait_for(&interrupted, "SUCCESS", LONG);
    let (_, r) = node.get(&format!("/task/{interrupted}/result"));
    assert_eq!(r["attempts"][0]["error"]["code"], "node_stopped", "{r}");
}

fn priority_9_overtakes_a_queue_of_priority_0_and_purge_revokes_the_rest(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let blocker = node.submit("mlp", endless());
    node.wait_for(&blocker, "PROGRESS", LONG);
    let low: Vec<String> = (0..5)
        .map(|_| node.submit("linear", json!({"epochs": 1, "priority": 0})))
        .collect();
    let high = node.submit("linear", json!({"epochs": 1, "priority": 9}));
    node.post(&format!("/task/{blocker}/cancel"), json!(null));
    node.wait_for(&high, "SUCCESS", LONG);
    let started = |id: &str| node.get(&format!("/task/{id}")).1["timings"]["started_at"].as_f64();
    let high_at = started(&high).unwrap();
    for id in &low {
        node.wait_for(id, "SUCCESS", LONG);
        assert!(started(id).unwrap() > high_at, "priority 9 ran first");
    }
    // Purge: every pending task becomes REVOKED (code purged); the running one is untouched.
    let running = node.submit("mlp", endless());
    node.wait_for(&running, "PROGRESS", LONG);
    let pending: Vec<String> = (0..4)
        .map(|_| node.submit("linear", json!({"epochs": 1})))
        .collect();
    let (status, answer) = node.delete("/queue");
    assert_eq!(
        (status, answer["purged"].as_u64()),
        (200, Some(4)),
        "{answer}"
    );
    for id in &pending {
        let (_, r) = node.get(&format!("/task/{id}/result"));
        assert_eq!(r["state"], "REVOKED", "{r}");
        assert_eq!(r["error"]["code"], "purged", "{r}");
    }
    assert_eq!(node.state(&running), "PROGRESS");
    assert_eq!(node.get("/cluster/health").1["queue_depth"], 0);
    assert_eq!(node.delete("/queue").1["purged"], 0);
    node.post(&format!("/task/{running}/cancel"), json!(null));
    node.wait_for(&running, "REVOKED", LONG);
}

fn quick_tasks_are_claimed_ahead_and_never_behind_a_long_one(store: TestStore) {
    // A generous bound, so that a debug build's tiny trainings count as quick.
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__CLAIM_AHEAD_UNDER_S", "2")]);
    let blocker = node.submit("mlp", endless());
    node.wait_for(&blocker, "PROGRESS", LONG);
    let quick: Vec<String> = (0..12)
        .map(|seed| node.submit("linear", json!({"epochs": 1, "seed": seed})))
        .collect();
    let long = node.submit("mlp", endless());
    let after = node.submit("linear", json!({"epochs": 1}));
    node.post(&format!("/task/{blocker}/cancel"), json!(null));
    node.wait_for(&long, "PROGRESS", LONG);
    // The long task (other work) was not claimed ahead, and nothing is claimed behind it.
    for _ in 0..10 {
        assert_eq!(node.state(&after), "PENDING");
        std::thread::sleep(Duration::from_millis(100));
    }
    let timings = |id: &str| {
        let (_, r) = node.get(&format!("/task/{id}"));
        let at = |k: &str| {
            r["timings"][k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k}: {r}"))
        };
        (at("started_at"), at("finished_at"))
    };
    // Each ended before the long one started, but an end claimed ahead of is written while the
    // next trains: wait for it.
    let spans: Vec<(f64, f64)> = quick
        .iter()
        .map(|id| {
            node.wait_for(id, "SUCCESS", LONG);
            timings(id)
        })
        .collect();
    // One trainer, yet from the third task on each started (was claimed) before the one before
    // it finished: it was claimed ahead while that one trained.
    let ahead = spans.windows(2).filter(|w| w[1].0 < w[0].1).count();
    assert!(ahead >= quick.len() - 3, "{ahead} claimed ahead: {spans:?}");
    node.post(&format!("/task/{long}/cancel"), json!(null));
    node.wait_for(&after, "SUCCESS", LONG);
    node.wait_for(&long, "REVOKED", LONG);
    // Both times on the store's clock: the long one ran a second or more (seen running while
    // `after` stayed queued), and `after` started only once it had ended.
    let (long_started, long_ended) = timings(&long);
    let after_at = timings(&after).0;
    assert!(
        after_at >= long_started + 1.0 && after_at >= long_ended - 0.05,
        "claimed once the long one stopped: {after_at}, long {long_started}..{long_ended}"
    );
}

fn a_task_claimed_ahead_keeps_its_lease_while_it_waits(store: TestStore) {
    // Trainings of several seconds (three leases or more on an idle machine) count as quick
    // here, and leases last 2 s, renewed every 2/3 s, which a busy machine still does in time:
    // the task claimed ahead waits behind a training for longer than its lease (and the
    // leader's check of leases, every second).
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_TASKS__CLAIM_AHEAD_UNDER_S", "600"),
            ("TRAINYARD_TASKS__LEASE_S", "2"),
        ],
    );
    let ids: Vec<String> = (0..3)
        .map(|seed| {
            node.submit(
                "mlp",
                json!({"epochs": 1200, "hidden_sizes": [32], "seed": seed}),
            )
        })
        .collect();
    for id in &ids {
        node.wait_for(id, "SUCCESS", LONG);
    }
    let task = |id: &str| node.get(&format!("/task/{id}")).1;
    let (second, third) = (task(&ids[1]), task(&ids[2]));
    let at = |t: &Value, k: &str| t["timings"][k].as_f64().unwrap();
    assert!(
        at(&third, "started_at") < at(&second, "finished_at"),
        "the third task was claimed ahead: {third} {second}"
    );
    eprintln!(
        "the third task waited {:.1} s claimed ahead, with a lease of 2 s",
        at(&second, "finished_at") - at(&third, "started_at")
    );
    for id in &ids {
        let t = task(id);
        assert_eq!(t["attempt"], 1, "not requeued: {t}");
        assert_eq!(t["attempts"], json!([]), "{t}");
    }
}

fn a_drained_node_finishes_running_work_within_its_grace(store: TestStore) {
    // Long enough to be seen running (a couple of seconds on an idle machine), well within the
    // grace on a busy one.
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__SHUTDOWN_GRACE_S", "60")]);
    let running = node.submit("mlp", json!({"epochs": 400, "hidden_sizes": [32]}));
    node.wait_for(&running, "PROGRESS", LONG);
    let queued = node.submit("linear", json!({"epochs": 1}));
    assert!(node.terminate().success());
    // The running task finished during the drain; the queued one was not started.
    let node = Node::up(&store, 1, &[]);
    let (_, r) = node.get(&format!("/task/{running}"));
    assert_eq!(r["state"], "SUCCESS", "{r}");
    assert_eq!(r["attempt"], 1, "finished, not requeued: {r}");
    node.wait_for(&queued, "SUCCESS", LONG);
}

fn a_training_deaf_to_its_time_limit_hits_the_hard_limit_and_its_trainer_is_replaced(
    store: TestStore,
) {
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_TEST_HANG_SEED", "4242"),
            ("TRAINYARD_TASKS__HARD_TIME_LIMIT_GRACE_S", "1"),
        ],
    );
    let started = std::time::Instant::now();
    let id = node.submit("linear", json!({"seed": 4242, "time_limit_s": 0.5}));
    node.wait_for(&id, "FAILURE", LONG);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "hard limit after {took:?}");
    let (_, r) = node.get(&format!("/task/{id}/result"));
    assert_eq!(r["error"]["code"], "time_limit", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("hard"),
        "{r}"
    );
    assert!(r["attempts"].is_null(), "not retried: {r}");
    // A fresh trainer took the stuck one's place and keeps working.
    let next = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&next, "SUCCESS", LONG);
    let (_, metrics) = node.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("trainyard_trainer_restarts_total") && !l.ends_with(" 0")),
        "the replacement is counted"
    );
}

fn a_task_over_its_time_limit_fails_and_is_not_retried(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let id = node.submit(
        "mlp",
        json!({"epochs": 100000, "time_limit_s": 0.3, "max_retries": 3}),
    );
    node.wait_for(&id, "FAILURE", LONG);
    let (status, r) = node.get(&format!("/task/{id}/result"));
    assert_eq!(status, 200);
    assert_eq!(r["success"], false);
    assert_eq!(r["error"]["code"], "time_limit", "{r}");
    assert!(r["attempts"].is_null(), "a time limit is not retried: {r}");
    let (status, p) = node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [vec![0.5; 8]]}),
    );
    assert_eq!(
        (status, p["error"]["code"].as_str()),
        (409, Some("model_not_ready"))
    );
}

#[test]
fn an_unreachable_redis_answers_503_and_stores_nothing() {
    let store = TestStore::redis();
    let node = Node::up(&store, 1, &[]);
    let id = node.submit("linear", json!({"epochs": 1}));
    node.wait_for(&id, "SUCCESS", LONG);
    store.redis.as_ref().unwrap().kill();
    // The status of a task it saw finish is final: the node still answers it.
    let (status, answer) = node.get(&format!("/task/{id}/status"));
    assert_eq!((status, answer["state"].as_str()), (200, Some("SUCCESS")));
    let (status, answer) = node.post("/train/linear/async", json!({"epochs": 1}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{answer}"
    );
    // A task the node does not know finished has to be read from Redis.
    let (status, answer) = node.get(&format!("/task/{}/status", uuid::Uuid::new_v4()));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{answer}"
    );
    let (status, answer) = node.get(&format!("/task/{id}/result"));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{answer}"
    );
    // Health is computed at most once a second: an answer from before the kill may be served.
    let (status, health) = poll(LONG, "health to see the store gone", || {
        let (status, health) = node.get("/cluster/health");
        (status == 503).then_some((status, health))
    });
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("unhealthy")),
        "{health}"
    );
}

/// The due times each task fired by `schedule` stood for: `(due_at, due_times)`, in order.
fn firings(node: &Node, schedule: &str) -> Vec<(i64, u64)> {
    let (_, list) = node.get("/tasks?limit=1000");
    let mut out = Vec::new();
    for t in list["tasks"].as_array().unwrap() {
        let (_, task) = node.get(&format!("/task/{}", t["task_id"].as_str().unwrap()));
        if task["schedule"]["name"] == schedule {
            let link = &task["schedule"];
            out.push((
                link["due_at"].as_i64().unwrap(),
                link["due_times"].as_u64().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn every_second(name: &str, missed: &str) -> Value {
    json!({
        "name": name,
        "cron": "* * * * * *",
        "timezone": "Europe/Paris",
        "model_type": "linear",
        "request": {"epochs": 1, "priority": 5},
        "missed": missed,
        "misfire_grace_s": 3,
    })
}

fn schedules_fire_each_due_time_once_and_missed_times_once_or_never(store: TestStore) {
    let node = Node::up(&store, 2, &[]);
    let bad = [
        (
            json!({"name": "x", "cron": "61 * * * *", "model_type": "linear"}),
            422,
            "invalid_cron",
        ),
        (
            json!({"name": "x", "cron": "* * *", "model_type": "linear"}),
            422,
            "invalid_cron",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "timezone": "Mars/Base", "model_type": "linear"}),
            422,
            "invalid_timezone",
        ),
        (
            json!({"name": "a b", "cron": "* * * * *", "model_type": "linear"}),
            422,
            "invalid_schedule_name",
        ),
        (
            json!({"cron": "* * * * *", "model_type": "linear"}),
            422,
            "invalid_schedule",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "linear", "request": [1]}),
            422,
            "invalid_schedule",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "linear", "request": {"epochs": 0}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "linear", "request": {"dataset": "nope"}}),
            404,
            "dataset_not_found",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "nope"}),
            404,
            "unknown_model_type",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "linear", "missed": "always"}),
            422,
            "invalid_request",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "model_type": "linear", "bogus": 1}),
            422,
            "invalid_request",
        ),
    ];
    for (body, status, code) in bad {
        let (got, answer) = node.post("/schedules", body.clone());
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} -> {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, reason) = node.post(
        "/schedules",
        json!({"name": "x", "cron": "61 * * * *", "model_type": "linear"}),
    );
    assert!(
        reason["error"]["message"]
            .as_str()
            .unwrap()
            .contains("61 * * * *"),
        "{reason}"
    );
    assert_eq!(node.get("/schedules").1["count"], 0);
    assert_eq!(node.get("/schedules/x").0, 404);
    assert_eq!(
        node.delete("/schedules/x").1["error"]["code"],
        "schedule_not_found"
    );

    let (status, created) = node.post("/schedules", every_second("once", "run_once"));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["schedule"]["missed"], "run_once");
    assert!(
        created["schedule"]["next_due_at"].as_i64().is_some(),
        "{created}"
    );
    assert_eq!(
        node.post("/schedules", every_second("once", "skip")).1["error"]["code"],
        "schedule_exists"
    );
    assert_eq!(node.post("/schedules", every_second("skip", "skip")).0, 201);

    let fired = |name: &str| {
        node.get(&format!("/schedules/{name}")).1["schedule"]["fired"]
            .as_u64()
            .unwrap()
    };
    poll(LONG, "both schedules to fire three times", || {
        (fired("once") >= 3 && fired("skip") >= 3).then_some(())
    });
    // A fired task links back to its schedule and runs its request.
    let (_, schedule) = node.get("/schedules/once");
    let last = schedule["schedule"]["last_task_id"]
        .as_str()
        .unwrap()
        .to_string();
    node.wait_for(&last, "SUCCESS", LONG);
    let (_, task) = node.get(&format!("/task/{last}"));
    assert_eq!(task["schedule"]["name"], "once", "{task}");
    assert_eq!(task["request"]["priority"], 5, "{task}");

    // Paused, it fires nothing. A look at the schedules under way when the pause was stored
    // still fires what was due then, up to the second it ends in (well within a second of the
    // answer): due times from two seconds after the answer on are never fired.
    let (_, paused) = node.post("/schedules/skip/pause", json!(null));
    let paused_at = now_s().floor() as i64;
    assert_eq!(paused["schedule"]["paused"], true, "{paused}");
    assert!(paused["schedule"]["next_due_at"].is_null());
    std::thread::sleep(Duration::from_secs(4));
    let (_, resumed) = node.post("/schedules/skip/resume", json!(null));
    assert_eq!(resumed["schedule"]["paused"], false);
    let resumed_at = resumed["schedule"]["done_through"].as_i64().unwrap();
    let paused_window = (paused_at + 2)..=resumed_at;
    assert!(paused_window.clone().count() >= 2, "{paused_window:?}");

    // The whole cluster stops for 8 s: the due times missed (those more than the 3 s grace
    // late when the node is back) fire once ("once") or not at all ("skip"); every due time
    // fires at most once. Every firing of the stopped node was due at or before `stopped`
    // (read once it has exited); every one of the restarted node after it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(node.terminate().success());
    let stopped = now_s().floor() as i64;
    std::thread::sleep(Duration::from_secs(8));
    let node = Node::up(&store, 2, &[]);
    let done_through = |name: &str| {
        let (_, s) = node.get(&format!("/schedules/{name}"));
        s["schedule"]["done_through"].as_i64().unwrap()
    };
    poll(LONG, "the schedules to fire after the restart", || {
        (done_through("once") > stopped + 5 && done_through("skip") > stopped + 5).then_some(())
    });
    node.delete("/schedules/once");
    node.delete("/schedules/skip");
    assert_eq!(node.get("/schedules").1["count"], 0);

    let once = firings(&node, "once");
    let skip = firings(&node, "skip");
    for list in [&once, &skip] {
        let mut dues: Vec<i64> = list.iter().map(|f| f.0).collect();
        dues.dedup();
        assert_eq!(dues.len(), list.len(), "a due time fired twice: {list:?}");
    }
    // Before the stop, every due time fired, one by one (but those "skip" was paused through).
    let before: Vec<&(i64, u64)> = once.iter().filter(|f| f.0 <= stopped).collect();
    let (first_once, last_once) = (before[0].0, before.last().unwrap().0);
    assert_eq!(
        before.len() as i64,
        last_once - first_once + 1,
        "every due time fired: {once:?}"
    );
    assert!(before.iter().all(|f| f.1 == 1), "one by one: {once:?}");
    let after: Vec<&(i64, u64)> = once.iter().filter(|f| f.0 > stopped).collect();
    let catch_up: Vec<_> = after.iter().filter(|f| f.1 > 1).collect();
    assert_eq!(
        catch_up.len(),
        1,
        "one firing for the missed times: {after:?}"
    );
    assert_eq!(after[0], *catch_up[0], "the missed times first: {after:?}");
    assert!(catch_up[0].1 >= 2, "{after:?}");
    assert!(
        after.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "then one per second: {after:?}"
    );

    let skip_last = skip.iter().rfind(|f| f.0 <= stopped).unwrap().0;
    let after: Vec<&(i64, u64)> = skip.iter().filter(|f| f.0 > stopped).collect();
    assert!(after.iter().all(|f| f.1 == 1), "{after:?}");
    assert!(
        after[0].0 >= skip_last + 3,
        "missed times skipped: {after:?}"
    );
    assert!(after.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{after:?}");
    // Nothing fired for the due times "skip" was paused through.
    assert!(
        skip.iter().all(|f| !paused_window.contains(&f.0)),
        "{paused_window:?} {skip:?}"
    );
}

fn ids(events: &[SseMessage]) -> Vec<String> {
    events.iter().map(|e| e.id.clone().unwrap()).collect()
}

fn a_task_event_stream_is_ordered_resumable_ends_and_fans_out(store: TestStore) {
    let node = Node::up(&store, 1, &[]);
    let unknown = format!("{}/task/{}/events", node.url, uuid_like());
    let (status, answer) = node.get(&unknown.replace(&node.url, ""));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("task_not_found")),
        "{answer}"
    );

    // Long enough to report progress several times on a fast machine (about a second).
    let id = node.submit("mlp", json!({"epochs": 200, "hidden_sizes": [32]}));
    let url = format!("{}/task/{id}/events", node.url);
    let bad = common::http_agent(LONG)
        .get(&url)
        .header("last-event-id", "nope")
        .call();
    let (status, answer) = common::read_json(bad).unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_event_id"))
    );

    // 20 subscribers at once, plus this one: each gets the same events, in order, to the end.
    let subscribers: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || read_sse(&url, None, |_| false))
        })
        .collect();
    let (events, ended) = read_sse(&url, None, |_| false);
    assert!(ended, "the stream ends after the terminal state");
    let states: Vec<&str> = events
        .iter()
        .map(|e| e.data["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[0], "PENDING", "{states:?}");
    assert_eq!(*states.last().unwrap(), "SUCCESS", "{states:?}");
    assert_eq!(events.last().unwrap().event, "state");
    assert!(events.last().unwrap().data["result"]["metrics"]["test_r2"].is_f64());
    assert!(
        events.windows(2).all(|w| w[0].order() < w[1].order()),
        "ordered ids"
    );
    let progress: Vec<f64> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"]["percent"].as_f64().unwrap())
        .collect();
    // What coalescing promises: a first write 50 ms after the start, then at most one per
    // 200 ms (the last report rides on the end). So at least one progress event for a training
    // that ran a few hundred milliseconds, two once it ran a second, never more than one per
    // 200 ms; how many exactly depends on the machine's speed.
    let ran_s = node.get(&format!("/task/{id}")).1["timings"]["ran_s"]
        .as_f64()
        .unwrap();
    let most = (ran_s / 0.2).floor() as usize + 2;
    let least = match ran_s {
        s if s >= 1.0 => 2,
        s if s >= 0.3 => 1,
        _ => 0,
    };
    assert!(
        (least..=most).contains(&progress.len()),
        "{} progress events for a training of {ran_s} s: {states:?}",
        progress.len()
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        events
            .iter()
            .filter(|e| e.event == "progress")
            .all(|e| e.data["progress"]["loss"].is_f64())
    );
    for subscriber in subscribers {
        let (theirs, ended) = subscriber.join().unwrap();
        assert!(ended);
        assert_eq!(ids(&theirs), ids(&events));
    }
    // Resuming after the second event gives exactly the rest; after the last, nothing.
    let (rest, ended) = read_sse(&url, events[1].id.as_deref(), |_| false);
    assert!(ended);
    assert_eq!(ids(&rest), ids(&events)[2..]);
    let (none, ended) = read_sse(&url, events.last().unwrap().id.as_deref(), |_| false);
    assert!(ended && none.is_empty(), "{none:?}");
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

fn the_event_stream_of_all_tasks_follows_every_task_and_resumes(store: TestStore) {
    let node = Node::up(&store, 2, &[]);
    let url = format!("{}/events", node.url);
    let terminal_count = |events: &[SseMessage]| {
        events
            .iter()
            .filter(|e| {
                ["SUCCESS", "FAILURE", "REVOKED"].contains(&e.data["state"].as_str().unwrap_or(""))
            })
            .count()
    };
    // Without Last-Event-ID the stream carries live events only: it is open (the server has
    // subscribed) before the first submission.
    let stream = common::open_sse(&url, None);
    let listener = std::thread::spawn(move || stream.read(|events| terminal_count(events) >= 3));
    let tasks: Vec<String> = (0..3)
        .map(|_| node.submit("linear", json!({"epochs": 2})))
        .collect();
    let (events, ended) = listener.join().unwrap();
    assert!(!ended, "the stream of all tasks stays open");
    assert!(events.iter().all(|e| e.event != "lagged"));
    assert!(events.windows(2).all(|w| w[0].order() < w[1].order()));
    for id in &tasks {
        let states: Vec<&str> = events
            .iter()
            .filter(|e| e.data["task_id"] == id.as_str())
            .map(|e| e.data["state"].as_str().unwrap())
            .collect();
        assert_eq!(states.first(), Some(&"PENDING"), "{states:?}");
        assert_eq!(states.last(), Some(&"SUCCESS"), "{states:?}");
    }
    // Resume after the third event: the rest, no gap, no repeat.
    let last = events.last().unwrap().id.clone().unwrap();
    let (resumed, _) = read_sse(&url, events[2].id.as_deref(), |got| {
        got.last().and_then(|e| e.id.as_deref()) == Some(last.as_str())
    });
    assert_eq!(ids(&resumed), ids(&events)[3..]);
}

/// Every test above, once on the embedded store and once on Redis.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[test] fn $name() { super::$name(super::TestStore::embedded()) })*
        }
        mod redis {
            $(#[test] fn $name() { super::$name(super::TestStore::redis()) })*
        }
    };
}

on_both_stores!(
    a_training_goes_from_submit_to_predictions,
    every_model_type_trains_and_all_reports_each,
    bad_requests_get_their_status_and_code_and_store_nothing,
    cancel_revokes_pending_tasks_at_once_and_stops_running_ones,
    the_sync_route_waits_for_the_result_or_answers_504_with_the_task,
    finished_tasks_expire_and_then_answer_task_expired,
    a_trainer_that_panics_is_restarted_and_its_task_retried,
    retries_back_off_with_jitter_and_stop_at_their_limit,
    an_idempotency_key_submits_once,
    uploaded_csv_data_sets_train_and_predict,
    a_full_queue_answers_429_with_retry_after,
    tasks_survive_a_restart_and_interrupted_ones_run_again,
    a_task_over_its_time_limit_fails_and_is_not_retried,
    a_training_deaf_to_its_time_limit_hits_the_hard_limit_and_its_trainer_is_replaced,
    a_drained_node_finishes_running_work_within_its_grace,
    priority_9_overtakes_a_queue_of_priority_0_and_purge_revokes_the_rest,
    quick_tasks_are_claimed_ahead_and_never_behind_a_long_one,
    a_task_claimed_ahead_keeps_its_lease_while_it_waits,
    finished_tasks_notify_their_callback_signed_and_retried,
    schedules_fire_each_due_time_once_and_missed_times_once_or_never,
    a_task_event_stream_is_ordered_resumable_ends_and_fans_out,
    the_event_stream_of_all_tasks_follows_every_task_and_resumes,
);

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after_and_health_stays_open() {
    let store = TestStore::embedded();
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_HTTP__RATE_LIMIT_PER_S", "0.2"),
            ("TRAINYARD_HTTP__RATE_LIMIT_BURST", "5"),
        ],
    );
    // A bucket of 5 requests, refilled at one per 5 s: of 12 requests made in `took`, at most
    // 5 + took / 5 s are let through, and the first 5 always are.
    let started = std::time::Instant::now();
    let answers: Vec<(u16, Value)> = (0..12).map(|_| node.get("/tasks")).collect();
    let took = started.elapsed().as_secs_f64();
    assert!(
        answers[..5].iter().all(|(s, _)| *s == 200),
        "the burst is let through: {answers:?}"
    );
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, a)| a)
        .collect();
    let most_admitted = 5 + (took * 0.2).floor() as usize;
    assert!(
        refused.len() + most_admitted >= answers.len(),
        "over the burst is refused ({took:.1} s): {answers:?}"
    );
    assert!(
        !refused.is_empty(),
        "over the burst is refused: {answers:?}"
    );
    assert_eq!(refused[0]["error"]["code"], "rate_limited");
    let (status, headers, _) =
        node.post_with("/train/linear/async", &[], serde_json::json!({"epochs": 1}));
    assert_eq!(status, 429);
    // The wait for the next token, in whole seconds: at least 1, at most 1 / 0.2 s.
    let retry_after: u64 = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {headers:?}"));
    assert!((1..=5).contains(&retry_after), "{headers:?}");
    // Health and metrics are never limited; the client gets through again once a token is
    // back.
    assert_eq!(node.get("/cluster/health").0, 200);
    assert_eq!(node.get("/metrics").0, 200);
    let (_, tasks) = poll(LONG, "the client to get through again", || {
        std::thread::sleep(Duration::from_millis(200));
        let (status, answer) = node.get("/tasks");
        (status == 200).then_some((status, answer))
    });
    assert_eq!(tasks["count"], 0, "nothing was stored");
}

/// A webhook receiver on a free port: answers 500 to the first delivery of each task (and to
/// every delivery on `/fail`), 200 after; keeps every request's signature header and body.
/// One request the receiver got: path, timestamp and signature headers, body, and the status
/// it answered.
type Delivery = (String, (String, String), Vec<u8>, u16);

struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = got.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut length, mut signature, mut timestamp) =
                    (0usize, String::new(), String::new());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (k, v) = header.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => length = v.trim().parse().unwrap(),
                        "x-trainyard-signature" => signature = v.trim().to_string(),
                        "x-trainyard-timestamp" => timestamp = v.trim().to_string(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let id = serde_json::from_slice::<Value>(&body).unwrap()["task_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let status = if path == "/fail" || seen.insert(id) {
                    500
                } else {
                    200
                };
                log.lock()
                    .unwrap()
                    .push((path, (timestamp, signature), body, status));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, got }
    }
}

fn finished_tasks_notify_their_callback_signed_and_retried(store: TestStore) {
    let receiver = Receiver::start();
    let hosts = format!("[\"127.0.0.1:{}\"]", receiver.port);
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS", hosts.as_str()),
            ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", "hook-secret"),
            ("TRAINYARD_NOTIFICATIONS__MAX_ATTEMPTS", "2"),
            // The receiver is on loopback.
            ("TRAINYARD_NOTIFICATIONS__ALLOW_PRIVATE", "true"),
        ],
    );
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let ids: Vec<String> = (0..2)
        .map(|_| node.submit("linear", json!({"epochs": 1, "callback_url": hook})))
        .collect();
    let failing = node.submit(
        "linear",
        json!({"epochs": 1, "callback_url": format!("http://127.0.0.1:{}/fail", receiver.port)}),
    );
    for id in ids.iter().chain([&failing]) {
        node.wait_for(id, "SUCCESS", LONG);
    }
    poll(LONG, "every callback to settle", || {
        let settled = ids.iter().chain([&failing]).all(|id| {
            let c = &node.get(&format!("/task/{id}")).1["callback"];
            c["delivered_at"].is_f64() || c["failed"] == true
        });
        settled.then_some(())
    });
    let got = receiver.got.lock().unwrap().clone();
    for id in &ids {
        let tries: Vec<_> = got
            .iter()
            .filter(|(path, _, body, _)| {
                path == "/hook"
                    && serde_json::from_slice::<Value>(body).unwrap()["task_id"] == id.as_str()
            })
            .collect();
        assert_eq!(
            tries.len(),
            2,
            "one failed try, then one delivery: {tries:?}"
        );
        assert_eq!(tries[1].3, 200);
        for (_, (timestamp, signature), body, _) in &tries {
            let at: u64 = timestamp.parse().unwrap();
            assert_eq!(signature, &trainyard::notify::sign("hook-secret", at, body));
            let sent: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(sent["state"], "SUCCESS");
            assert!(sent["result"]["metrics"]["test_r2"].is_f64(), "{sent}");
        }
        let (_, r) = node.get(&format!("/task/{id}"));
        assert_eq!(r["callback"]["attempts"], 2, "{r}");
    }
    let (_, r) = node.get(&format!("/task/{failing}"));
    assert_eq!(r["callback"]["failed"], true, "{r}");
    assert!(
        r["callback"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{r}"
    );
    let (_, metrics) = node.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("trainyard_callbacks_total{outcome=\"failed\"} 1")),
        "a failed delivery is counted"
    );
    // Hosts that are not allowed, and schemes that are not http, are refused.
    for url in [
        "http://10.0.0.1/steal",
        "ftp://127.0.0.1/x",
        "http://169.254.169.254/",
    ] {
        let (status, answer) = node.post("/train/linear/async", json!({"callback_url": url}));
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("callback_not_allowed")),
            "{url}: {answer}"
        );
    }
}
