//! The event log: the stream of every event and each task's list (both written by the script
//! of the change, through the `events.lua` preamble), the [`EventLog`] role, and the follower
//! that feeds this node's subscribers from the stream, while it has any ([`Following`]).

use ::redis::streams::{StreamId, StreamReadOptions, StreamReadReply};

use super::super::link::WeakLink;
use super::*;

/// How many events the stream of every event keeps (for `/events` resume), about.
pub(super) const EVENTS_KEPT: u64 = 10_000;

impl RedisStore {
    /// Appends the keys and arguments of `events.lua`: the event of the change from `old`
    /// to `new`, if there is one.
    pub(super) fn add_event(
        &self,
        invocation: &mut impl ScriptArgs,
        old: Option<&TaskRecord>,
        new: &TaskRecord,
    ) {
        let event = events::Pending::of(old, new).map_or_else(String::new, |p| p.encode());
        let ttl = if new.state.is_terminal() {
            (self.settings.history_expires_s().ceil().max(1.0) as u64).to_string()
        } else {
            String::new()
        };
        invocation.add_key(self.keys.events());
        invocation.add_key(self.keys.task_events(new.id));
        invocation.add_arg(event);
        invocation.add_arg(ttl);
        invocation.add_arg(EVENTS_KEPT);
    }
}

/// Appends the keys and arguments of `events.lua` for a call that logs no event of its own:
/// the stream of every event (`events`), an unused task events key; no event, no TTL.
pub(super) fn add_no_event(invocation: &mut impl ScriptArgs, events: &str) {
    invocation.add_key(events);
    invocation.add_key(events);
    invocation.add_arg("");
    invocation.add_arg("");
    invocation.add_arg(EVENTS_KEPT);
}

impl EventLog for RedisStore {
    async fn task_events(&self, id: Uuid, after: EventId) -> Result<Vec<Event>, StoreError> {
        let key = self.keys.task_events(id);
        let logged: Vec<String> = match self.link.clone().lrange(&key, 0, -1).await {
            Ok(logged) => logged,
            // A stream, as versions before the list kept a task's events.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                let reply: StreamRangeReply = self
                    .link
                    .clone()
                    .xrange(&key, format!("({after}"), "+")
                    .await?;
                return Ok(parse_events(reply.ids));
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(logged.len());
        for entry in &logged {
            let (event_id, event) = entry.split_once(' ').unwrap_or((entry, ""));
            let Ok(event_id) = event_id.parse::<EventId>() else {
                tracing::warn!(task_id = %id, entry, "task event does not parse; skipped");
                continue;
            };
            if event_id <= after {
                continue;
            }
            if !event.is_empty() {
                match Event::decode(event_id, event) {
                    Some(event) => out.push(event),
                    None => {
                        tracing::warn!(task_id = %id, entry, "task event does not parse; skipped")
                    }
                }
            } else if let Lookup::Found(task) = self.lookup::<TaskRecord>(id).await? {
                // The terminal event, kept as its id: its data is the final record's.
                out.extend(events::Pending::ended(&task).map(|p| p.with_id(event_id)));
            }
        }
        Ok(out)
    }

    async fn events_since(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let reply: StreamRangeReply = self
            .link
            .clone()
            .xrevrange_count(self.keys.events(), "+", format!("({after}"), limit)
            .await?;
        let mut out = parse_events(reply.ids);
        out.reverse();
        Ok(out)
    }

    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        let (live, asked) = {
            let mut state = self.following.state.lock().expect("following lock");
            // Under the lock: the follower cannot stop between this and the check below.
            let live = self.live.subscribe();
            if state.on {
                return live;
            }
            state.asked += 1;
            (live, state.asked)
        };
        self.following.wake.notify_one();
        let mut begun = self.following.begun.subscribe();
        // Bounded: while Redis cannot be reached, nothing is logged either.
        let _ = tokio::time::timeout(BEGIN_WAIT, begun.wait_for(|&at| at >= asked)).await;
        live
    }
}

/// Whether this node's follower reads the stream of every event. It reads only while the node
/// has a subscriber: a node nobody follows reads no event (each of 100 nodes read every event
/// of the cluster, 59 reads per task). A subscription wakes it and waits until it has begun
/// at the newest event, so that what the subscriber reads next from the store reaches at
/// least as far as where the follower begins.
pub(super) struct Following {
    state: Mutex<FollowState>,
    /// Wakes the follower to begin.
    wake: tokio::sync::Notify,
    /// The last subscription (by `FollowState::asked`) the follower has begun for.
    begun: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct FollowState {
    /// The follower reads the stream.
    on: bool,
    /// Subscriptions that found it idle, so far.
    asked: u64,
}

impl Following {
    pub(super) fn new() -> Self {
        Following {
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            begun: tokio::sync::watch::channel(0).0,
        }
    }

