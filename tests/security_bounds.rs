//! Every resource bounded (issue 25): a request's time limit under the operator's, models too
//! large for a node refused before they are stored, decoded models cached for predict (within
//! their result's life), data sets with a quota, an expiry and a delete, and the bytes of
//! request bodies a node holds at once. Real nodes, real HTTP, real Redis.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Node, TestStore, poll};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

/// A small CSV of `rows` rows (x, y), padded to at least `min_bytes` with more rows.
fn csv(rows: usize) -> Vec<u8> {
    let mut text = String::from("x,y\n");
    for i in 0..rows {
        text.push_str(&format!("{i},{}\n", 2 * i + 1));
    }
    text.into_bytes()
}

fn upload(node: &Node, name: &str, body: &[u8]) -> (u16, Value) {
    node.post_raw(
        &format!("/datasets?name={name}&target=y"),
        Some("text/csv"),
        body,
    )
}

fn uploaded(node: &Node, name: &str, body: &[u8]) -> String {
    let (status, answer) = upload(node, name, body);
    assert_eq!(status, 201, "{answer}");
    answer["dataset_id"].as_str().unwrap().to_string()
}

fn listed(node: &Node) -> Vec<String> {
    let (status, answer) = node.get("/datasets");
    assert_eq!(status, 200, "{answer}");
    answer["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// A task on data set `id` that stays queued: it asks for a GPU the node does not have.
fn queued_on(node: &Node, id: &str) -> String {
    node.submit(
        "linear",
        json!({"epochs": 1, "dataset": id, "device": "gpu"}),
    )
}

#[test]
fn a_request_may_not_ask_for_more_time_than_the_operator_allows() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[("TRAINYARD_TASKS__TIME_LIMIT_S", "60")],
    );
    let (status, answer) = node.post(
        "/train/linear/async",
        json!({"epochs": 1, "time_limit_s": 61, "priority": 12}),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_parameters");
    let message = answer["error"]["message"].as_str().unwrap();
    // Listed with the request's other problems, naming the limit and its key.
    assert!(
        message.contains("time_limit_s must be at most 60")
            && message.contains("tasks.time_limit_s")
            && message.contains("priority"),
        "{message}"
    );
    let (status, answer) = node.post(
        "/train/linear/async",
        json!({"epochs": 1, "time_limit_s": 60}),
    );
    assert_eq!(status, 202, "{answer}");
    // A schedule's request is held to the same ceiling.
    let (status, answer) = node.post(
        "/schedules",
        json!({"name": "long", "cron": "@daily", "model_type": "linear",
               "request": {"time_limit_s": 3600}}),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks.time_limit_s"),
        "{answer}"
    );
}

#[test]
fn models_too_large_for_a_node_are_refused_before_they_are_stored() {
    let node = Node::up(&TestStore::embedded(), 1, &[]);
    // Gigabytes per trainer: refused by default, with the estimate and the limit.
    let huge = json!({"hidden_sizes": [4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096],
                      "batch_size": 65536});
    let (status, answer) = node.post("/train/mlp/async", huge.clone());
    assert_eq!(status, 422, "{answer}");
    let error = &answer["error"];
    assert_eq!(error["code"], "model_too_large", "{answer}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("tasks.max_parameters")
            && message.contains("50000000")
            && message.contains("tasks.max_working_bytes"),
        "{message}"
    );
    assert!(error["estimate"]["parameters"].as_u64().unwrap() > 100_000_000);
    assert!(error["estimate"]["working_bytes"].as_u64().unwrap() > 4 << 30);
    assert_eq!(error["limit"]["parameters"], 50_000_000);
    // Nothing was stored.
    let (_, tasks) = node.get("/tasks");
    assert_eq!(tasks["count"], 0, "{tasks}");
    // `all` trains an MLP too: refused the same way; so is a schedule of it.
    let (status, answer) = node.post("/train/all/async", huge.clone());
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("model_too_large"))
    );
    let (status, answer) = node.post(
        "/schedules",
        json!({"name": "huge", "cron": "@daily", "model_type": "mlp", "request": huge}),
    );
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("model_too_large"))
    );
    // The defaults train.
    let (status, answer) = node.post("/train/mlp/async", json!({"epochs": 1}));
    assert_eq!(status, 202, "{answer}");
    drop(node);

    // An operator's own bounds, on the data set a task names (an uploaded one's rows and
    // features).
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_TASKS__MAX_PARAMETERS", "2000"),
            ("TRAINYARD_TASKS__MAX_WORKING_BYTES", "8000000"),
        ],
    );
    // 3,249 parameters.
    let (status, answer) = node.post("/train/mlp/async", json!({"epochs": 1}));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("model_too_large"))
    );
    // 641 parameters, but a batch of all 16,000 training rows by 73 units.
    let (status, answer) = node.post(
        "/train/mlp/async",
        json!({"epochs": 1, "hidden_sizes": [64], "batch_size": 20000}),
    );
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("model_too_large"))
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tasks.max_working_bytes") && !message.contains("tasks.max_parameters"),
        "{message}"
    );
    let (status, answer) = node.post(
        "/train/mlp/async",
        json!({"epochs": 1, "hidden_sizes": [64], "batch_size": 64}),
    );
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = node.post("/train/linear/async", json!({"epochs": 1}));
    assert_eq!(status, 202, "{answer}");
    // 100 trees of depth 3 (1,500 nodes) fit; 10,000 do not.
    let trees = |n: u32| json!({"gbdt": {"n_trees": n, "max_depth": 3}});
    assert_eq!(node.post("/train/gbdt/async", trees(100)).0, 202);
    let (status, answer) = node.post("/train/gbdt/async", trees(10_000));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("model_too_large"))
    );
    let dataset = uploaded(&node, "small", &csv(20));
    let (status, answer) = node.post(
        "/train/mlp/async",
        json!({"epochs": 1, "dataset": dataset, "hidden_sizes": [16, 16]}),
    );
    assert_eq!(
        status, 202,
        "1 feature: 1*16+16 + 16*16+16 + 16+1 parameters: {answer}"
    );
}

