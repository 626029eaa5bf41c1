//! The store conformance suite: the same behaviour, checked against the embedded store and
//! against Redis (a real `redis-server` on a free port).

#[path = "store/batch.rs"]
mod batch;
#[path = "store/bundles.rs"]
mod bundles;
#[path = "store/checkpoints.rs"]
mod checkpoints;
#[path = "store/claims.rs"]
mod claims;
mod common;
#[path = "store/live.rs"]
mod live;
#[path = "store/registry.rs"]
mod registry;
#[path = "store/sweeps.rs"]
mod sweeps;

use std::time::Duration;

use common::{RedisServer, temp_dir};
use registry::*;
use trainyard::store::prelude::*;
use trainyard::store::{
    CancelOutcome, CasToken, Claimed, DatasetDeleted, DatasetInfo, EmbeddedStore, Ending, Event,
    EventId, EventKind, Finish, IdempotencyKey, Lookup, Missed, NodeInfo, RedisStore, Renewal,
    Schedule, ScheduleCreated, ScheduleLink, StoreError, StoreSettings, Submitted, TaskError,
    TaskFilter, TaskProgress, TaskRecord, TaskState, TrainerSeat, Work, now_s,
};
use trainyard::training::{DeviceClass, DeviceSpec, ModelType, TrainSpec};
use uuid::Uuid;

use batch::*;
use bundles::*;
use checkpoints::*;
use claims::*;
use live::*;
use sweeps::*;

fn task(model: ModelType, priority: u8) -> TaskRecord {
    TaskRecord::new(TrainSpec::new(model), None, priority, 2)
}

fn found(lookup: Lookup) -> TaskRecord {
    match lookup {
        Lookup::Found(t) => *t,
        other => panic!("expected a task, got {other:?}"),
    }
}

fn error(code: &str) -> TaskError {
    TaskError {
        code: code.into(),
        message: format!("{code} happened"),
    }
}

fn progress(current: u64) -> TaskProgress {
    TaskProgress {
        current,
        total: 10,
        percent: current as f64 * 10.0,
        message: format!("Training epoch {current}/10"),
        loss: Some(1.0),
    }
}

async fn submit_get_and_unknown_ids<S: Store>(store: S) {
    let t = task(ModelType::Mlp, 0);
    store.submit(&t, 100).await.unwrap();
    let got = found(store.get(t.id).await.unwrap());
    assert_eq!(got, t);
    assert_eq!(got.state, TaskState::Pending);
    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), Lookup::Missing);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    store.ping().await.unwrap();
}

