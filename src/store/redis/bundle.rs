//! Bundles: a node's claims and ends written together. Each store has one bundler task; trainers
//! hand it their claims (`claim_first.lua`, `claim_task.lua`) and ends (`end_task.lua`), and it
//! writes every call ready in one `bundle.lua` call, with up to `IN_FLIGHT` bundles out at once. A
//! call that finds a bundle free is written at once; calls that come while every bundle is out wait
//! for one to come back and go together in the next (a group commit: the window is a round trip,
//! and only under load). Each op stays its own compare-and-set, and answers alone.

use ::redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::event_log::add_no_event;
use super::*;

/// Most ops in one bundle.
const MAX_OPS: usize = 64;
/// Most bundles out at once. With one, two trainers' calls went one after the other, each
/// alone (a call came while the other's was out, and was written alone once it was back):
/// 10% fewer tasks a second than each trainer's own call. With two, a node with two
/// trainers writes as it did, and more trainers share bundles.
const IN_FLIGHT: usize = 2;

/// One op of a bundle: a claim or an end, as its own script takes it.
struct Op {
    kind: Kind,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

/// Ops of one caller, answered together.
struct Parcel {
    ops: Vec<Op>,
    /// Its ends are acknowledged once on the replicas asked for (`WAIT`).
    replicated: bool,
    reply: oneshot::Sender<Result<Vec<Value>, StoreError>>,
}

/// The sending side of a store's bundler; the task ends with the last clone of it.
#[derive(Clone)]
pub(super) struct Bundler {
    parcels: mpsc::UnboundedSender<Parcel>,
}

impl Bundler {
    /// Starts the bundler of a store on `link`.
    pub(super) fn start(link: Link, scripts: Arc<Scripts>, events: String) -> Bundler {
        let (parcels, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(link, scripts, events, waiting));
        Bundler { parcels }
    }
}

impl RedisStore {
    /// Runs `calls` (claims and ends) in this node's next bundle; each one's answer, in order
    /// (an error answer is `Value::ServerError`). With `replicated`, its ends that were made
    /// are on the replicas asked for before this answers.
    pub(super) async fn bundled(
        &self,
        calls: Vec<Call<'_>>,
        replicated: bool,
    ) -> Result<Vec<Value>, StoreError> {
        let mut ops = Vec::with_capacity(calls.len());
        for call in calls {
            let Runs::Bundled(kind) = call.runs else {
                return Err(StoreError::Corrupt(
                    "a script of its own was bundled: only claims and ends are".into(),
                ));
            };
            ops.push(Op {
                kind,
                keys: call.keys,
                args: call.args,
            });
        }
        let count = ops.len();
        let (reply, answer) = oneshot::channel();
        let parcel = Parcel {
            ops,
            replicated,
            reply,
        };
        if self.bundler.parcels.send(parcel).is_err() {
            return Err(StoreError::Unavailable(
                "the store's bundler stopped".into(),
            ));
        }
        let answers = answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's bundler stopped".into()))??;
        if answers.len() != count {
            return Err(StoreError::Corrupt(format!(
                "{count} bundled calls got {} answers",
                answers.len()
            )));
        }
        Ok(answers)
    }

    /// Runs `call` (a claim or an end) in this node's next bundle; its answer as `T`.
    pub(super) async fn bundled_one<T: ::redis::FromRedisValue>(
        &self,
        call: Call<'_>,
        replicated: bool,
    ) -> Result<T, StoreError> {
        let answers = self.bundled(vec![call], replicated).await?;
        decode(answers.into_iter().next())
    }
}

/// A bundled call's answer: its error, if it failed.
pub(super) fn answer(value: Value) -> ::redis::RedisResult<Value> {
    match value {
        Value::ServerError(e) => Err(e.into()),
        value => Ok(value),
    }
}

/// A bundled call's answer as `T`, or its error.
fn decode<T: ::redis::FromRedisValue>(value: Option<Value>) -> Result<T, StoreError> {
    parse(answer(value.unwrap_or(Value::Nil))?)
}

/// `value` as `T`.
pub(super) fn parse<T: ::redis::FromRedisValue>(value: Value) -> Result<T, StoreError> {
    ::redis::from_redis_value(value).map_err(|e| StoreError::from(::redis::RedisError::from(e)))
}

/// Writes the parcels as they come: each time, every parcel waiting, in one call.
async fn run(
    link: Link,
    scripts: Arc<Scripts>,
    events: String,
    mut waiting: mpsc::UnboundedReceiver<Parcel>,
) {
    let free = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        // Calls that come while every bundle is out wait here, and go in the next.
        let Ok(slot) = free.clone().acquire_owned().await else {
            return;
        };
        let mut ops = first.ops.len();
        let mut parcels = vec![first];
        while ops < MAX_OPS {
            match waiting.try_recv() {
                Ok(parcel) => {
                    ops += parcel.ops.len();
                    parcels.push(parcel);
                }
                Err(_) => break,
            }
        }
        let (link, scripts, events) = (link.clone(), scripts.clone(), events.clone());
        tokio::spawn(async move {
            write(&link, &scripts.bundle, &events, parcels).await;
            drop(slot);
        });
    }
}

/// One `bundle.lua` call of `parcels`, each answered with its ops' answers.
async fn write(link: &Link, script: &Script, events: &str, parcels: Vec<Parcel>) {
    let ops = parcels.iter().flat_map(|p| &p.ops);
    let mut invocation = script.prepare_invoke();
    invocation.arg(ops.clone().count());
    for op in ops.clone() {
        let kind = match op.kind {
            Kind::First => "f",
            Kind::Claim => "c",
            Kind::End => "e",
        };
        invocation.arg(kind).arg(op.keys.len()).arg(op.args.len());
    }
    for op in ops.clone() {
        for arg in &op.args {
            invocation.arg(&arg[..]);
        }
        for key in &op.keys {
            invocation.key(&key[..]);
        }
    }
    // The bundle's own events.lua keys and arguments: its ops log their events themselves.
    add_no_event(&mut invocation, events);
    let mut writer = link.writer();
    let answers = match invocation.invoke_async::<Value>(&mut writer).await {
        Ok(Value::Array(answers)) => answers,
        Ok(other) => {
            let e = format!("bundle.lua answered {other:?}");
            return answer_all(parcels, || StoreError::Corrupt(e.clone()));
        }
        Err(e) => return answer_all(parcels, || StoreError::from(e.clone())),
    };
    let replicated = parcels.iter().any(|p| p.replicated);
    let made_end = parcels
        .iter()
        .flat_map(|p| &p.ops)
        .zip(&answers)
        .any(|(op, answer)| op.kind == Kind::End && matches!(answer, Value::Int(1)));
    if replicated && made_end {
        let count = answers.len();
        if let Err(e) = writer.replicated(|| format!("{count} bundled ends")).await {
            let message = e.to_string();
            return answer_all(parcels, || StoreError::Unavailable(message.clone()));
        }
    }
    let mut answers = answers.into_iter();
    for parcel in parcels {
        let mine: Vec<Value> = answers.by_ref().take(parcel.ops.len()).collect();
        let _ = parcel.reply.send(Ok(mine));
    }
}

fn answer_all(parcels: Vec<Parcel>, error: impl Fn() -> StoreError) {
    for parcel in parcels {
        let _ = parcel.reply.send(Err(error()));
    }
}
