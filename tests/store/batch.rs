//! Batch submission ([`Tasks::submit_batch`]) in the conformance suite: every item stored
//! and queued with its event in one step, in order; idempotency keys per item; all or
//! nothing when a key holds another request or the queue would overflow.

use super::*;
use trainyard::store::BatchItem;

fn key(name: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: name.into(),
        fingerprint: fingerprint.into(),
        ttl_s: 60.0,
    }
}

fn item(t: &TaskRecord, key: Option<IdempotencyKey>) -> BatchItem {
    BatchItem {
        task: t.clone(),
        key,
    }
}

pub async fn batches_store_every_task_at_once_or_none<S: Store>(store: S) {
    let tasks: Vec<TaskRecord> = (0..5u8).map(|p| task(ModelType::Linear, p % 2)).collect();
    let items: Vec<BatchItem> = tasks.iter().map(|t| item(t, None)).collect();
    let answers = store.submit_batch(&items, 100).await.unwrap();
    assert_eq!(answers, vec![Submitted::New; 5]);
    assert_eq!(store.queue_depth().await.unwrap(), 5);
    for t in &tasks {
        assert_eq!(&found(store.get(t.id).await.unwrap()), t);
        let events = store.task_events(t.id, EventId::ZERO).await.unwrap();
        assert_eq!(events.len(), 1, "one submission event per task");
        assert_eq!(events[0].kind, EventKind::State);
        assert!(events[0].data.contains("PENDING"), "{}", events[0].data);
    }
    // Claims take them by priority, then in the batch's order.
    let mut claimed = Vec::new();
    while let Some(c) = store.claim("t1", DeviceSpec::Cpu).await.unwrap() {
        claimed.push(c.id);
    }
    let expected: Vec<Uuid> = [1, 3, 0, 2, 4].iter().map(|&i| tasks[i].id).collect();
    assert_eq!(claimed, expected);
    // An empty batch stores nothing and answers nothing.
    assert_eq!(store.submit_batch(&[], 100).await.unwrap(), vec![]);

    // The queue would overflow: nothing is stored.
    let more: Vec<TaskRecord> = (0..3).map(|_| task(ModelType::Mlp, 0)).collect();
    store.submit(&task(ModelType::Mlp, 0), 100).await.unwrap();
    let items: Vec<BatchItem> = more
        .iter()
        .enumerate()
        .map(|(i, t)| item(t, Some(key(&format!("q{i}"), "f"))))
        .collect();
    assert!(matches!(
        store.submit_batch(&items, 3).await,
        Err(StoreError::QueueFull { limit: 3 })
    ));
    for t in &more {
        assert_eq!(store.get(t.id).await.unwrap(), Lookup::Missing);
    }
    assert_eq!(store.keyed("q0").await.unwrap(), None);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    // Exactly to the limit is fine.
    let answers = store.submit_batch(&items, 4).await.unwrap();
    assert_eq!(answers, vec![Submitted::New; 3]);
    assert_eq!(store.queue_depth().await.unwrap(), 4);
}

pub async fn batch_items_keep_their_idempotency_keys<S: Store>(store: S) {
    let earlier = task(ModelType::Gbdt, 0);
    assert_eq!(
        store
            .submit_keyed(&earlier, 100, &key("k1", "f1"))
            .await
            .unwrap(),
        Submitted::New
    );
    let (a, b, c) = (
        task(ModelType::Mlp, 0),
        task(ModelType::Mlp, 0),
        task(ModelType::Mlp, 0),
    );
    // k1 again with its request: answered with the earlier task, not stored again.
    let items = [
        item(&a, Some(key("k2", "f2"))),
        item(&b, Some(key("k1", "f1"))),
        item(&c, None),
    ];
    let answers = store.submit_batch(&items, 100).await.unwrap();
    assert_eq!(
        answers,
        vec![
            Submitted::New,
            Submitted::Existing {
                id: earlier.id,
                fingerprint: "f1".into()
            },
            Submitted::New,
        ]
    );
    assert!(!items[1].reused(&answers[1]));
    assert_eq!(store.get(b.id).await.unwrap(), Lookup::Missing);
    assert_eq!(store.keyed("k2").await.unwrap(), Some((a.id, "f2".into())));
    assert_eq!(store.queue_depth().await.unwrap(), 3);

    // k2 with another request: the whole batch is refused, nothing stored.
    let (d, e) = (task(ModelType::Mlp, 0), task(ModelType::Mlp, 0));
    let items = [
        item(&d, Some(key("k3", "f3"))),
        item(&e, Some(key("k2", "other"))),
    ];
    let answers = store.submit_batch(&items, 100).await.unwrap();
    assert!(items[1].reused(&answers[1]));
    assert_eq!(
        answers[1],
        Submitted::Existing {
            id: a.id,
            fingerprint: "f2".into()
        }
    );
    assert_eq!(store.get(d.id).await.unwrap(), Lookup::Missing);
    assert_eq!(store.get(e.id).await.unwrap(), Lookup::Missing);
    assert_eq!(store.keyed("k3").await.unwrap(), None);
    assert_eq!(store.queue_depth().await.unwrap(), 3);
}
