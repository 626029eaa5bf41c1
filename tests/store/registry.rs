//! The conformance suite's model registry and result cache: run on both stores by
//! `conformance!` in `tests/store.rs`.

use std::time::Duration;

use trainyard::registry::register_by_rule;
use trainyard::store::prelude::*;
use trainyard::store::{
    AliasExpect, AliasSet, Lookup, ModelVersion, TaskFilter, TaskRecord, TaskState, VersionDeleted,
    now_s, sweep_expired,
};
use trainyard::store::{Finish, RegisterRule};
use trainyard::training::{DeviceSpec, ModelType, TrainSpec};
use uuid::Uuid;

fn version(seed: u64) -> ModelVersion {
    ModelVersion {
        version: 0,
        task_id: Uuid::new_v4(),
        model_type: ModelType::Linear,
        spec: TrainSpec {
            seed,
            ..TrainSpec::new(ModelType::Linear)
        },
        dataset_id: None,
        dataset_sha256: Some("ab".repeat(32)),
        metrics: serde_json::json!({"test_r2": 0.5 + seed as f64 / 100.0}),
        best_model: Some("linear".into()),
        registered_at: 0.0,
        bytes: 0,
    }
}

/// Versions are numbered 1, 2, 3... per name and never reused; each keeps its artifact and
/// what made it; aliases move by compare-and-set; a version an alias points at is not deleted.
pub async fn the_registry_numbers_versions_and_guards_aliases<S: Store>(store: S) {
    assert_eq!(store.registered_model("prices").await.unwrap(), None);
    let one = store
        .register_model("prices", &version(1), b"model one")
        .await
        .unwrap();
    let two = store
        .register_model("prices", &version(2), b"model two")
        .await
        .unwrap();
    let other = store
        .register_model("other", &version(3), b"x")
        .await
        .unwrap();
    assert_eq!((one.version, two.version, other.version), (1, 2, 1));
    assert_eq!(one.bytes, 9);
    assert!((one.registered_at - now_s()).abs() < 5.0, "{one:?}");
    let model = store.registered_model("prices").await.unwrap().unwrap();
    assert_eq!(model.versions, vec![one.clone(), two.clone()]);
    assert_eq!(model.latest(), Some(&two));
    assert_eq!(
        store
            .version_artifact("prices", 1)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"model one"[..])
    );
    assert_eq!(store.version_artifact("prices", 9).await.unwrap(), None);
    let names: Vec<String> = store
        .registered_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["other", "prices"]);

    let set = |alias: &'static str, v: u32, expect| {
        let store = &store;
        async move { store.set_alias("prices", alias, v, expect).await.unwrap() }
    };
    assert_eq!(
        set("production", 1, AliasExpect::Any).await,
        AliasSet::Set { previous: None }
    );
    assert_eq!(
        set("production", 7, AliasExpect::Any).await,
        AliasSet::NoVersion
    );
    assert_eq!(
        store
            .set_alias("nothing", "production", 1, AliasExpect::Any)
            .await
            .unwrap(),
        AliasSet::NoModel
    );
    // A promotion that read the alias unset, or at 2, finds it moved and leaves it.
    assert_eq!(
        set("production", 2, AliasExpect::Current(None)).await,
        AliasSet::Moved { current: Some(1) }
    );
    assert_eq!(
        set("production", 2, AliasExpect::Current(Some(2))).await,
        AliasSet::Moved { current: Some(1) }
    );
    assert_eq!(
        set("staging", 2, AliasExpect::Current(None)).await,
        AliasSet::Set { previous: None }
    );
    assert_eq!(
        set("staging", 1, AliasExpect::Current(Some(2))).await,
        AliasSet::Set { previous: Some(2) }
    );
    let model = store.registered_model("prices").await.unwrap().unwrap();
    assert_eq!(
        model.aliases.into_iter().collect::<Vec<_>>(),
        [("production".to_string(), 1), ("staging".to_string(), 1)]
    );

    assert_eq!(
        store.delete_model_version("prices", 1).await.unwrap(),
        VersionDeleted::Aliased(vec!["production".into(), "staging".into()])
    );
    assert_eq!(
        store.delete_model_version("prices", 2).await.unwrap(),
        VersionDeleted::Deleted
    );
    assert_eq!(
        store.delete_model_version("prices", 2).await.unwrap(),
        VersionDeleted::NoVersion
    );
    assert_eq!(
        store.delete_model_version("nothing", 1).await.unwrap(),
        VersionDeleted::NoModel
    );
    assert_eq!(store.version_artifact("prices", 2).await.unwrap(), None);
    // Numbers are never given twice, even after a delete.
    let three = store
        .register_model("prices", &version(4), b"three")
        .await
        .unwrap();
    assert_eq!(three.version, 3);
    let versions: Vec<u32> = store
        .registered_model("prices")
        .await
        .unwrap()
        .unwrap()
        .versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 3]);
}