/// Sends a Redis command (RESP) to `port` and returns the raw reply.
fn redis_command(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

fn predict(node: &Node, id: &str) -> (u16, Value) {
    node.post(
        &format!("/models/{id}/predict"),
        json!({"rows": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}),
    )
}

/// A node answers predict calls from the models it decoded before, not from the store each
/// time (shown by taking the model out of Redis behind its back), and not after the task's
/// result expired; a model larger than the cache is not kept.
#[test]
fn predict_keeps_decoded_models_while_their_result_lives() {
    let store = TestStore::redis();
    let port = store.redis.as_ref().unwrap().port;
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__RESULT_EXPIRES_S", "6")]);
    let id = node.submit("linear", json!({"epochs": 2}));
    node.wait_for(&id, "SUCCESS", LONG);
    let (status, first) = predict(&node, &id);
    assert_eq!(status, 200, "{first}");
    let model_key = format!("{}:model:{id}", store.prefix);
    assert_eq!(redis_command(port, &["DEL", &model_key]), ":1\r\n");
    let (status, again) = predict(&node, &id);
    assert_eq!(status, 200, "answered from the cache: {again}");
    assert_eq!(again["predictions"], first["predictions"]);
    // Past the result's expiry the cache does not answer: the store says it expired.
    poll(Duration::from_secs(30), "the result to expire", || {
        let (status, answer) = predict(&node, &id);
        (status == 404).then_some(answer)
    });
    let (_, answer) = predict(&node, &id);
    assert_eq!(answer["error"]["code"], "task_expired", "{answer}");
    drop(node);

    // A cache smaller than the model keeps nothing.
    let node = Node::up(&store, 1, &[("TRAINYARD_TASKS__MODEL_CACHE_BYTES", "16")]);
    let id = node.submit("linear", json!({"epochs": 2}));
    node.wait_for(&id, "SUCCESS", LONG);
    assert_eq!(predict(&node, &id).0, 200);
    let model_key = format!("{}:model:{id}", store.prefix);
    assert_eq!(redis_command(port, &["DEL", &model_key]), ":1\r\n");
    let (status, answer) = predict(&node, &id);
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("model_not_found")),
        "{answer}"
    );
}

fn data_sets_have_a_quota_and_are_deleted_unless_in_use(store: TestStore) {
    let node = Node::up(
        &store,
        1,
        &[
            ("TRAINYARD_HTTP__MAX_UPLOAD_BYTES", "2000"),
            ("TRAINYARD_DATASETS__MAX_TOTAL_BYTES", "3000"),
        ],
    );
    let body = csv(250);
    assert!(body.len() > 1500 && body.len() < 2000, "{}", body.len());
    let first = uploaded(&node, "first", &body);
    let (status, answer) = upload(&node, "second", &body);
    assert_eq!(status, 507, "{answer}");
    assert_eq!(answer["error"]["code"], "dataset_quota_exceeded");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("datasets.max_total_bytes"),
        "{answer}"
    );
    // In use by a queued task: kept (409), until that task ends.
    let task = queued_on(&node, &first);
    let (status, answer) = node.delete(&format!("/datasets/{first}"));
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "dataset_in_use");
    assert_eq!(answer["error"]["task_id"], task.as_str());
    assert_eq!(node.post(&format!("/task/{task}/cancel"), json!({})).0, 202);
    let (status, answer) = node.delete(&format!("/datasets/{first}"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], first.as_str());
    assert!(listed(&node).is_empty());
    let (status, answer) = node.post(
        "/train/linear/async",
        json!({"epochs": 1, "dataset": first}),
    );
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("dataset_not_found"))
    );
    let (status, answer) = node.delete(&format!("/datasets/{first}"));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("dataset_not_found"))
    );
    let (status, _) = node.delete("/datasets/not-a-uuid");
    assert_eq!(status, 400);
    // The room is back.
    uploaded(&node, "second", &body);
}

