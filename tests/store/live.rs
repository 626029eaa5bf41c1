//! Live events: a node's subscribers get every event logged once they subscribed, whether or
//! not the node had a subscriber before; on Redis, a node nobody follows reads no event (its
//! follower reads the stream of every event only while it has a subscriber).

use super::*;

/// The next live event of task `id`.
async fn next_of(live: &mut tokio::sync::broadcast::Receiver<Event>, id: Uuid) -> Event {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), live.recv())
            .await
            .expect("the task's event arrives")
            .expect("no event lost");
        if event.task == id {
            return event;
        }
    }
}

pub async fn subscribers_come_and_go<S: Store>(store: S) {
    for round in 0..3 {
        let mut live = store.subscribe().await;
        let t = task(ModelType::Linear, 0);
        store.submit(&t, 100).await.unwrap();
        let event = next_of(&mut live, t.id).await;
        assert_eq!((event.kind, event.terminal), (EventKind::State, false));
        drop(live);
        // With nobody following, events are still logged.
        let quiet = task(ModelType::Linear, 0);
        store.submit(&quiet, 100).await.unwrap();
        let logged = store.task_events(quiet.id, EventId::ZERO).await.unwrap();
        assert_eq!(logged.len(), 1, "round {round}");
        if round == 1 {
            // Long enough for the Redis follower to notice it has no subscriber and stop: the
            // next subscription starts it again.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

/// How many times `server` has run `command` (lower case), scripts' calls included.
pub fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.query_info("commandstats").unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// How many `XREAD`s `server` has answered.
fn stream_reads(server: &RedisServer) -> u64 {
    command_calls(server, "xread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nobody_follows_reads_no_events_on_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url, "quiet", settings())
        .await
        .unwrap();
    for _ in 0..20 {
        store
            .submit(&task(ModelType::Linear, 0), 100)
            .await
            .unwrap();
    }
    assert_eq!(stream_reads(&server), 0, "nobody subscribed, nothing read");

    let mut live = store.subscribe().await;
    let t = task(ModelType::Linear, 0);
    store.submit(&t, 100).await.unwrap();
    next_of(&mut live, t.id).await;
    assert!(stream_reads(&server) > 0, "a subscriber's events are read");

    drop(live);
    // The read under way ends (it waits 2 s at most for news), and the follower stops: no
    // read for 2.5 s.
    let mut stopped = stream_reads(&server);
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = stream_reads(&server);
        if now == stopped {
            break;
        }
        stopped = now;
    }
    for _ in 0..20 {
        store
            .submit(&task(ModelType::Linear, 0), 100)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stream_reads(&server),
        stopped,
        "no subscriber left, nothing read"
    );
}
