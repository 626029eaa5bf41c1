//! Bad requests that need no store's answer, in process with `warp::test` (no socket, no node):
//! one case a line, `(method, path, content type, body, status, code)`. The cases whose answer
//! depends on what the store holds stay in `tests/api.rs`, against a real node.

use std::sync::Arc;

use warp::http::Method;

use super::{Api, limits, routes};
use crate::config::Config;
use crate::store::{EmbeddedStore, StoreSettings};

/// An API over a fresh embedded store, with the default config.
fn api() -> (Arc<Api<EmbeddedStore>>, tokio::sync::watch::Sender<bool>) {
    let config = Config::default();
    let dir = std::env::temp_dir().join(format!(
        "trainyard-http-tests-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = StoreSettings {
        result_expires_s: config.tasks.result_expires_s,
        expired_memory_s: config.tasks.expired_memory_s,
        history_after_end_s: config.tasks.history_after_end_s,
        lease_s: config.tasks.lease_s,
        min_replicas_ack: 0,
        replica_ack_timeout_s: config.store.replica_ack_timeout_s,
        dataset_max_total_bytes: config.datasets.max_total_bytes,
        dataset_expires_s: config.datasets.expires_s,
    };
    let store = EmbeddedStore::open(&dir.join("store.redb"), settings).unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let api = Api {
        store: Arc::new(store),
        node: "test".into(),
        queue_limit: config.tasks.queue_limit,
        bounds: super::TaskBounds::of(&config.tasks),
        max_body_bytes: 1000,
        max_upload_bytes: 1000,
        auth: Arc::new(crate::http::auth::AuthSettings::from_section(&config.http)),
        membership: crate::cluster::Membership::alone("test"),
        result_expires_s: config.tasks.result_expires_s,
        limits: limits::Limits::new(limits::LimitSettings {
            rate_per_s: 0.0,
            burst: 0.0,
            max_in_flight: 0,
            max_streams_per_client: 10,
            max_streams: 10,
            trusted_proxies: Vec::new(),
        }),
        max_schedules: config.tasks.max_schedules,
        max_sweeps: config.tasks.max_sweeps,
        max_batch: config.tasks.max_batch,
        callback_rules: Default::default(),
        health: Default::default(),
        model_cache: super::model_cache::ModelCache::new(1 << 20),
        body_budget: super::budget::BodyBudget::new(1 << 20),
        stopping,
    };
    (Arc::new(api), stop)
}

/// One bad request: method, path, content type, body, and the status and code it gets.
type Case<'a> = (Method, String, Option<&'a str>, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn bad_requests_are_refused_with_their_status_and_code() {
    let (api, _stop) = api();
    let routes = super::routes(api);
    let uuid = "9b2f2d7e-0000-4000-8000-000000000000";
    let json = Some("application/json");
    let mlp = "/train/mlp/async";
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Method::POST, "/train/resnet/async".into(), json, b"{}".to_vec(), 404, "unknown_model_type"),
        (Method::POST, mlp.into(), json, b"{\"epochs\": 0}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"epoch\": 5}".to_vec(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, b"{\"epochs\": \"5\"}".to_vec(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, b"{\"seed\": -1}".to_vec(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, b"{\"priority\": 10}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"max_retries\": 11}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"test_fraction\": 1.5}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"time_limit_s\": 0}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"device\": \"tpu\"}".to_vec(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, b"[1, 2]".to_vec(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, deep.into_bytes(), 422, "invalid_request"),
        (Method::POST, mlp.into(), json, b"{\"epochs\": 5} trailing".to_vec(), 400, "invalid_json"),
        (Method::POST, mlp.into(), json, b"{".to_vec(), 400, "invalid_json"),
        (Method::POST, mlp.into(), Some("text/plain"), b"{}".to_vec(), 415, "unsupported_media_type"),
        (Method::POST, mlp.into(), None, b"{}".to_vec(), 415, "unsupported_media_type"),
        (Method::POST, mlp.into(), json, vec![b' '; 2000], 413, "body_too_large"),
        (Method::POST, "/train/gbdt/async".into(), json, b"{\"gbdt\": {\"trees\": 5}}".to_vec(), 422, "invalid_request"),
        (Method::POST, "/train/gbdt/async".into(), json, b"{\"gbdt\": {\"n_trees\": 0}}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, mlp.into(), json, b"{\"hidden_sizes\": [4096, 4096, 4096, 4096, 4096]}".to_vec(), 422, "model_too_large"),
        (Method::POST, mlp.into(), json, b"{\"dataset\": \"nope\"}".to_vec(), 404, "dataset_not_found"),
        (Method::POST, mlp.into(), json, b"{\"callback_url\": \"http://10.0.0.1/\"}".to_vec(), 422, "callback_not_allowed"),
        (Method::POST, "/train/mlp?wait_s=-1".into(), json, b"{}".to_vec(), 400, "invalid_query"),
        (Method::POST, "/train/mlp?wait_s=100000".into(), json, b"{}".to_vec(), 400, "invalid_query"),
        (Method::POST, "/train/mlp?colour=red".into(), json, b"{}".to_vec(), 400, "invalid_query"),
        (Method::GET, "/task/not-a-uuid/status".into(), None, vec![], 400, "invalid_id"),
        (Method::GET, "/task/12345/result".into(), None, vec![], 400, "invalid_id"),
        (Method::GET, "/task/not-a-uuid".into(), None, vec![], 400, "invalid_id"),
        (Method::POST, "/task/not-a-uuid/cancel".into(), None, vec![], 400, "invalid_id"),
        (Method::GET, format!("/task/{uuid}/status"), None, vec![], 404, "task_not_found"),
        (Method::GET, "/tasks?state=DONE".into(), None, vec![], 400, "invalid_query"),
        (Method::GET, "/tasks?limit=0".into(), None, vec![], 400, "invalid_query"),
        (Method::GET, "/tasks?limit=ten".into(), None, vec![], 400, "invalid_query"),
        (Method::GET, "/tasks?model_type=resnet".into(), None, vec![], 400, "invalid_query"),
        (Method::GET, "/tasks?colour=red".into(), None, vec![], 400, "invalid_query"),
        (Method::POST, "/datasets?name=d".into(), Some("text/csv"), b"a,y\n1,2\n".to_vec(), 400, "invalid_query"),
        (Method::POST, "/datasets?name=&target=y".into(), Some("text/csv"), b"a,y\n1,2\n".to_vec(), 400, "invalid_query"),
        (Method::POST, "/datasets?name=d&target=y&x=1".into(), Some("text/csv"), b"a,y\n1,2\n".to_vec(), 400, "invalid_query"),
        (Method::POST, "/datasets?name=d&target=y".into(), json, b"a,y\n1,2\n".to_vec(), 415, "unsupported_media_type"),
        (Method::POST, "/datasets?name=d&target=y".into(), Some("text/csv"), b"a,b\n1,2\n".to_vec(), 422, "invalid_csv"),
        (Method::POST, "/datasets?name=d&target=y".into(), Some("text/csv"), b"a,y\n1,inf\n".to_vec(), 422, "invalid_csv"),
        (Method::DELETE, "/datasets/nope".into(), None, vec![], 400, "invalid_id"),
        (Method::POST, "/models/not-a-model/predict".into(), json, b"{\"rows\": [[1]]}".to_vec(), 404, "model_not_found"),
        (Method::POST, "/models".into(), json, b"{\"name\": \"a b\"}".to_vec(), 422, "invalid_parameters"),
        (Method::POST, "/models".into(), json, b"{\"name\": \"m\", \"task_id\": \"x\", \"v\": 1}".to_vec(), 422, "invalid_request"),
        (Method::PUT, "/models/m/aliases/production".into(), json, b"{}".to_vec(), 422, "invalid_parameters"),
        (Method::PUT, "/models/m/aliases/production".into(), json, b"{\"version\": 1}".to_vec(), 404, "model_not_found"),
        (Method::DELETE, "/models/m/versions/1".into(), None, vec![], 404, "model_not_found"),
        (Method::POST, "/models/m/aliases/production/predict".into(), json, b"{\"rows\": [[1]]}".to_vec(), 404, "model_not_found"),
        (Method::POST, "/schedules".into(), json, b"{\"name\": \"x\"}".to_vec(), 422, "invalid_schedule"),
        (Method::POST, "/schedules".into(), json, b"{\"name\": \"x y\", \"cron\": \"* * * * *\", \"model_type\": \"mlp\"}".to_vec(), 422, "invalid_schedule_name"),
        (Method::POST, "/schedules".into(), json, b"{\"name\": \"x\", \"cron\": \"nope\", \"model_type\": \"mlp\"}".to_vec(), 422, "invalid_cron"),
        (Method::POST, "/schedules".into(), json, b"{\"name\": \"x\", \"cron\": \"* * * * *\", \"timezone\": \"Mars/Base\", \"model_type\": \"mlp\"}".to_vec(), 422, "invalid_timezone"),
        (Method::POST, "/cluster/nodes".into(), json, b"{}".to_vec(), 405, "method_not_allowed"),
        (Method::GET, "/nothing/here".into(), None, vec![], 404, "not_found"),
    ];
    let mut wrong = Vec::new();
    for (method, path, content_type, body, status, code) in cases {
        let mut request = warp::test::request()
            .method(method.as_str())
            .path(&path)
            .header("host", "127.0.0.1");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let answer = request.body(body).reply(&routes).await;
        let json: serde_json::Value = serde_json::from_slice(answer.body()).unwrap_or_default();
        let fine = answer.status().as_u16() == status
            && json["error"]["code"] == code
            && json["success"] == false
            && !json["error"]["message"].as_str().unwrap_or("").is_empty();
        if !fine {
            wrong.push(format!(
                "{method} {path}: expected {status} {code}, got {} {json}",
                answer.status()
            ));
        }
        // The label of the metrics comes from the same table that matched the route.
        assert_ne!(
            routes::label(&method, path.split('?').next().unwrap()),
            "",
            "{path}"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