#[test]
fn data_sets_have_a_quota_and_are_deleted_unless_in_use_embedded() {
    data_sets_have_a_quota_and_are_deleted_unless_in_use(TestStore::embedded());
}

#[test]
fn data_sets_have_a_quota_and_are_deleted_unless_in_use_redis() {
    data_sets_have_a_quota_and_are_deleted_unless_in_use(TestStore::redis());
}

fn data_sets_expire_unless_used(store: TestStore) {
    let node = Node::up(&store, 1, &[("TRAINYARD_DATASETS__EXPIRES_S", "6")]);
    let started = Instant::now();
    let idle = uploaded(&node, "idle", &csv(20));
    let used = uploaded(&node, "used", &csv(20));
    let busy = uploaded(&node, "busy", &csv(20));
    let (_, answer) = node.get("/datasets");
    let expires_at = answer["datasets"][0]["expires_at"].as_f64().unwrap();
    assert!(
        (expires_at - trainyard::store::now_s() - 6.0).abs() < 2.0,
        "{answer}"
    );
    // A task yet to end keeps its data set; a submission renews the one it names.
    queued_on(&node, &busy);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let task = queued_on(&node, &used);
    assert_eq!(node.post(&format!("/task/{task}/cancel"), json!({})).0, 202);
    // The idle one goes first (at 6 s), the renewed one later (at 9 s).
    poll(
        Duration::from_secs(30),
        "the idle data set to expire",
        || (!listed(&node).contains(&idle)).then_some(()),
    );
    let kept = listed(&node);
    assert!(
        started.elapsed() < Duration::from_secs(9) && kept.contains(&used) && kept.contains(&busy),
        "{kept:?} after {:?} (used {used}, busy {busy})",
        started.elapsed()
    );
    let (status, answer) = node.post("/train/linear/async", json!({"epochs": 1, "dataset": idle}));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("dataset_not_found"))
    );
    // The sweep keeps the one in use past its expiry.
    poll(
        Duration::from_secs(30),
        "the used data set to expire",
        || (!listed(&node).contains(&used)).then_some(()),
    );
    assert!(started.elapsed() >= Duration::from_secs(9));
    assert!(listed(&node).contains(&busy));
}

#[test]
fn data_sets_expire_unless_used_embedded() {
    data_sets_expire_unless_used(TestStore::embedded());
}

#[test]
fn data_sets_expire_unless_used_redis() {
    data_sets_expire_unless_used(TestStore::redis());
}

/// Opens an upload that declares `length` bytes and sends only its head and a few: the node
/// holds room for it while it waits for the rest.
fn start_upload(node: &Node, length: usize) -> TcpStream {
    let addr = node.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /datasets?name=big&target=y HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: text/csv\r\nContent-Length: {length}\r\n\r\nx,y\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Sends the rest of an upload begun with `start_upload` and reads the status of its answer.
fn finish_upload(mut stream: TcpStream, length: usize) -> u16 {
    let rest = length - 4;
    let mut body = Vec::with_capacity(rest);
    while body.len() < rest {
        body.extend_from_slice(b"1,2\n");
    }
    body.truncate(rest);
    stream.write_all(&body).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n])[9..12]
        .parse()
        .unwrap()
}

/// Two large uploads at once fill the node's budget for bodies in flight: a third request with
/// a body (an upload, or a training request) waits a moment and is refused with 503 and
/// `Retry-After`; once the uploads are read and answered their room is back.
#[test]
fn bodies_in_flight_are_bounded_per_node() {
    let node = Node::up(
        &TestStore::embedded(),
        1,
        &[
            ("TRAINYARD_HTTP__MAX_UPLOAD_BYTES", "600000"),
            ("TRAINYARD_HTTP__MAX_BODY_BYTES_IN_FLIGHT", "1200000"),
        ],
    );
    let length = 600_000;
    let uploads = [start_upload(&node, length), start_upload(&node, length)];
    // Both are being read: the budget is spent.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, headers, answer) =
        node.post_with("/train/linear/async", &[], json!({"epochs": 1}));
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "server_busy");
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "1"),
        "{headers:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for room first"
    );
    let (status, answer) = upload(&node, "small", &csv(10));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (503, json!("server_busy"))
    );
    // Bodies without a body route are not held up.
    assert_eq!(node.get("/datasets").0, 200);
    for stream in uploads {
        // Their CSV parses (x, y rows), so each is stored.
        assert_eq!(finish_upload(stream, length), 201);
    }
    assert_eq!(
        node.post("/train/linear/async", json!({"epochs": 1})).0,
        202
    );
    uploaded(&node, "small", &csv(10));
}