    /// Whether `live` has a subscriber, waiting for one for a while (the follower checks in
    /// between that its store still lives).
    async fn wanted(&self, live: &tokio::sync::broadcast::Sender<Event>) -> bool {
        if live.receiver_count() > 0 {
            return true;
        }
        let _ = tokio::time::timeout(FOLLOW_BLOCK, self.wake.notified()).await;
        live.receiver_count() > 0
    }

    /// The follower began at the newest event: the subscriptions so far may go on.
    fn begin(&self) {
        let asked = {
            let mut state = self.state.lock().expect("following lock");
            state.on = true;
            state.asked
        };
        self.begun.send_replace(asked);
    }

    /// Whether the follower goes on: not once `live` has no subscriber left.
    fn goes_on(&self, live: &tokio::sync::broadcast::Sender<Event>) -> bool {
        let mut state = self.state.lock().expect("following lock");
        state.on = live.receiver_count() > 0;
        state.on
    }
}

/// How long a subscription waits for the follower to begin.
const BEGIN_WAIT: Duration = Duration::from_secs(5);

/// Events as stream entries hold them (field `e`); an entry that does not parse is skipped
/// (logged), so one bad entry cannot stop a stream.
fn parse_events(entries: Vec<StreamId>) -> Vec<Event> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = entry.id.parse::<EventId>().ok().and_then(|id| {
            let logged: String = entry.get("e")?;
            Event::decode(id, &logged)
        });
        match parsed {
            Some(event) => out.push(event),
            None => tracing::warn!(entry = %entry.id, "event entry does not parse; skipped"),
        }
    }
    out
}

/// How long one read of the event stream waits for news.
const FOLLOW_BLOCK: Duration = Duration::from_secs(2);
/// Events one read of the event stream takes at most.
const FOLLOW_COUNT: usize = 512;
/// How long events gather between two reads of the event stream while it is busy.
const FOLLOW_GATHER: Duration = Duration::from_millis(5);

/// Reads the stream of every event as it grows and hands each event to this node's
/// subscribers, while it has any (see [`Following`]). On its own connection (a blocking read
/// would hold up every other command on a shared one). After an error it reconnects and goes
/// on from the last event it read, so nothing is skipped.
pub(super) async fn follow(
    weak: WeakLink,
    key: String,
    live: tokio::sync::broadcast::Sender<Event>,
    following: Arc<Following>,
) {
    // Where the reads go on from; none while nobody follows.
    let mut last: Option<String> = None;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(FOLLOW_BLOCK + Duration::from_secs(3)));
    loop {
        let Some(link) = weak.upgrade() else {
            return;
        };
        let (client, generation) = (link.client(), link.generation());
        drop(link);
        let mut con = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(con) => con,
            Err(e) => {
                tracing::debug!(error = %e, "cannot connect to follow events; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let options = StreamReadOptions::default()
            .block(FOLLOW_BLOCK.as_millis() as usize)
            .count(FOLLOW_COUNT);
        loop {
            // Ends with the store; reconnects when the store moved to another primary.
            match weak.upgrade() {
                None => return,
                Some(link) if link.generation() != generation => break,
                Some(_) => {}
            }
            let from = match &last {
                Some(last) => last.clone(),
                None => {
                    if !following.wanted(&live).await {
                        continue;
                    }
                    let newest: StreamRangeReply =
                        match con.xrevrange_count(&key, "+", "-", 1).await {
                            Ok(newest) => newest,
                            Err(e) => {
                                tracing::debug!(error = %e, "lost the event stream; reconnecting");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                break;
                            }
                        };
                    let newest = newest.ids.first().map_or("0-0".into(), |e| e.id.clone());
                    following.begin();
                    last = Some(newest.clone());
                    newest
                }
            };
            let reply: Result<Option<StreamReadReply>, _> =
                con.xread_options(&[&key], &[&from], &options).await;
            match reply {
                Ok(reply) => {
                    let mut read = 0;
                    for stream in reply.map(|r| r.keys).unwrap_or_default() {
                        if let Some(entry) = stream.ids.last() {
                            last = Some(entry.id.clone());
                        }
                        read += stream.ids.len();
                        for event in parse_events(stream.ids) {
                            // No subscriber is fine.
                            let _ = live.send(event);
                        }
                    }
                    // The first event after a quiet spell comes at once; under load, events
                    // gather for a moment, so the stream is read a few hundred times a second
                    // at most rather than once or twice per event. A full read means more wait.
                    if !following.goes_on(&live) {
                        last = None;
                    } else if read > 0 && read < FOLLOW_COUNT {
                        tokio::time::sleep(FOLLOW_GATHER).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lost the event stream; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}
