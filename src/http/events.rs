//! Server-Sent Events: `GET /task/{id}/events` (one task, from its first event, ending after
//! its terminal one) and `GET /events` (every task, from now on). Each event carries its store
//! id; a client that reconnects with `Last-Event-ID` resumes after it, without gaps or repeats.
//! Events come from the store's log (history) and its live feed; whichever node the client
//! talks to, and whichever node trains.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use warp::Reply;
use warp::sse::Event as SseEvent;

use super::Api;
use super::ApiError;
use super::handlers::{Reply_, find, reject};
use crate::store::events::Pending;
use crate::store::{Event, EventId, Store};

/// Events a client may have waiting to be written; a client slower than that holds up only
/// its own feed, which then loses the oldest live events (and is told so on `/events`).
const CLIENT_BUFFER: usize = 256;
/// A task's follower re-reads the log when nothing arrived for this long, so an event the
/// live feed missed (a store reconnect) still arrives.
const QUIET_REREAD: Duration = Duration::from_secs(3);
/// Comment lines that keep idle connections open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most past events `/events` replays to a client that resumes.
const REPLAY_LIMIT: usize = 1000;

/// `GET /task/{id}/events`.
pub async fn task<S: Store>(
    raw_id: String,
    last_event_id: Option<String>,
    client: Option<IpAddr>,
    api: Arc<Api<S>>,
) -> Reply_ {
    let after = parse_last_id(last_event_id).map_err(reject)?;
    // Counted from here until the follower ends (its client gone, the task ended, the node
    // stopping).
    let permit = api.limits.open_stream(client).map_err(reject)?;
    let task = find(&api, &raw_id).await.map_err(reject)?;
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let store = api.store.clone();
    // Subscribed before the history is read, so nothing falls between the two.
    let live = store.subscribe().await;
    let stop = api.stopping.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let feed = Feed {
            tx,
            last: after,
            stop,
        };
        let ended_before = task.state.is_terminal();
        feed.follow_task(&*store, task.id, live, ended_before).await;
    });
    Ok(reply(rx))
}

/// `GET /events`: every task's events from now on, or after `Last-Event-ID` (the latest
/// `REPLAY_LIMIT` of them).
pub async fn all<S: Store>(
    last_event_id: Option<String>,
    client: Option<IpAddr>,
    api: Arc<Api<S>>,
) -> Reply_ {
    let after = parse_last_id(last_event_id).map_err(reject)?;
    let permit = api.limits.open_stream(client).map_err(reject)?;
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let store = api.store.clone();
    let live = store.subscribe().await;
    let stop = api.stopping.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let feed = Feed {
            tx,
            last: after,
            stop,
        };
        feed.follow_all(&*store, live).await;
    });
    Ok(reply(rx))
}

fn parse_last_id(raw: Option<String>) -> Result<Option<EventId>, ApiError> {
    raw.map(|r| {
        r.parse()
            .map_err(|e: String| ApiError::bad_request("invalid_event_id", e))
    })
    .transpose()
}

pub(super) fn reply(rx: mpsc::Receiver<SseEvent>) -> warp::reply::Response {
    let with_keep_alive = warp::sse::keep_alive()
        .interval(KEEP_ALIVE)
        .stream(Queued(rx));
    warp::sse::reply(with_keep_alive).into_response()
}

/// The events queued for one client, as the stream warp writes out.
struct Queued(mpsc::Receiver<SseEvent>);

impl Stream for Queued {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|event| event.map(Ok))
    }
}

/// One client's feed: what it has been sent so far.
struct Feed {
    tx: mpsc::Sender<SseEvent>,
    /// The id of the last event sent (or the client's `Last-Event-ID`).
    last: Option<EventId>,
    /// True once the node stops: the feed ends, and with it the client's response.
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Why a feed stops.
enum Stop {
    /// The client went away.
    Gone,
    /// The task ended: its terminal event was sent.
    Ended,
}

impl Feed {
    /// Resolves when the client has gone or the node stops: a feed waiting for events that may
    /// never come (a task that stays queued) must not outlive its client, nor hold up a stop.
    async fn over(&mut self) {
        tokio::select! {
            () = self.tx.closed() => {}
            _ = self.stop.wait_for(|stopping| *stopping) => {}
        }
    }

    async fn follow_task<S: Store>(
        mut self,
        store: &S,
        id: uuid::Uuid,
        mut live: tokio::sync::broadcast::Receiver<Event>,
        ended_before: bool,
    ) {
        match self.catch_up(store, id).await {
            // The terminal event was sent, or the client went away.
            Err(_) => return,
            Ok(()) if !ended_before => {}
            Ok(()) => {
                // An ended task whose terminal event was not sent now: the client resumed after
                // it (nothing more to say), or the task's events expired (its final state).
                if self.last.is_none()
                    && let Ok(crate::store::Lookup::Found(task)) = store.get(id).await
                    && let Some(pending) = Pending::of(None, &task)
                {
                    let _ = self.tx.send(sse(None, &pending.kind, &pending.data)).await;
                }
                return;
            }
        }
        loop {
            let step = tokio::select! {
                step = tokio::time::timeout(QUIET_REREAD, live.recv()) => step,
                () = self.over() => return,
            };
            let outcome = match step {
                Ok(Ok(event)) if event.task == id => self.send(&event).await,
                Ok(Ok(_)) => continue,
                Ok(Err(RecvError::Closed)) => return,
                // Fell behind, or quiet for a while: read what is logged.
                Ok(Err(RecvError::Lagged(_))) | Err(_) => self.catch_up(store, id).await,
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    /// Sends the logged events of task `id` after the last one sent; `Err(Stop::Ended)` once
    /// its terminal event is sent.
    async fn catch_up<S: Store>(&mut self, store: &S, id: uuid::Uuid) -> Result<(), Stop> {
        let logged = store
            .task_events(id, self.last.unwrap_or(EventId::ZERO))
            .await
            .unwrap_or_default();
        for event in &logged {
            self.send(event).await?;
        }
        Ok(())
    }

    /// Sends `event` unless it was sent already; `Err(Stop::Ended)` after a terminal event.
    async fn send(&mut self, event: &Event) -> Result<(), Stop> {
        if self.last.is_some_and(|last| event.id <= last) {
            return Ok(());
        }
        let message = sse(Some(event.id), &event.kind, &event.data);
        self.tx.send(message).await.map_err(|_| Stop::Gone)?;
        self.last = Some(event.id);
        if event.terminal {
            return Err(Stop::Ended);
        }
        Ok(())
    }

    async fn follow_all<S: Store>(
        mut self,
        store: &S,
        mut live: tokio::sync::broadcast::Receiver<Event>,
    ) {
        // Without Last-Event-ID, live events only.
        if let Some(after) = self.last {
            for event in store
                .events_since(after, REPLAY_LIMIT)
                .await
                .unwrap_or_default()
            {
                if matches!(self.send(&event).await, Err(Stop::Gone)) {
                    return;
                }
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = self.over() => return,
            };
            let outcome = match received {
                Ok(event) => self.send(&event).await,
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(missed)) => {
                    let notice = SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}"));
                    self.tx.send(notice).await.map_err(|_| Stop::Gone)
                }
            };
            if matches!(outcome, Err(Stop::Gone)) {
                return;
            }
        }
    }
}

fn sse(id: Option<EventId>, kind: &crate::store::EventKind, data: &str) -> SseEvent {
    let event = SseEvent::default().event(kind.as_str()).data(data);
    match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}