async fn claims_follow_priority_then_age<S: Store>(store: S) {
    let (a, b, c) = (
        task(ModelType::Mlp, 0),
        task(ModelType::Linear, 0),
        task(ModelType::Gbdt, 9),
    );
    for t in [&a, &b, &c] {
        store.submit(t, 100).await.unwrap();
    }
    let order: Vec<Uuid> = [
        store.claim("t1", DeviceSpec::Cpu).await,
        store.claim("t1", DeviceSpec::Cpu).await,
        store.claim("t1", DeviceSpec::Cpu).await,
    ]
    .into_iter()
    .map(|c| c.unwrap().unwrap().id)
    .collect();
    assert_eq!(order, [c.id, a.id, b.id]);
    assert_eq!(store.claim("t1", DeviceSpec::Cpu).await.unwrap(), None);
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

/// A claim for some work takes the next task only if it does that work (the same spec but
/// for seed, learning rates and time limit, on the same data set); otherwise it takes nothing
/// and the task stays queued as it was.
async fn claims_for_some_work_take_only_a_task_doing_it<S: Store>(store: S) {
    let mut first = task(ModelType::Linear, 0);
    first.spec.epochs = 1;
    let mut same = task(ModelType::Linear, 0);
    same.spec.epochs = 1;
    same.spec.seed = 7;
    same.spec.learning_rate = 0.01;
    let mut other = task(ModelType::Linear, 0);
    other.spec.epochs = 50;
    for t in [&first, &same, &other] {
        store.submit(t, 100).await.unwrap();
    }
    let work = Work::of(&first);
    // The id of the task claimed for `trainer` doing `work`, if any.
    let claim = async |trainer: &str, work: &Work| {
        let claimed = store.claim_work(trainer, DeviceSpec::Cpu, work).await;
        claimed.unwrap().map(|c| c.task.id)
    };
    let taken = store.claim("t1", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(taken.id, first.id);
    assert_eq!(claim("t1", &work).await, Some(same.id));
    // The next task does other work: nothing is claimed, and it stays queued as it was.
    assert_eq!(claim("t1", &work).await, None);
    let queued = found(store.get(other.id).await.unwrap());
    assert_eq!(queued, other);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    // Another data set is other work too.
    let elsewhere = Work {
        dataset: Some(Uuid::new_v4()),
        ..Work::of(&other)
    };
    assert_eq!(claim("t1", &elsewhere).await, None);
    assert_eq!(claim("t2", &Work::of(&other)).await, Some(other.id));
    assert_eq!(claim("t2", &work).await, None);
}

/// A claim takes what is next now, whatever the last claim saw next: a task submitted since at
/// a higher priority, or the next one revoked since.
async fn claims_see_changes_since_the_last_claim<S: Store>(store: S) {
    let (a, b, c) = (
        task(ModelType::Linear, 5),
        task(ModelType::Linear, 5),
        task(ModelType::Linear, 5),
    );
    for t in [&a, &b, &c] {
        store.submit(t, 100).await.unwrap();
    }
    let claim = async || {
        store
            .claim("t1", DeviceSpec::Cpu)
            .await
            .unwrap()
            .map(|c| c.id)
    };
    assert_eq!(claim().await, Some(a.id));
    let urgent = task(ModelType::Linear, 9);
    store.submit(&urgent, 100).await.unwrap();
    assert_eq!(claim().await, Some(urgent.id), "the higher priority first");
    assert_eq!(store.cancel(b.id).await.unwrap(), CancelOutcome::Revoked);
    assert_eq!(claim().await, Some(c.id), "the revoked one is skipped");
    assert_eq!(claim().await, None);
    let late = task(ModelType::Linear, 0);
    store.submit(&late, 100).await.unwrap();
    assert_eq!(
        claim().await,
        Some(late.id),
        "an empty queue is looked at again"
    );
}

/// Claims under way at once (a node's trainers running on together) take different tasks, the
/// first ones by priority then age, and the claims after them take the rest in order.
async fn concurrent_claims_take_the_first_tasks_once_each<S: Store>(store: S) {
    let tasks: Vec<TaskRecord> = [0, 5, 9, 0, 5, 1]
        .into_iter()
        .map(|priority| task(ModelType::Linear, priority))
        .collect();
    for t in &tasks {
        store.submit(t, 100).await.unwrap();
    }
    let trainers = ["n/cpu-0", "n/cpu-1", "n/cpu-2", "n/cpu-3"];
    let claims = trainers.map(|trainer| store.claim(trainer, DeviceSpec::Cpu));
    let mut taken: Vec<Uuid> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(|claimed| claimed.unwrap().expect("a task for every claim").id)
        .collect();
    taken.sort();
    let mut first: Vec<Uuid> = [2, 1, 4, 5].map(|i| tasks[i].id).to_vec();
    first.sort();
    assert_eq!(taken, first, "the first four, once each");
    for i in [0, 3] {
        let next = store.claim("n/cpu-0", DeviceSpec::Cpu).await.unwrap();
        assert_eq!(next.map(|c| c.id), Some(tasks[i].id));
    }
    assert!(
        store
            .claim("n/cpu-0", DeviceSpec::Cpu)
            .await
            .unwrap()
            .is_none()
    );
}

/// `status` shows what `get` does, as far as the status endpoint needs.
async fn status_reads_state_progress_and_attempt<S: Store>(store: S) {
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    let status = |lookup: Lookup<trainyard::store::TaskStatus>| match lookup {
        Lookup::Found(s) => (s.id, s.state, s.attempt, s.progress),
        other => panic!("expected a status, got {other:?}"),
    };
    assert_eq!(
        status(store.status(t.id).await.unwrap()),
        (t.id, TaskState::Pending, 0, None)
    );
    store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert!(store.progress(t.id, 1, &progress(3)).await.unwrap());
    assert_eq!(
        status(store.status(t.id).await.unwrap()),
        (t.id, TaskState::Progress, 1, Some(progress(3)))
    );
    assert_eq!(store.status(Uuid::new_v4()).await.unwrap(), Lookup::Missing);
}

async fn attempts_are_fenced<S: Store>(store: S) {
    let t = task(ModelType::Mlp, 3);
    store.submit(&t, 100).await.unwrap();
    let claimed = store
        .claim("trainer-a", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.state, claimed.attempt, claimed.trainer.as_deref()),
        (TaskState::Started, 1, Some("trainer-a"))
    );
    assert!(store.progress(t.id, 1, &progress(3)).await.unwrap());
    assert!(
        !store.progress(t.id, 2, &progress(4)).await.unwrap(),
        "a stale attempt may not write"
    );
    let now = found(store.get(t.id).await.unwrap());
    assert_eq!(
        (now.state, now.progress.unwrap().current),
        (TaskState::Progress, 3)
    );
    assert_eq!(store.leases().await.unwrap().len(), 1);

    // The attempt is given up and requeued; the retry is attempt 2 and the old one is fenced.
    assert!(
        store
            .requeue(t.id, 1, error("trainer_crashed"), 0.0)
            .await
            .unwrap()
    );
    let pending = found(store.get(t.id).await.unwrap());
    assert_eq!(
        (pending.state, pending.attempts.len()),
        (TaskState::Pending, 1)
    );
    assert_eq!(pending.attempts[0].trainer.as_deref(), Some("trainer-a"));
    assert!(store.leases().await.unwrap().is_empty());
    let retry = store
        .claim("trainer-b", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retry.attempt, 2);
    let result = serde_json::json!({"metrics": {"test_r2": 0.9}});
    let stale = Finish::Success {
        result: result.clone(),
        model: vec![1],
        progress: None,
    };
    assert!(!store.finish(t.id, 1, stale).await.unwrap());
    assert!(!store.requeue(t.id, 1, error("late"), 0.0).await.unwrap());
    assert!(
        store
            .finish(
                t.id,
                2,
                Finish::Success {
                    result: result.clone(),
                    model: vec![7, 8, 9],
                    progress: None,
                }
            )
            .await
            .unwrap()
    );
    let done = found(store.get(t.id).await.unwrap());
    assert_eq!(
        (done.state, done.result),
        (TaskState::Success, Some(result))
    );
    assert!(done.expires_at.unwrap() > now_s());
    assert_eq!(store.model(t.id).await.unwrap(), Some(vec![7, 8, 9]));
    assert!(
        !store
            .finish(t.id, 2, Finish::Failure(error("again")))
            .await
            .unwrap(),
        "a task ends once"
    );
    assert!(store.leases().await.unwrap().is_empty());
}

async fn failures_and_cancels<S: Store>(store: S) {
    let (pending, running, failed) = (
        task(ModelType::Mlp, 0),
        task(ModelType::Mlp, 5),
        task(ModelType::Mlp, 9),
    );
    for t in [&failed, &running, &pending] {
        store.submit(t, 100).await.unwrap();
    }
    let f = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(f.id, failed.id);
    assert!(
        store
            .finish(f.id, 1, Finish::Failure(error("invalid_data")))
            .await
            .unwrap()
    );
    let f = found(store.get(f.id).await.unwrap());
    assert_eq!(
        (f.state, f.error.unwrap().code.as_str()),
        (TaskState::Failure, "invalid_data")
    );
    assert_eq!(store.model(f.id).await.unwrap(), None);

    let r = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(r.id, running.id);
    assert_eq!(
        store.cancel(pending.id).await.unwrap(),
        CancelOutcome::Revoked
    );
    assert_eq!(
        found(store.get(pending.id).await.unwrap()).state,
        TaskState::Revoked
    );
    assert_eq!(
        store.claim("t", DeviceSpec::Cpu).await.unwrap(),
        None,
        "a revoked task is not claimed"
    );
    assert_eq!(
        store.cancel(running.id).await.unwrap(),
        CancelOutcome::Running {
            trainer: "t".into(),
            attempt: 1
        }
    );
    assert!(found(store.get(running.id).await.unwrap()).cancel_requested);
    assert!(store.finish(running.id, 1, Finish::Revoked).await.unwrap());
    assert_eq!(
        store.cancel(running.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskState::Revoked)
    );
    assert_eq!(
        store.cancel(Uuid::new_v4()).await.unwrap(),
        CancelOutcome::Missing
    );
}

async fn a_full_queue_refuses_and_stores_nothing<S: Store>(store: S) {
    store.submit(&task(ModelType::Mlp, 0), 2).await.unwrap();
    store.submit(&task(ModelType::Mlp, 0), 2).await.unwrap();
    let third = task(ModelType::Mlp, 0);
    assert!(matches!(
        store.submit(&third, 2).await,
        Err(StoreError::QueueFull { limit: 2 })
    ));
    assert_eq!(store.get(third.id).await.unwrap(), Lookup::Missing);
    assert_eq!(store.queue_depth().await.unwrap(), 2);
}

async fn finished_tasks_expire<S: Store>(store: S) {
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    store
        .finish(
            t.id,
            1,
            Finish::Success {
                result: serde_json::json!({}),
                model: vec![1],
                progress: None,
            },
        )
        .await
        .unwrap();
    let unfinished = task(ModelType::Linear, 0);
    store.submit(&unfinished, 100).await.unwrap();
    assert!(matches!(store.get(t.id).await.unwrap(), Lookup::Found(_)));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.get(t.id).await.unwrap() != Lookup::Expired {
        store.sweep().await.unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "the result did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.sweep().await.unwrap();
    assert_eq!(
        store.get(t.id).await.unwrap(),
        Lookup::Expired,
        "still expired after the sweep"
    );
    assert_eq!(store.model(t.id).await.unwrap(), None);
    assert_eq!(store.cancel(t.id).await.unwrap(), CancelOutcome::Expired);
    assert_eq!(store.status(t.id).await.unwrap(), Lookup::Expired);
    let all = TaskFilter {
        limit: 10,
        ..TaskFilter::default()
    };
    assert_eq!(
        listed(&store, all).await,
        [unfinished.id],
        "pending tasks never expire"
    );
}

async fn lists_filter_newest_first<S: Store>(store: S) {
    let mut ids = Vec::new();
    for model in [
        ModelType::Mlp,
        ModelType::Gbdt,
        ModelType::Mlp,
        ModelType::Linear,
    ] {
        let t = task(model, 0);
        store.submit(&t, 100).await.unwrap();
        ids.push(t.id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = listed(
        &store,
        TaskFilter {
            limit: 10,
            ..TaskFilter::default()
        },
    )
    .await;
    assert_eq!(all, ids.iter().rev().copied().collect::<Vec<_>>());
    let mlps = listed(
        &store,
        TaskFilter {
            model_type: Some(ModelType::Mlp),
            limit: 10,
            ..TaskFilter::default()
        },
    )
    .await;
    assert_eq!(mlps, [ids[2], ids[0]]);
    let claimed = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    let started = listed(
        &store,
        TaskFilter {
            state: Some(TaskState::Started),
            limit: 10,
            ..TaskFilter::default()
        },
    )
    .await;
    assert_eq!(started, [claimed.id]);
    assert_eq!(
        store
            .list(&TaskFilter {
                limit: 2,
                ..TaskFilter::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
}

fn dataset_info(name: &str, bytes: u64) -> DatasetInfo {
    DatasetInfo {
        id: Uuid::new_v4(),
        name: name.into(),
        target: "y".into(),
        rows: 2,
        features: vec!["a".into()],
        bytes,
        uploaded_at: now_s(),
        expires_at: None,
        sha256: None,
    }
}

/// `info` without its expiry (which each read may renew).
fn timeless(info: &DatasetInfo) -> DatasetInfo {
    DatasetInfo {
        expires_at: None,
        ..info.clone()
    }
}

async fn data_sets_round_trip<S: Store>(store: S) {
    let info = dataset_info("prices", 12);
    let kept = store.put_dataset(&info, b"a,y\n1,2\n3,4\n").await.unwrap();
    assert_eq!(timeless(&kept), info);
    let expires_at = kept.expires_at.unwrap();
    assert!((expires_at - now_s() - 3.0).abs() < 1.0, "{kept:?}");
    let (read, csv) = store.dataset(info.id).await.unwrap().unwrap();
    assert_eq!(
        (timeless(&read), &*csv),
        (info.clone(), &b"a,y\n1,2\n3,4\n"[..])
    );
    let listed: Vec<DatasetInfo> = store
        .datasets()
        .await
        .unwrap()
        .iter()
        .map(timeless)
        .collect();
    assert_eq!(listed, vec![info]);
    assert_eq!(store.dataset(Uuid::new_v4()).await.unwrap(), None);
}

/// `datasets.max_total_bytes` (64 here) counts every data set kept; a data set a task yet to
/// end uses is neither deleted nor swept; one not used for `datasets.expires_s` (3 s here) is
/// swept, and a read renews it.
async fn data_sets_have_a_quota_an_expiry_and_a_delete<S: Store>(store: S) {
    let csv = [b'1'; 30];
    let (a, b, c) = (
        dataset_info("a", 30),
        dataset_info("b", 30),
        dataset_info("c", 30),
    );
    store.put_dataset(&a, &csv).await.unwrap();
    store.put_dataset(&b, &csv).await.unwrap();
    match store.put_dataset(&c, &csv).await {
        Err(StoreError::DatasetQuota {
            total,
            bytes,
            limit,
        }) => {
            assert_eq!((total, bytes, limit), (60, 30, 64))
        }
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    assert_eq!(
        store.dataset(c.id).await.unwrap(),
        None,
        "nothing kept of it"
    );
    // A task yet to end (queued, then running) keeps its data set.
    let mut uses_a = task(ModelType::Linear, 0);
    uses_a.dataset_id = Some(a.id);
    store.submit(&uses_a, 100).await.unwrap();
    assert_eq!(
        store.delete_dataset(a.id).await.unwrap(),
        DatasetDeleted::InUse(uses_a.id)
    );
    assert_eq!(
        store.delete_dataset(Uuid::new_v4()).await.unwrap(),
        DatasetDeleted::Missing
    );
    assert_eq!(
        store.delete_dataset(b.id).await.unwrap(),
        DatasetDeleted::Deleted
    );
    assert_eq!(
        store.delete_dataset(b.id).await.unwrap(),
        DatasetDeleted::Missing
    );
    assert_eq!(store.dataset(b.id).await.unwrap(), None);
    // Its room is back.
    store.put_dataset(&c, &csv).await.unwrap();
    let claimed = store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, uses_a.id);
    assert_eq!(
        store.delete_dataset(a.id).await.unwrap(),
        DatasetDeleted::InUse(uses_a.id)
    );
    // c is read at 2 s (renewed to 5 s); at 3.5 s a (in use) and c are kept, then c goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store.dataset(c.id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    store.sweep().await.unwrap();
    let mut kept: Vec<Uuid> = store
        .datasets()
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    kept.sort();
    let mut want = vec![a.id, c.id];
    want.sort();
    assert_eq!(kept, want);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    store.sweep().await.unwrap();
    let kept: Vec<Uuid> = store
        .datasets()
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(kept, vec![a.id]);
    assert_eq!(store.dataset(c.id).await.unwrap(), None);
    // Once its task ended, a can go.
    let done = store
        .finish(uses_a.id, 1, Finish::Failure(error("boom")))
        .await
        .unwrap();
    assert!(done);
    assert_eq!(
        store.delete_dataset(a.id).await.unwrap(),
        DatasetDeleted::Deleted
    );
}

async fn tasks_wait_for_the_device_kind_they_ask_for<S: Store>(store: S) {
    let mut on_gpu = task(ModelType::Mlp, 9);
    on_gpu.device = DeviceClass::Gpu;
    let mut on_cpu = task(ModelType::Mlp, 0);
    on_cpu.device = DeviceClass::Cpu;
    let anywhere = task(ModelType::Mlp, 5);
    for t in [&on_gpu, &on_cpu, &anywhere] {
        store.submit(t, 100).await.unwrap();
    }
    // A CPU trainer skips the GPU task however urgent, taking priority order among the rest.
    assert_eq!(
        store
            .claim("cpu", DeviceSpec::Cpu)
            .await
            .unwrap()
            .unwrap()
            .id,
        anywhere.id
    );
    assert_eq!(
        store
            .claim("cpu", DeviceSpec::Cpu)
            .await
            .unwrap()
            .unwrap()
            .id,
        on_cpu.id
    );
    assert_eq!(store.claim("cpu", DeviceSpec::Cpu).await.unwrap(), None);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(
        depths.iter().map(|by_priority| by_priority[9]).sum::<u64>(),
        1
    );
    let claimed = store
        .claim("gpu", DeviceSpec::Gpu(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.id, claimed.device), (on_gpu.id, DeviceClass::Gpu));
    // A requeued GPU task goes back to the GPU queue; cancelling it empties that queue.
    assert!(
        store
            .requeue(on_gpu.id, 1, error("device_lost"), 0.0)
            .await
            .unwrap()
    );
    assert_eq!(store.claim("cpu", DeviceSpec::Cpu).await.unwrap(), None);
    assert_eq!(
        store.cancel(on_gpu.id).await.unwrap(),
        CancelOutcome::Revoked
    );
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    assert_eq!(store.claim("gpu", DeviceSpec::Gpu(0)).await.unwrap(), None);
}

async fn leases_are_renewed_and_run_out<S: Store>(store: S) {
    let t = task(ModelType::Mlp, 0);
    store.submit(&t, 100).await.unwrap();
    let claimed = store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    let lease = store.leases().await.unwrap().pop().unwrap();
    assert_eq!((lease.id, lease.attempt, lease.node()), (t.id, 1, "n"));
    assert!(lease.until > now_s() && lease.until <= now_s() + 1.0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.renew(t.id, 1).await.unwrap(),
        Renewal::Held { cancel: false }
    );
    let renewed = store.leases().await.unwrap().pop().unwrap();
    assert!(renewed.until > lease.until, "renewal moves the lease on");
    assert!(matches!(
        store.cancel(t.id).await.unwrap(),
        CancelOutcome::Running { .. }
    ));
    assert_eq!(
        store.renew(t.id, 1).await.unwrap(),
        Renewal::Held { cancel: true }
    );
    // Not renewed: the lease runs out; the stale attempt learns it lost the task.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.leases().await.unwrap()[0].until < now_s());
    assert!(
        store
            .requeue(t.id, claimed.attempt, error("lease_expired"), 0.0)
            .await
            .unwrap()
    );
    assert_eq!(store.renew(t.id, 1).await.unwrap(), Renewal::Lost);
    assert!(store.leases().await.unwrap().is_empty());
    assert_eq!(store.renew(Uuid::new_v4(), 1).await.unwrap(), Renewal::Lost);
}

async fn nodes_announce_themselves<S: Store>(store: S) {
    let mut node = NodeInfo {
        name: "node-a".into(),
        http: "127.0.0.1:5000".into(),
        cluster: "127.0.0.1:4700".into(),
        trainers: vec![TrainerSeat {
            name: "node-a/cpu-0".into(),
            device: "cpu".into(),
        }],
        started_at: now_s(),
        seen_at: now_s(),
        draining: false,
    };
    store.announce(&node).await.unwrap();
    node.draining = true;
    store.announce(&node).await.unwrap();
    assert_eq!(store.nodes().await.unwrap(), vec![node]);
    assert!(store.lead("node-a", 3.0).await.unwrap());
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("node-a"));
}

async fn retries_wait_out_their_delay<S: Store>(store: S) {
    let (t, other) = (task(ModelType::Mlp, 9), task(ModelType::Linear, 0));
    store.submit(&t, 100).await.unwrap();
    store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    // A delay long enough that the steps below run within it on a busy machine.
    assert!(store.requeue(t.id, 1, error("backend"), 3.0).await.unwrap());
    let waiting = found(store.get(t.id).await.unwrap());
    assert_eq!(waiting.state, TaskState::Pending);
    assert!(waiting.retry_at.unwrap() > now_s());
    assert!(waiting.attempts[0].failed_at.is_some());
    // Not due: a lower-priority task runs first; nothing is promoted yet.
    store.submit(&other, 100).await.unwrap();
    assert_eq!(store.promote().await.unwrap(), 0);
    let next = store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, other.id);
    assert_eq!(store.claim("n/cpu-1", DeviceSpec::Cpu).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(store.promote().await.unwrap(), 1);
    let again = store
        .claim("n/cpu-1", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempt, again.retry_at), (t.id, 2, None));
    // A task cancelled while it waits is revoked and never comes back.
    assert!(store.requeue(t.id, 2, error("backend"), 0.2).await.unwrap());
    assert_eq!(store.cancel(t.id).await.unwrap(), CancelOutcome::Revoked);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.promote().await.unwrap(), 0);
    assert_eq!(store.claim("n/cpu-1", DeviceSpec::Cpu).await.unwrap(), None);
}

async fn idempotency_keys_submit_once_while_they_live<S: Store>(store: S) {
    let key = IdempotencyKey {
        key: "k1".into(),
        fingerprint: "f1".into(),
        // Long enough that the steps below run within it on a busy machine.
        ttl_s: 3.0,
    };
    let (first, second) = (task(ModelType::Mlp, 0), task(ModelType::Mlp, 0));
    assert_eq!(
        store.submit_keyed(&first, 100, &key).await.unwrap(),
        Submitted::New
    );
    assert_eq!(
        store.submit_keyed(&second, 100, &key).await.unwrap(),
        Submitted::Existing {
            id: first.id,
            fingerprint: "f1".into()
        }
    );
    assert_eq!(store.get(second.id).await.unwrap(), Lookup::Missing);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    // A full queue stores neither the task nor the key.
    let other = IdempotencyKey {
        key: "k2".into(),
        ..key.clone()
    };
    assert!(matches!(
        store.submit_keyed(&second, 1, &other).await,
        Err(StoreError::QueueFull { .. })
    ));
    assert_eq!(
        store.submit_keyed(&second, 100, &other).await.unwrap(),
        Submitted::New
    );
    // Once the key expires it may be used again.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    store.sweep().await.unwrap();
    let third = task(ModelType::Mlp, 0);
    assert_eq!(
        store.submit_keyed(&third, 100, &key).await.unwrap(),
        Submitted::New
    );
}

/// The ids `list` returns for `filter`, in its order.
async fn schedules_are_kept_and_advance_only_forward<S: Store>(store: S) {
    let mut template = task(ModelType::Linear, 3);
    template.spec.learning_rate = 0.001_234_567_890_123_456_7;
    let schedule = Schedule {
        name: "nightly".into(),
        cron: "0 2 * * *".into(),
        timezone: "Europe/Paris".into(),
        missed: Missed::Skip,
        misfire_grace_s: 60,
        model_type: ModelType::Linear,
        request: serde_json::json!({"epochs": 1, "learning_rate": 0.001_234_567_890_123_456_7}),
        template,
        created_at: now_s(),
        paused: false,
        through: 1_000,
        fired: 0,
        skipped: 0,
        last_task: None,
        last_fired_at: None,
    };
    assert_eq!(
        store.create_schedule(&schedule, 1).await.unwrap(),
        ScheduleCreated::Created
    );
    assert_eq!(
        store.create_schedule(&schedule, 1).await.unwrap(),
        ScheduleCreated::Exists,
        "name taken"
    );
    // No more schedules than the most: the next is refused, and nothing of it is stored.
    let other = Schedule {
        name: "hourly".into(),
        ..schedule.clone()
    };
    assert_eq!(
        store.create_schedule(&other, 1).await.unwrap(),
        ScheduleCreated::Full
    );
    assert_eq!(store.schedules().await.unwrap(), vec![schedule.clone()]);

    let fired = Uuid::new_v4();
    assert!(
        store
            .advance_schedule("nightly", 2_000, Some(fired), 1)
            .await
            .unwrap()
    );
    // A step already taken (another leader's, or a retry) changes nothing.
    assert!(
        store
            .advance_schedule("nightly", 2_000, Some(Uuid::new_v4()), 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_schedule("nightly", 1_500, None, 4)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_schedule("nightly", 3_000, None, 7)
            .await
            .unwrap()
    );
    let now = store.schedules().await.unwrap().remove(0);
    assert_eq!(
        (now.through, now.fired, now.skipped, now.last_task),
        (3_000, 1, 7, Some(fired))
    );
    assert!(now.last_fired_at.is_some());
    assert_eq!(now.template, schedule.template, "floats survive");

    // Resuming skips the due times the schedule was paused through.
    assert!(store.pause_schedule("nightly", true).await.unwrap());
    assert!(store.schedules().await.unwrap()[0].paused);
    let resuming = now_s().floor() as i64;
    assert!(store.pause_schedule("nightly", false).await.unwrap());
    let resumed = store.schedules().await.unwrap().remove(0);
    assert!(!resumed.paused);
    assert!(
        resumed.through >= resuming,
        "{} {resuming}",
        resumed.through
    );

    assert!(!store.pause_schedule("other", true).await.unwrap());
    assert!(!store.advance_schedule("other", 1, None, 1).await.unwrap());
    assert!(store.delete_schedule("nightly").await.unwrap());
    assert!(!store.delete_schedule("nightly").await.unwrap());
    assert!(store.schedules().await.unwrap().is_empty());
}

/// A schedule `name` firing every second, done through 3 s ago (within its grace), stored;
/// with the first due time it has to fire.
async fn every_second<S: Store>(store: &S, name: &str) -> (Schedule, i64) {
    let through = now_s().floor() as i64 - 3;
    let schedule = Schedule {
        name: name.into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        missed: Missed::RunOnce,
        misfire_grace_s: 600,
        model_type: ModelType::Linear,
        request: serde_json::json!({}),
        template: task(ModelType::Linear, 0),
        created_at: now_s(),
        paused: false,
        through,
        fired: 0,
        skipped: 0,
        last_task: None,
        last_fired_at: None,
    };
    assert_eq!(
        store.create_schedule(&schedule, 10).await.unwrap(),
        ScheduleCreated::Created
    );
    (schedule, through + 1)
}

/// The tasks schedule `name` fired for due time `due`.
async fn fired_for<S: Store>(store: &S, name: &str, due: i64) -> Vec<TaskRecord> {
    let filter = TaskFilter {
        limit: 1000,
        ..TaskFilter::default()
    };
    let tasks = store.list(&filter).await.unwrap();
    tasks
        .into_iter()
        .filter(|t| {
            t.schedule
                .as_ref()
                .is_some_and(|s| s.name == name && s.due_at == due)
        })
        .collect()
}

/// A client that submits first with the key a firing had (`schedule:NAME:DUE`) does not take
/// the run over: the schedule fires a task of its own.
async fn a_client_key_cannot_take_a_schedule_run_over<S: Store>(store: S) {
    let (_, due) = every_second(&store, "nightly").await;
    let client_task = task(ModelType::Mlp, 0);
    let key = IdempotencyKey::client(&format!("schedule:nightly:{due}"), "00ff".into(), 60.0)
        .expect("a valid client key");
    assert_eq!(
        store.submit_keyed(&client_task, 100, &key).await.unwrap(),
        Submitted::New
    );
    assert!(
        IdempotencyKey::client(&format!("schedule/nightly/{due}"), "00ff".into(), 60.0).is_none(),
        "a firing's key is no client key"
    );
    assert!(trainyard::schedule::fire_due(&store).await.unwrap() >= 1);
    let fired = fired_for(&store, "nightly", due).await;
    assert_eq!(fired.len(), 1, "the due time fired a task of its own");
    assert_ne!(fired[0].id, client_task.id);
    assert_eq!(fired[0].model_type, ModelType::Linear);
    let client = found(store.get(client_task.id).await.unwrap());
    assert_eq!(client.schedule, None);
}

/// A firing an older node submitted under the old key (`schedule:NAME:DUE`), whose leader
/// stopped before marking it done, is not fired a second time after the upgrade.
async fn a_firing_keyed_the_old_way_fires_once_after_an_upgrade<S: Store>(store: S) {
    let (schedule, due) = every_second(&store, "nightly").await;
    let mut old = schedule.template.clone();
    old.id = Uuid::new_v4();
    old.schedule = Some(ScheduleLink {
        name: "nightly".into(),
        due_at: due,
        due_times: 1,
    });
    let old_key = IdempotencyKey {
        key: format!("schedule:nightly:{due}"),
        fingerprint: "schedule".into(),
        ttl_s: 600.0,
    };
    assert_eq!(
        store.submit_keyed(&old, u64::MAX, &old_key).await.unwrap(),
        Submitted::New
    );
    trainyard::schedule::fire_due(&store).await.unwrap();
    let fired: Vec<Uuid> = fired_for(&store, "nightly", due)
        .await
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(fired, vec![old.id], "the due time fired once");
    // Firing again changes nothing.
    trainyard::schedule::fire_due(&store).await.unwrap();
    assert_eq!(fired_for(&store, "nightly", due).await.len(), 1);
}

async fn events_log_every_change_in_order<S: Store>(store: S) {
    let mut live = store.subscribe().await;
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    let claimed = store
        .claim("n/cpu-0", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert!(store.progress(t.id, 1, &progress(1)).await.unwrap());
    assert_eq!(
        store.renew(t.id, 1).await.unwrap(),
        Renewal::Held { cancel: false }
    );
    assert!(store.progress(t.id, 1, &progress(2)).await.unwrap());
    let finish = Finish::Success {
        result: serde_json::json!({"metrics": {"test_r2": 0.5}}),
        model: vec![1, 2, 3],
        progress: None,
    };
    assert!(store.finish(t.id, claimed.attempt, finish).await.unwrap());

    let events = store.task_events(t.id, EventId::ZERO).await.unwrap();
    let kinds: Vec<(EventKind, bool)> = events.iter().map(|e| (e.kind, e.terminal)).collect();
    use EventKind::{Progress, State};
    assert_eq!(
        kinds,
        vec![
            (State, false),
            (State, false),
            (Progress, false),
            (Progress, false),
            (State, true)
        ],
        "the renewal is no event"
    );
    let states: Vec<String> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["state"].to_string())
        .collect();
    assert_eq!(
        states,
        [
            "\"PENDING\"",
            "\"STARTED\"",
            "\"PROGRESS\"",
            "\"PROGRESS\"",
            "\"SUCCESS\""
        ]
    );
    let last: serde_json::Value = serde_json::from_str(&events[4].data).unwrap();
    assert_eq!(last["result"]["metrics"]["test_r2"], 0.5, "{last}");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ordered");
    assert!(events.iter().all(|e| e.task == t.id));
    // Resuming after an id gives exactly the later ones.
    assert_eq!(
        store.task_events(t.id, events[1].id).await.unwrap(),
        events[2..]
    );
    assert!(
        store
            .task_events(Uuid::new_v4(), EventId::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    let other = task(ModelType::Mlp, 0);
    store.submit(&other, 100).await.unwrap();
    let all = store.events_since(EventId::ZERO, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[..5], events[..]);
    let latest = store.events_since(events[1].id, 2).await.unwrap();
    assert_eq!(
        latest.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![events[4].id, all[5].id]
    );

    // Subscribers get every event as it is logged.
    let mut got = Vec::new();
    while got.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(30), live.recv())
            .await
            .expect("live events arrive")
            .unwrap();
        got.push(event);
    }
    assert_eq!(got, all);
}

async fn listed<S: Store>(store: &S, filter: TaskFilter) -> Vec<Uuid> {
    store
        .list(&filter)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect()
}

fn settings() -> StoreSettings {
    StoreSettings {
        // Long enough that a test reads a result it just wrote before it expires, on a busy
        // machine; `finished_tasks_expire` waits this out.
        result_expires_s: 5.0,
        expired_memory_s: 60.0,
        lease_s: 1.0,
        dataset_max_total_bytes: 64,
        dataset_expires_s: 3.0,
        ..StoreSettings::default()
    }
}

/// A finish from the claimed record as stored: the change is made when the record is still the
/// claimed one, made from the current record when something changed it since, and refused for
/// an attempt that no longer runs.
async fn finishing_from_the_claimed_record<S: Store>(store: S) {
    let success = |n: u8| Finish::Success {
        result: serde_json::json!({"n": n}),
        model: vec![n],
        progress: None,
    };
    // The token a claim gave is the claimed record as stored.
    let token_of = |claimed: &Claimed| {
        if let Some(token) = &claimed.stored {
            assert_eq!(
                token.record().unwrap(),
                claimed.task,
                "the stored form is the claimed record"
            );
        }
    };
    // Ends attempt `attempt` of the claimed task from its token, as a trainer does.
    let end_from = async |claimed: &Claimed, attempt: u32, finish: Finish| {
        let ending = Ending {
            stored: claimed.stored.as_ref(),
            id: claimed.id,
            attempt,
            finish,
        };
        ending.write(&store).await.unwrap()
    };
    let (a, b, c) = (
        task(ModelType::Linear, 0),
        task(ModelType::Linear, 0),
        task(ModelType::Linear, 0),
    );
    for t in [&a, &b, &c] {
        store.submit(t, 100).await.unwrap();
    }

    let claimed = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(claimed.id, a.id);
    token_of(&claimed);
    assert!(end_from(&claimed, 1, success(1)).await);
    let done = found(store.get(a.id).await.unwrap());
    assert_eq!(
        (done.state, done.result),
        (TaskState::Success, Some(serde_json::json!({"n": 1})))
    );
    assert_eq!(store.model(a.id).await.unwrap(), Some(vec![1]));
    assert!(!end_from(&claimed, 1, success(9)).await, "a task ends once");

    // Progress changed the record after the claim.
    let claimed = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    token_of(&claimed);
    assert!(store.progress(b.id, 1, &progress(5)).await.unwrap());
    assert!(end_from(&claimed, 1, success(2)).await);
    let done = found(store.get(b.id).await.unwrap());
    // A success completes the progress it had.
    assert_eq!(
        (done.state, done.progress.map(|p| (p.current, p.loss))),
        (TaskState::Success, Some((10, Some(1.0))))
    );

    // The attempt was requeued and runs again: the old one is fenced.
    let first = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    token_of(&first);
    assert!(
        store
            .requeue(c.id, 1, error("trainer_lost"), 0.0)
            .await
            .unwrap()
    );
    let second = store.claim("u", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    token_of(&second);
    assert!(!end_from(&first, 1, success(3)).await);
    assert!(end_from(&second, 2, success(4)).await);
    assert_eq!(store.model(c.id).await.unwrap(), Some(vec![4]));
    assert!(store.leases().await.unwrap().is_empty());
}

/// A trainer running on: it claims its next task and ends its last in one step; not while
/// its node drains.
async fn running_on_claims_the_next_and_ends_the_last<S: Store>(store: S) {
    let success = |n: u8| Finish::Success {
        result: serde_json::json!({"n": n}),
        model: vec![n],
        progress: None,
    };
    let tasks: Vec<TaskRecord> = (0..4).map(|_| task(ModelType::Linear, 0)).collect();
    for t in &tasks {
        store.submit(t, 100).await.unwrap();
    }
    let trainer = "node-a/cpu-0";
    let first = store
        .claim(trainer, DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, tasks[0].id);
    // Ends attempt 1 of `id` and claims the trainer's next task.
    let run_on = async |stored: Option<&CasToken>, id: Uuid, finish: Finish| {
        let ending = Ending {
            stored,
            id,
            attempt: 1,
            finish,
        };
        store
            .claim_and_finish(trainer, DeviceSpec::Cpu, ending)
            .await
    };

    let done = run_on(first.stored.as_ref(), first.id, success(1)).await;
    assert!(done.finished.unwrap());
    let second = done.next.unwrap().expect("the next task is claimed");
    assert_eq!(
        (second.id, second.attempt, second.trainer.as_deref()),
        (tasks[1].id, 1, Some(trainer))
    );
    assert_eq!(
        found(store.get(tasks[0].id).await.unwrap()).state,
        TaskState::Success
    );
    assert_eq!(store.model(tasks[0].id).await.unwrap(), Some(vec![1]));
    let leases = store.leases().await.unwrap();
    assert_eq!(
        leases
            .iter()
            .map(|l| (l.id, l.trainer.as_str()))
            .collect::<Vec<_>>(),
        [(tasks[1].id, trainer)],
        "the trainer holds the lease of its next task only"
    );

    // Progress changed the record since the claim.
    assert!(store.progress(second.id, 1, &progress(5)).await.unwrap());
    let done = run_on(second.stored.as_ref(), second.id, success(2)).await;
    assert!(done.finished.unwrap());
    let third = done.next.unwrap().unwrap();
    assert_eq!(third.id, tasks[2].id);
    let ended = found(store.get(tasks[1].id).await.unwrap());
    assert_eq!(
        (ended.state, ended.progress.map(|p| p.current)),
        (TaskState::Success, Some(10))
    );

    // Its node drains (and no record at hand): it ends its task and takes no other.
    store.set_draining("node-a", true).await.unwrap();
    let done = run_on(None, third.id, success(3)).await;
    assert!(done.finished.unwrap());
    assert!(
        done.next.unwrap().is_none(),
        "a draining node takes no work"
    );
    assert_eq!(
        found(store.get(tasks[2].id).await.unwrap()).state,
        TaskState::Success
    );
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    assert!(store.leases().await.unwrap().is_empty());

    // A stale attempt ends nothing, and its trainer still claims.
    store.set_draining("node-a", false).await.unwrap();
    let done = run_on(None, third.id, success(4)).await;
    assert!(!done.finished.unwrap(), "a task ends once");
    assert_eq!(done.next.unwrap().unwrap().id, tasks[3].id);
    assert_eq!(store.model(tasks[2].id).await.unwrap(), Some(vec![3]));
}

/// Results kept 1.5 s: Redis keeps the record 2 s (it expires keys on whole seconds) and the
/// embedded store until the next sweep, so a record outlives its expiry for a while.
fn short_results() -> StoreSettings {
    StoreSettings {
        result_expires_s: 1.5,
        ..settings()
    }
}

/// Cancelling a task whose result expired answers `Expired` on every store, also while its
/// record is still kept past its expiry (the shared decision of `TaskRecord::cancelled`).
async fn cancelling_an_expired_task_answers_expired<S: Store>(store: S) {
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    let success = Finish::Success {
        result: serde_json::json!({}),
        model: vec![1],
        progress: None,
    };
    assert!(store.finish(t.id, 1, success).await.unwrap());
    assert_eq!(
        store.cancel(t.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskState::Success)
    );
    let expires_at = found(store.get(t.id).await.unwrap()).expires_at.unwrap();
    let wait = expires_at + 0.05 - now_s();
    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
    assert_eq!(store.cancel(t.id).await.unwrap(), CancelOutcome::Expired);
    assert_eq!(store.get(t.id).await.unwrap(), Lookup::Expired);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        conformance!(settings(); $($name),*);
    };
    ($settings:expr; $($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let path = temp_dir("store").join("store.redb");
                    super::$name(EmbeddedStore::open(&path, $settings).unwrap()).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = RedisServer::start();
                    let store = RedisStore::connect(&server.url, stringify!($name), $settings).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    submit_get_and_unknown_ids,
    claims_follow_priority_then_age,
    claims_for_some_work_take_only_a_task_doing_it,
    claims_see_changes_since_the_last_claim,
    concurrent_claims_take_the_first_tasks_once_each,
    status_reads_state_progress_and_attempt,
    attempts_are_fenced,
    failures_and_cancels,
    a_full_queue_refuses_and_stores_nothing,
    finished_tasks_expire,
    lists_filter_newest_first,
    data_sets_round_trip,
    data_sets_have_a_quota_an_expiry_and_a_delete,
    tasks_wait_for_the_device_kind_they_ask_for,
    leases_are_renewed_and_run_out,
    nodes_announce_themselves,
    retries_wait_out_their_delay,
    idempotency_keys_submit_once_while_they_live,
    schedules_are_kept_and_advance_only_forward,
    a_client_key_cannot_take_a_schedule_run_over,
    a_firing_keyed_the_old_way_fires_once_after_an_upgrade,
    events_log_every_change_in_order,
    finishing_from_the_claimed_record,
    running_on_claims_the_next_and_ends_the_last,
    checkpoints_are_fenced_and_resumed,
    the_registry_numbers_versions_and_guards_aliases,
    rules_promote_only_a_better_model,
    sweeps_change_by_version_and_decide_each_rung_once,
    concurrent_rung_reports_are_each_decided_once,
    batches_store_every_task_at_once_or_none,
    batch_items_keep_their_idempotency_keys,
    many_trainers_running_on_claim_and_end_each_task_once,
    subscribers_come_and_go,
    claims_change_only_what_a_claim_changes,
);

mod short_results {
    use super::*;

    conformance!(
        short_results();
        cancelling_an_expired_task_answers_expired,
        checkpoints_expire_with_their_task,
        results_are_cached_while_they_live,
    );
}

/// The leader lease on Redis: one holder at a time, renewed by its holder, free once it lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_on_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "lead", settings())
        .await
        .unwrap();
    assert_eq!(store.leader().await.unwrap(), None);
    // Leases of 2 s: each step below comes well within one on a busy machine.
    assert!(store.lead("a", 2.0).await.unwrap());
    assert!(!store.lead("b", 2.0).await.unwrap());
    assert!(store.lead("a", 2.0).await.unwrap(), "the holder renews");
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("a"));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        store.lead("b", 2.0).await.unwrap(),
        "a lapsed lease is free"
    );
    assert!(!store.lead("a", 2.0).await.unwrap());
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("b"));
}

/// A task's events kept as a stream (as versions before the per-task list kept them) are still
/// read, and the task's next event replaces the stream with a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_kept_as_a_stream_are_read_and_then_replaced() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "old", settings())
        .await
        .unwrap();
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    let logged = store.task_events(t.id, EventId::ZERO).await.unwrap();
    assert_eq!(logged.len(), 1);
    let pending = &logged[0];
    let mut con = ::redis::Client::open(server.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = format!("old:events:{}", t.id);
    let encoded = format!(
        "{} {} {} {}",
        pending.kind.as_str(),
        u8::from(pending.terminal),
        pending.task,
        pending.data
    );
    ::redis::pipe()
        .del(&key)
        .cmd("XADD")
        .arg(&key)
        .arg(pending.id.to_string())
        .arg("e")
        .arg(encoded)
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(
        store.task_events(t.id, EventId::ZERO).await.unwrap(),
        logged
    );

    assert!(matches!(
        store.cancel(t.id).await.unwrap(),
        CancelOutcome::Revoked
    ));
    let kind: String = ::redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
    assert_eq!(kind, "list");
    let after = store.task_events(t.id, EventId::ZERO).await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        after[0].terminal && after[0].data.contains("REVOKED"),
        "{after:?}"
    );
}