/// A register rule moves its alias only to a version that beats the one it points at (lower
/// `test_rmse` here), the first one taking it; a tie keeps it.
pub async fn rules_promote_only_a_better_model<S: Store>(store: S) {
    let rule = RegisterRule {
        name: "nightly".into(),
        promote_alias: Some("production".into()),
        metric: Some("test_rmse".into()),
        mode: None,
    };
    let mut outcomes = Vec::new();
    for rmse in [2.0, 3.0, 1.0, 1.0] {
        let t = TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 0);
        store.submit(&t, 100).await.unwrap();
        store.claim("t", DeviceSpec::Cpu).await.unwrap().unwrap();
        let finish = Finish::Success {
            result: serde_json::json!({"metrics": {"test_rmse": rmse}}),
            model: vec![1, 2, 3],
            progress: None,
        };
        assert!(store.finish(t.id, 1, finish).await.unwrap());
        let Lookup::Found(task) = store.get(t.id).await.unwrap() else {
            panic!("task {} is stored", t.id);
        };
        let done = register_by_rule(&store, &rule, &task).await.unwrap();
        outcomes.push((done.version.version, done.promoted));
    }
    assert_eq!(outcomes, [(1, true), (2, false), (3, true), (4, false)]);
    let model = store.registered_model("nightly").await.unwrap().unwrap();
    assert_eq!(model.aliases.get("production"), Some(&3));
    assert_eq!(
        model.versions[2].metrics,
        serde_json::json!({"test_rmse": 1.0})
    );
}

/// A success indexed by its cache key is found while its result lives, and not after; a copy
/// stored as SUCCESS at once is a task like any other: read, listed, its model kept, its end
/// logged, and it expires.
pub async fn results_are_cached_while_they_live<S: Store>(store: S) {
    let source = Uuid::new_v4();
    store.remember_result("k1", source).await.unwrap();
    assert_eq!(store.cached_result("k1").await.unwrap(), Some(source));
    assert_eq!(store.cached_result("k2").await.unwrap(), None);

    let mut earlier = TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 0);
    earlier.id = source;
    earlier.result = Some(serde_json::json!({"metrics": {"test_r2": 0.9}}));
    let request = TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 3, 0);
    let copy = earlier.cached_copy(&request);
    let stored = store.submit_finished(&copy, b"the model").await.unwrap();
    assert!(stored.expires_at.is_some());
    let got = match store.get(request.id).await.unwrap() {
        Lookup::Found(task) => *task,
        other => panic!("the copy is stored, got {other:?}"),
    };
    assert_eq!(got, stored);
    assert_eq!(got.state, TaskState::Success);
    assert_eq!(got.cached_from, Some(source));
    assert_eq!(got.result, earlier.result);
    assert_eq!(
        store.model(request.id).await.unwrap().as_deref(),
        Some(&b"the model"[..])
    );
    let listed = store
        .list(&TaskFilter {
            limit: 10,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [request.id]
    );
    let events = store
        .task_events(request.id, trainyard::store::EventId::ZERO)
        .await
        .unwrap();
    assert!(events.last().is_some_and(|e| e.terminal), "{events:?}");
    assert_eq!(store.queue_depth().await.unwrap(), 0);

    // Both expire with the result (1.5 s here; Redis counts whole seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    sweep_expired(&store).await.unwrap();
    assert_eq!(store.cached_result("k1").await.unwrap(), None);
    assert_eq!(store.get(request.id).await.unwrap(), Lookup::Expired);
}
