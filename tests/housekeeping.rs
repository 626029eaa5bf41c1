//! Housekeeping that cannot stall: the sweep of expired tasks gets past tasks that wait for
//! long (10,000 of them queued before an expired one) and past a record that does not decode.
//! Both stores; a real `redis-server`.

mod common;

use std::time::{Duration, Instant};

use common::{RedisServer, temp_dir};
use trainyard::store::prelude::*;
use trainyard::store::{EmbeddedStore, Finish, Lookup, RedisStore, StoreSettings, TaskRecord};
use trainyard::training::{DeviceSpec, ModelType, TrainSpec};

/// Tasks queued for long (waiting for a GPU no node has, say) before the expired one.
const WAITING: usize = 10_000;

fn settings() -> StoreSettings {
    StoreSettings {
        result_expires_s: 0.5,
        expired_memory_s: 60.0,
        lease_s: 5.0,
        ..StoreSettings::default()
    }
}

fn task() -> TaskRecord {
    TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 0)
}

/// Submits `WAITING` tasks, then one that finishes; sweeps (a node sweeps once a second) until
/// that one is swept, counting the sweeps.
async fn the_sweep_gets_past_tasks_that_wait_for_long<S: Store>(store: S) {
    let started = Instant::now();
    for _ in 0..WAITING {
        store.submit(&task(), u64::MAX).await.unwrap();
    }
    println!("{WAITING} tasks submitted in {:?}", started.elapsed());
    // The newest in the listing index, claimed first by its priority.
    let mut urgent = task();
    urgent.priority = 9;
    store.submit(&urgent, u64::MAX).await.unwrap();
    let claimed = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    assert_eq!(claimed.id, urgent.id);
    let finish = Finish::Success {
        result: serde_json::json!({}),
        model: vec![1],
        progress: None,
    };
    assert!(store.finish(urgent.id, 1, finish).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get(urgent.id).await.unwrap() != Lookup::Expired {
        assert!(Instant::now() < deadline, "the result did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis drops the record itself (in whole seconds, so up to a second after it expired);
    // the sweep then drops its id from the listing index, behind the 10,000 waiting ones.
    let mut swept = 0;
    let mut sweeps = 0;
    while swept == 0 {
        assert!(
            Instant::now() < deadline,
            "the expired task was not swept in {sweeps} sweeps"
        );
        sweeps += 1;
        swept += store.sweep().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(swept, 1);
    println!("swept after {sweeps} sweeps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sweeps_get_past_tasks_that_wait_for_long() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "sweep", settings())
        .await
        .unwrap();
    the_sweep_gets_past_tasks_that_wait_for_long(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sweeps_get_past_tasks_that_wait_for_long() {
    let path = temp_dir("sweep").join("store.redb");
    let store = EmbeddedStore::open(&path, settings()).unwrap();
    the_sweep_gets_past_tasks_that_wait_for_long(store).await;
}

/// A task record that does not decode (a disk error, a bug) is passed over: the tasks after
/// it are still swept, and the sweep does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sweeps_pass_over_a_corrupt_record() {
    let path = temp_dir("corrupt").join("store.redb");
    let finished = task();
    {
        let store = EmbeddedStore::open(&path, settings()).unwrap();
        store.submit(&finished, 100).await.unwrap();
        store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
        let finish = Finish::Success {
            result: serde_json::json!({}),
            model: vec![1],
            progress: None,
        };
        assert!(store.finish(finished.id, 1, finish).await.unwrap());
    }
    {
        // A record that sorts before the finished task's, so the sweep meets it first.
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut tasks = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("tasks"))
                .unwrap();
            tasks
                .insert("00000000-0000-0000-0000-000000000000", &b"{not json"[..])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let store = EmbeddedStore::open(&path, settings()).unwrap();
    tokio::time::sleep(Duration::from_secs_f64(settings().result_expires_s + 0.2)).await;
    assert_eq!(
        store.sweep().await.unwrap(),
        1,
        "the finished task is swept"
    );
    assert_eq!(store.get(finished.id).await.unwrap(), Lookup::Expired);
}

/// Claims the next queued task and ends it with SUCCESS (no model); its id.
async fn claim_and_succeed<S: Store>(store: &S) -> uuid::Uuid {
    let claimed = store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
    let finish = Finish::Success {
        result: serde_json::json!({}),
        model: Vec::new(),
        progress: None,
    };
    assert!(store.finish(claimed.id, 1, finish).await.unwrap());
    claimed.id
}

/// Tasks that expire faster than one sweep batch (1,000) a second: one round of housekeeping
/// (`sweep_expired`) removes more than a batch of them.
async fn a_round_of_housekeeping_removes_more_than_a_batch<S: Store>(store: S) {
    const FINISHED: usize = 3_000;
    let mut ids = Vec::new();
    for _ in 0..FINISHED {
        store.submit(&task(), u64::MAX).await.unwrap();
        ids.push(claim_and_succeed(&store).await);
    }
    // Redis drops records in whole seconds: wait until the last one is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.get(*ids.last().unwrap()).await.unwrap() != Lookup::Expired {
        assert!(Instant::now() < deadline, "the results did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut removed = trainyard::store::sweep_expired(&store).await.unwrap();
    assert!(
        removed > 1_000,
        "one round of housekeeping removed only {removed}"
    );
    while removed < FINISHED as u64 {
        assert!(Instant::now() < deadline, "only {removed} were swept");
        removed += trainyard::store::sweep_expired(&store).await.unwrap();
    }
    assert_eq!(removed, FINISHED as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_housekeeping_keeps_up_with_thousands_of_expiries() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "many", settings())
        .await
        .unwrap();
    a_round_of_housekeeping_removes_more_than_a_batch(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_housekeeping_keeps_up_with_thousands_of_expiries() {
    let path = temp_dir("many").join("store.redb");
    let store = EmbeddedStore::open(&path, settings()).unwrap();
    a_round_of_housekeeping_removes_more_than_a_batch(store).await;
}

/// Tasks arriving faster than the sweep walks the listing index: a sweep that reached tasks
/// too young to have expired starts from the oldest again, so an old expired task is swept
/// although the index keeps growing ahead of the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sweeps_come_back_to_the_oldest_while_tasks_keep_arriving() {
    let server = RedisServer::start();
    let settings = StoreSettings {
        result_expires_s: 3.0,
        ..settings()
    };
    let store = RedisStore::connect(&server.url, "arriving", settings)
        .await
        .unwrap();
    let old = task();
    store.submit(&old, u64::MAX).await.unwrap();
    assert_eq!(claim_and_succeed(&store).await, old.id);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut swept = 0;
    while swept == 0 {
        assert!(Instant::now() < deadline, "the old task was never swept");
        // A batch's worth of new tasks (waiting: no trainer claims them) before each sweep.
        for _ in 0..1_000 {
            store.submit(&task(), u64::MAX).await.unwrap();
        }
        swept += store.sweep().await.unwrap();
    }
    assert_eq!(swept, 1);
    assert_eq!(store.get(old.id).await.unwrap(), Lookup::Expired);
}
