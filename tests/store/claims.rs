//! A claim changes only what a claim changes. On Redis the claim script makes the claimed
//! record itself from the queued one (`claim_first.lua`, without decoding it), so every other
//! field must come back as it was, however odd, and the claim's event must be the one a node
//! writes for it.

use super::*;

/// A task with strings JSON must escape, numbers only 17 digits keep, and optional fields set.
fn odd_task() -> TaskRecord {
    let mut spec = TrainSpec::new(ModelType::Linear);
    spec.dataset = "we\"ird}{[],\\ \u{e9}\u{1F600} \"state\":\"PENDING\",\"attempt\":9".into();
    spec.seed = u64::MAX;
    spec.learning_rate = 0.1 + 0.2;
    let mut t = TaskRecord::new(spec, None, 7, 3);
    t.callback_url = Some("http://example.test/}\"{".into());
    t.requested_as = Some("pytorch".into());
    t.dataset_sha256 = Some("ab".repeat(32));
    t
}

/// `before` as a claim by `trainer` makes it, with the claim's own times.
fn as_claimed(before: &TaskRecord, trainer: &str, claimed: &TaskRecord) -> TaskRecord {
    let mut expected = before.clone();
    expected.state = TaskState::Started;
    expected.attempt += 1;
    expected.trainer = Some(trainer.into());
    expected.started_at = claimed.started_at;
    expected.lease_until = claimed.lease_until;
    expected.progress = None;
    expected.retry_at = None;
    expected.resumed_from = None;
    expected
}

/// Checks `claimed`'s times and its event (the last of its events).
async fn check_claim<S: Store>(store: &S, claimed: &TaskRecord, node: Option<&str>, since: f64) {
    let started = claimed.started_at.unwrap();
    assert!(since <= started && started <= now_s(), "claimed now");
    let lease = claimed.lease_until.unwrap() - started;
    assert!(
        (lease - settings().lease_s).abs() < 0.01,
        "lease of {lease} s"
    );
    let events = store.task_events(claimed.id, EventId::ZERO).await.unwrap();
    let event = events.last().unwrap();
    assert_eq!((event.kind, event.terminal), (EventKind::State, false));
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    let expected = serde_json::json!({
        "task_id": claimed.id,
        "state": "STARTED",
        "model_type": claimed.model_type,
        "dataset": claimed.spec.dataset,
        "priority": claimed.priority,
        "submitted_at": claimed.submitted_at,
        "attempt": claimed.attempt,
        "node": node,
        "trainer": claimed.trainer,
        "progress": null,
        "result": null,
        "error": claimed.error,
        "at": data["at"],
    });
    assert_eq!(data, expected);
    let at = data["at"].as_f64().unwrap();
    assert!((at - started).abs() < 1.0, "the event is of the claim");
}

pub async fn claims_change_only_what_a_claim_changes<S: Store>(store: S) {
    let odd = odd_task();
    store.submit(&odd, 100).await.unwrap();
    let since = now_s();
    let claimed = store
        .claim("node-x/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        claimed.task,
        as_claimed(&odd, "node-x/cpu-0", &claimed.task)
    );
    assert_eq!(found(store.get(odd.id).await.unwrap()), claimed.task);
    check_claim(&store, &claimed.task, Some("node-x"), since).await;

    // A retry: progress written, then the attempt failed and was requeued with its error.
    assert!(store.progress(odd.id, 1, &progress(3)).await.unwrap());
    assert!(
        store
            .requeue(odd.id, 1, error("backend"), 0.2)
            .await
            .unwrap()
    );
    let waiting = found(store.get(odd.id).await.unwrap());
    assert!(waiting.retry_at.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.promote().await.unwrap(), 1);
    let queued = found(store.get(odd.id).await.unwrap());
    let since = now_s();
    // A trainer without a node in its name: the event names no node.
    let again = store.claim("solo", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(again.task, as_claimed(&queued, "solo", &again.task));
    assert_eq!(again.attempts.len(), 1);
    assert_eq!(found(store.get(odd.id).await.unwrap()), again.task);
    check_claim(&store, &again.task, None, since).await;
}

/// On Redis a claim is one script call, a claim of some work too: the script takes the first
/// task itself (a claim of a chosen task would peek first, then claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_one_script_call_on_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "first", settings())
        .await
        .unwrap();
    // Loads the script (the first call of one loads it: a second call).
    assert_eq!(store.claim("n/cpu-0", DeviceSpec::Cpu).await.unwrap(), None);
    let (odd, same) = (odd_task(), odd_task());
    store.submit(&odd, 100).await.unwrap();
    store.submit(&same, 100).await.unwrap();
    let scripts = || command_calls(&server, "evalsha");
    let before = scripts();
    let claimed = store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.id, scripts() - before), (odd.id, 1));
    let before = scripts();
    let work = Work::of(&claimed.task);
    let next = store
        .claim_work("n/cpu-1", DeviceSpec::Cpu, &work)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.id, scripts() - before), (same.id, 1));
}
