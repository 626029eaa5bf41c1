//! Claims and ends of many trainers at once in the conformance suite. On Redis they go in
//! bundles (`bundle.lua`, several in one call), each still its own compare-and-set: every
//! task is claimed once and ended once, an end from a record that changed since is refused
//! alone and made again from the current record, and each change logs one event.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;

const TASKS: usize = 120;
const TRAINERS: usize = 8;

pub async fn many_trainers_running_on_claim_and_end_each_task_once<S: Store>(store: S) {
    let store = Arc::new(store);
    let tasks: Vec<TaskRecord> = (0..TASKS).map(|_| task(ModelType::Linear, 0)).collect();
    for t in &tasks {
        store.submit(t, 1_000).await.unwrap();
    }
    let trainers = (0..TRAINERS).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let trainer = format!("node-a/cpu-{n}");
            let mut ended = Vec::new();
            let mut next = store.claim(&trainer, DeviceSpec::Cpu).await.unwrap();
            while let Some(claimed) = next {
                // Every third task writes progress first: the record the trainer holds is
                // stale, so its end's compare-and-set fails and is made from the current one.
                let stale = ended.len() % 3 == 0;
                if stale {
                    assert!(store.progress(claimed.id, 1, &progress(1)).await.unwrap());
                }
                let ending = Ending {
                    stored: claimed.stored.as_ref(),
                    id: claimed.id,
                    attempt: claimed.attempt,
                    finish: Finish::Success {
                        result: serde_json::json!({"trainer": n}),
                        model: vec![n as u8],
                        progress: None,
                    },
                };
                let done = store
                    .claim_and_finish(&trainer, DeviceSpec::Cpu, ending)
                    .await;
                assert!(
                    done.finished.unwrap(),
                    "{} ends (stale: {stale})",
                    claimed.id
                );
                ended.push(claimed.id);
                next = done.next.unwrap();
            }
            ended
        })
    });
    let mut by_task: HashMap<Uuid, usize> = HashMap::new();
    for trainer in trainers {
        for id in trainer.await.unwrap() {
            *by_task.entry(id).or_default() += 1;
        }
    }
    assert_eq!(by_task.len(), TASKS, "every task ran");
    assert!(by_task.values().all(|&n| n == 1), "each once: {by_task:?}");
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    assert!(store.leases().await.unwrap().is_empty());
    for t in &tasks {
        let record = found(store.get(t.id).await.unwrap());
        assert_eq!((record.state, record.attempt), (TaskState::Success, 1));
        // Submitted, started, (progress,) ended: one state event per change.
        let events = store.task_events(t.id, EventId::ZERO).await.unwrap();
        let states = events.iter().filter(|e| e.kind == EventKind::State).count();
        assert_eq!(states, 3, "{events:?}");
        assert!(events.last().unwrap().terminal);
        // A late end of the same attempt changes nothing.
        let again = Finish::Failure(error("late"));
        assert!(
            !store.finish(t.id, 1, again).await.unwrap(),
            "a task ends once"
        );
    }
}
