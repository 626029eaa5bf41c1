//! The [`Checkpoints`] role in the conformance suite: one checkpoint per task, written only
//! by the attempt that runs it, read back by the next attempt (which the record notes as
//! `resumed_from`), dropped with the task's end and never outliving it.

use super::*;
use trainyard::training::Checkpoint;

fn state(step: u64) -> Checkpoint {
    Checkpoint {
        step,
        // Binary, with every byte value, as a training's state is.
        bytes: (0..=255u8).cycle().take(1000 + step as usize).collect(),
    }
}

pub async fn checkpoints_are_fenced_and_resumed<S: Store>(store: S) {
    let t = task(ModelType::Mlp, 3);
    store.submit(&t, 100).await.unwrap();
    assert!(
        !store.put_checkpoint(t.id, 0, &state(1)).await.unwrap(),
        "a pending task takes no checkpoint"
    );
    store
        .claim("trainer-a", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.checkpoint(t.id).await.unwrap(), None);
    assert_eq!(store.resume_from(t.id, 1).await.unwrap(), None);
    assert_eq!(found(store.get(t.id).await.unwrap()).resumed_from, None);

    assert!(store.put_checkpoint(t.id, 1, &state(3)).await.unwrap());
    assert!(store.put_checkpoint(t.id, 1, &state(5)).await.unwrap());
    assert_eq!(
        store.checkpoint(t.id).await.unwrap(),
        Some(state(5)),
        "one, the latest"
    );
    assert!(
        !store.put_checkpoint(t.id, 2, &state(9)).await.unwrap(),
        "an attempt that does not run the task may not write"
    );

    // Its node died: the task waits for another attempt, its checkpoint with it.
    assert!(
        store
            .requeue(t.id, 1, error("node_lost"), 0.0)
            .await
            .unwrap()
    );
    assert!(!store.put_checkpoint(t.id, 1, &state(7)).await.unwrap());
    assert_eq!(store.checkpoint(t.id).await.unwrap(), Some(state(5)));
    store
        .claim("trainer-b", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.resume_from(t.id, 1).await.unwrap(),
        None,
        "a stale attempt resumes from nothing"
    );
    assert_eq!(store.resume_from(t.id, 2).await.unwrap(), Some(state(5)));
    let resumed = found(store.get(t.id).await.unwrap());
    assert_eq!((resumed.attempt, resumed.resumed_from), (2, Some(5)));
    assert!(
        !store.put_checkpoint(t.id, 1, &state(8)).await.unwrap(),
        "the stale attempt cannot overwrite its successor's checkpoint"
    );
    assert!(store.put_checkpoint(t.id, 2, &state(6)).await.unwrap());

    // Each attempt keeps the step it started from.
    assert!(
        store
            .requeue(t.id, 2, error("node_lost"), 0.0)
            .await
            .unwrap()
    );
    store
        .claim("trainer-c", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    let third = found(store.get(t.id).await.unwrap());
    let started: Vec<_> = third.attempts.iter().map(|a| a.resumed_from).collect();
    assert_eq!((started, third.resumed_from), (vec![None, Some(5)], None));
    assert_eq!(store.resume_from(t.id, 3).await.unwrap(), Some(state(6)));

    let success = Finish::Success {
        result: serde_json::json!({}),
        model: vec![1],
        progress: None,
    };
    assert!(store.finish(t.id, 3, success).await.unwrap());
    store.drop_checkpoint(t.id).await.unwrap();
    assert_eq!(store.checkpoint(t.id).await.unwrap(), None);
    assert_eq!(
        found(store.get(t.id).await.unwrap()).resumed_from,
        Some(6),
        "the record keeps where its last attempt started"
    );
}

/// A checkpoint whose task ended without its trainer (revoked while it waited for another
/// attempt) is gone by the time the task expires.
pub async fn checkpoints_expire_with_their_task<S: Store>(store: S) {
    let t = task(ModelType::Mlp, 3);
    store.submit(&t, 100).await.unwrap();
    store
        .claim("trainer-a", DeviceSpec::Cpu)
        .await
        .unwrap()
        .unwrap();
    assert!(store.put_checkpoint(t.id, 1, &state(4)).await.unwrap());
    assert!(
        store
            .requeue(t.id, 1, error("node_lost"), 0.0)
            .await
            .unwrap()
    );
    assert_eq!(store.cancel(t.id).await.unwrap(), CancelOutcome::Revoked);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.get(t.id).await.unwrap() != Lookup::Expired {
        store.sweep().await.unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "the task did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.checkpoint(t.id).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint outlived its task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
