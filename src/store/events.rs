//! Task events: every change of a task's state or progress, logged by the store in the same
//! atomic step as the change, for the Server-Sent Events routes (`/task/{id}/events`,
//! `/events`). Each event has an id that orders it among all events of the store, so a client
//! resumes after the last id it saw without gaps or repeats.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use std::future::Future;

use super::{StoreError, TaskError, TaskProgress, TaskRecord, TaskState, now_s};
use crate::training::ModelType;

/// Orders events: Redis stream ids (`milliseconds-sequence`); the embedded store uses
/// `sequence-0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub major: u64,
    pub minor: u64,
}

impl EventId {
    /// Before every event.
    pub const ZERO: EventId = EventId { major: 0, minor: 0 };
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl FromStr for EventId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("event id {s:?} is not of the form N-N");
        let (major, minor) = s.trim().split_once('-').ok_or_else(bad)?;
        Ok(EventId {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The state or the attempt changed (submitted, started, requeued, ended).
    State,
    /// Progress within a running attempt.
    Progress,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::State => "state",
            EventKind::Progress => "progress",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        match s {
            "state" => Some(EventKind::State),
            "progress" => Some(EventKind::Progress),
            _ => None,
        }
    }
}

/// One logged change of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub task: Uuid,
    pub kind: EventKind,
    /// Terminal state: no event of this task follows.
    pub terminal: bool,
    /// The JSON sent to clients (see `Pending::of`).
    pub data: Arc<str>,
}

/// An event about to be logged: everything but its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub task: Uuid,
    pub kind: EventKind,
    pub terminal: bool,
    pub data: String,
}

impl Pending {
    /// The event of the change from `old` (None: a new task) to `new`, if clients see one.
    /// Lease renewals, cancel flags and callback notes are not events.
    /// A terminal event's time is the task's end (`finished_at`).
    pub fn of(old: Option<&TaskRecord>, new: &TaskRecord) -> Option<Pending> {
        let at = match new.finished_at {
            Some(end) if new.state.is_terminal() => end,
            _ => now_s(),
        };
        let kind = match old {
            None => EventKind::State,
            Some(old) if old.attempt != new.attempt => EventKind::State,
            // The first progress of an attempt turns STARTED into PROGRESS: still progress.
            Some(old) if new.state == TaskState::Progress && old.progress != new.progress => {
                EventKind::Progress
            }
            Some(old) if old.state != new.state => EventKind::State,
            Some(_) => return None,
        };
        let data = EventData {
            task_id: new.id,
            state: new.state.as_str(),
            model_type: new.model_type,
            dataset: &new.spec.dataset,
            priority: new.priority,
            submitted_at: new.submitted_at,
            attempt: new.attempt,
            node: new.node(),
            trainer: new.trainer.as_deref(),
            progress: new.progress.as_ref(),
            result: new
                .result
                .as_ref()
                .filter(|_| new.state == TaskState::Success),
            error: new.error.as_ref(),
            at,
        };
        Some(Pending {
            task: new.id,
            kind,
            terminal: new.state.is_terminal(),
            data: serde_json::to_string(&data).expect("an event serializes"),
        })
    }

    /// The terminal event of ended task `task`, as it was logged: how a store that kept only
    /// the event's id gives it back.
    pub fn ended(task: &TaskRecord) -> Option<Pending> {
        Self::of(None, task).filter(|p| p.terminal)
    }

    /// How the stores log it: `kind terminal task-id json`, one string.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.kind.as_str(),
            u8::from(self.terminal),
            self.task,
            self.data
        )
    }

    pub fn with_id(self, id: EventId) -> Event {
        Event {
            id,
            task: self.task,
            kind: self.kind,
            terminal: self.terminal,
            data: Arc::from(self.data),
        }
    }
}

impl Event {
    /// Reads an event logged as `Pending::encode` wrote it.
    pub fn decode(id: EventId, logged: &str) -> Option<Event> {
        let mut parts = logged.splitn(4, ' ');
        let kind = EventKind::parse(parts.next()?)?;
        let terminal = parts.next()? == "1";
        let task = Uuid::parse_str(parts.next()?).ok()?;
        let data = parts.next()?;
        Some(Event {
            id,
            task,
            kind,
            terminal,
            data: Arc::from(data),
        })
    }
}

/// The JSON clients get for an event: the task as it is after the change.
#[derive(Serialize)]
struct EventData<'a> {
    task_id: Uuid,
    state: &'static str,
    model_type: ModelType,
    dataset: &'a str,
    priority: u8,
    submitted_at: f64,
    attempt: u32,
    node: Option<&'a str>,
    trainer: Option<&'a str>,
    progress: Option<&'a TaskProgress>,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a TaskError>,
    at: f64,
}

/// Live events a node keeps for its subscribers; a subscriber more than this many behind
/// loses the oldest and is told so.
pub const LIVE_BUFFER: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::{ModelType, TrainSpec};

    #[test]
    fn ids_order_and_round_trip() {
        let a: EventId = "1732812345123-0".parse().unwrap();
        let b: EventId = "1732812345123-1".parse().unwrap();
        assert!(a < b && EventId::ZERO < a);
        assert_eq!(a.to_string(), "1732812345123-0");
        assert!("12".parse::<EventId>().is_err());
        assert!("a-1".parse::<EventId>().is_err());
    }

    #[test]
    fn changes_of_state_and_progress_are_events_and_others_not() {
        let task = TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 0);
        let submitted = Pending::of(None, &task).unwrap();
        assert_eq!(submitted.kind, EventKind::State);
        let mut renewed = task.clone();
        renewed.lease_until = Some(1.0);
        assert_eq!(Pending::of(Some(&task), &renewed), None);
        let event = submitted.with_id(EventId { major: 7, minor: 0 });
        let logged = Pending::of(None, &task).unwrap().encode();
        let back = Event::decode(event.id, &logged).unwrap();
        assert_eq!(
            (back.task, back.kind, back.terminal),
            (task.id, EventKind::State, false)
        );
    }
}

/// The log of task events: each task's history, the latest events of all, and the live feed.
pub trait EventLog: Send + Sync + 'static {
    /// The events of task `id` after `after` (all of them after `EventId::ZERO`), oldest
    /// first.
    fn task_events(
        &self,
        id: Uuid,
        after: EventId,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
    /// The events of every task after `after`, oldest first: the latest `limit` of them.
    fn events_since(
        &self,
        after: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
    /// Every event logged from now on, by any node: whatever is read from the store once this
    /// answered (history, a record) is no older than the first event it gives. A receiver
    /// more than [`LIVE_BUFFER`] events behind loses the oldest (`RecvError::Lagged`).
    fn subscribe(&self) -> impl Future<Output = tokio::sync::broadcast::Receiver<Event>> + Send;
}
