//! The [`Sweeps`] role in the conformance suite: a sweep's record changes only from the
//! version it was read at, each (trial, rung) is decided once by ASHA's rule over the results
//! before it, every change logs its event in order, and a deleted sweep leaves nothing.

use super::*;
use trainyard::store::{
    Asha, Mode, RungRule, Strategy, Sweep, SweepCreated, SweepState, Trial, TrialState,
};
use trainyard::training::ValMetric;

fn sweep(trials: u32) -> Sweep {
    Sweep {
        id: uuid::Uuid::now_v7(),
        name: "search".into(),
        model_type: ModelType::Mlp,
        strategy: Strategy::Random,
        metric: ValMetric::ValLoss,
        mode: Mode::Min,
        asha: Some(Asha {
            min_resource: 1,
            max_resource: 9,
            reduction_factor: 3,
        }),
        parallel: 2,
        seed: 1,
        request: serde_json::json!({"epochs": 9}),
        space: serde_json::json!({"learning_rate": {"uniform": [0.001, 0.1]}}),
        template: task(ModelType::Mlp, 0),
        trials: (0..trials)
            .map(|trial| Trial {
                trial,
                params: Default::default(),
                state: TrialState::Waiting,
                task_id: None,
                resource: None,
                metric: None,
                test_r2: None,
            })
            .collect(),
        state: SweepState::Running,
        created_at: 1.0,
        keep_s: 60.0,
        finished_at: None,
        expires_at: None,
        cancel_requested: false,
        register: None,
        registered: None,
        version: 1,
    }
}

const RULE: RungRule = RungRule {
    reduction_factor: 3,
    mode: Mode::Min,
};

pub async fn sweeps_change_by_version_and_decide_each_rung_once<S: Store>(store: S) {
    let s = sweep(4);
    assert_eq!(
        store
            .create_sweep(&s, 2, "{\"type\":\"created\"}")
            .await
            .unwrap(),
        SweepCreated::Created
    );
    assert_eq!(store.get_sweep(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_sweep(uuid::Uuid::now_v7()).await.unwrap(), None);

    // A change from the version read applies once; a second from the same version does not.
    let mut next = s.clone();
    next.trials[0].state = TrialState::Running;
    next.version = 2;
    assert!(
        store
            .update_sweep(&next, &["{\"type\":\"a\"}".into()])
            .await
            .unwrap()
    );
    let mut stale = s.clone();
    stale.cancel_requested = true;
    stale.version = 2;
    assert!(
        !store
            .update_sweep(&stale, &["{\"type\":\"b\"}".into()])
            .await
            .unwrap()
    );
    assert_eq!(store.get_sweep(s.id).await.unwrap(), Some(next.clone()));

    // Only running sweeps are read for the leader's steps.
    let running: Vec<_> = store
        .running_sweeps()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(running, vec![s.id]);
    let mut ended = next.clone();
    ended.state = SweepState::Success;
    ended.version = 3;
    assert!(store.update_sweep(&ended, &[]).await.unwrap());
    assert!(store.running_sweeps().await.unwrap().is_empty());
    assert_eq!(store.sweeps().await.unwrap().len(), 1);

    // Rung 1: the first goes on; a worse one than the cutoff of those before stops.
    assert!(store.report_rung(s.id, 0, 1, 2.0, RULE).await.unwrap());
    assert!(store.report_rung(s.id, 1, 1, 1.0, RULE).await.unwrap());
    assert!(!store.report_rung(s.id, 2, 1, 3.0, RULE).await.unwrap());
    // Reported again (a retried attempt, another value): the first decision stands.
    assert!(!store.report_rung(s.id, 2, 1, 0.1, RULE).await.unwrap());
    assert!(store.report_rung(s.id, 1, 3, 0.5, RULE).await.unwrap());
    let rungs = store.rungs(s.id).await.unwrap();
    let seen: Vec<(u64, u32, f64, bool)> = rungs
        .iter()
        .map(|r| (r.step, r.trial, r.value, r.go_on))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, 0, 2.0, true),
            (1, 1, 1.0, true),
            (1, 2, 3.0, false),
            (3, 1, 0.5, true)
        ]
    );

    // Every change in order, numbered from 1; read after a number, and in pages.
    let events = store.sweep_events(s.id, 0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(events[0].data, "{\"type\":\"created\"}");
    assert_eq!(events[1].data, "{\"type\":\"a\"}");
    assert!(
        events[4].data.contains("\"decision\":\"stop\""),
        "{events:?}"
    );
    let page = store.sweep_events(s.id, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);

    // The most sweeps kept; all of them listed, oldest first; a delete leaves nothing.
    let other = sweep(1);
    store.create_sweep(&other, 2, "{}").await.unwrap();
    assert_eq!(
        store.create_sweep(&sweep(1), 2, "{}").await.unwrap(),
        SweepCreated::Full
    );
    let ids: Vec<_> = store.sweeps().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![s.id, other.id]);
    assert!(store.delete_sweep(s.id).await.unwrap());
    assert!(!store.delete_sweep(s.id).await.unwrap());
    assert_eq!(store.get_sweep(s.id).await.unwrap(), None);
    assert!(store.rungs(s.id).await.unwrap().is_empty());
    assert!(store.sweep_events(s.id, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.sweeps().await.unwrap().len(), 1);
}

/// Trainers of many trials report the same rung at once: each is decided once, over every
/// result stored before it, so the number that go on is what ASHA allows.
pub async fn concurrent_rung_reports_are_each_decided_once<S: Store + Clone>(store: S) {
    let s = sweep(12);
    store.create_sweep(&s, 10, "{}").await.unwrap();
    let reports = (0..12u32).map(|trial| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .report_rung(s.id, trial, 1, trial as f64, RULE)
                .await
                .unwrap()
        })
    });
    for handle in reports {
        handle.await.unwrap();
    }
    let rungs = store.rungs(s.id).await.unwrap();
    assert_eq!(rungs.len(), 12, "{rungs:?}");
    // Replaying the stored order reproduces every stored decision.
    let events = store.sweep_events(s.id, 1, 100).await.unwrap();
    let mut before: Vec<f64> = Vec::new();
    for event in events {
        let e: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        let value = e["value"].as_f64().unwrap();
        let go_on = e["decision"] == "continue";
        assert_eq!(
            go_on,
            trainyard::store::asha_go_on(&before, value, RULE),
            "{e}"
        );
        before.push(value);
    }
}
