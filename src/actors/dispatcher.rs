//! The Dispatcher: every node runs one; the one whose node holds the leader lease dispatches.
//!
//! It knows every trainer of the cluster from the trainer process group, and which are busy
//! from the store's leases, which own that: a trainer is busy while the last read of the leases
//! shows it a lease (and it has not said it is idle since), or while a task this dispatcher
//! sent it since that read is not seen leased yet (`Slot::sent`). As leader it claims the next queued task for each idle trainer
//! (spreading work over nodes), requeues the task of a trainer that vanished, and requeues tasks
//! whose lease ran out (a hung node). A new leader rebuilds all of this from the store and the
//! group: nothing lives only in the old leader's memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use super::{DispatcherMsg, Stop, TrainerMsg, groups, recover_attempt};
use crate::cluster::Membership;
use crate::store::{Claimed, Lease, NODE_STALE_S, Store, TaskError, now_s, trainer_node};
use crate::telemetry;
use crate::training::{DeviceClass, DeviceSpec};

/// How often the dispatcher looks at the queue and the trainer group when nothing wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the leader lease is taken or renewed.
const LEAD_EVERY: Duration = Duration::from_secs(1);
/// How long the leader lease lasts without renewal.
const LEADER_TTL: Duration = Duration::from_secs(3);
/// A leader stops dispatching this long before its lease could have lapsed.
const LEAD_MARGIN: Duration = Duration::from_millis(500);
/// Largest stored record sent along with a task to its trainer (cluster messages are at most
/// `codec::MAX_MESSAGE_BYTES`).
const MAX_STORED_SENT: usize = 32 * 1024;
/// How often busy trainers are re-read from the leases, and expired leases requeued.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How often a dispatcher that does not lead re-reads them: only for its own trainers'
/// gauges (a new leader reads them at once). A read returns every running task's record, so
/// every node reading every second cost Redis N x T records a second.
const FOLLOWER_RECONCILE_EVERY: Duration = Duration::from_secs(10);

pub struct Dispatcher<S: Store> {
    pub store: Arc<S>,
    pub membership: Arc<Membership>,
    /// This node's stop: a stopping node neither leads nor dispatches.
    pub stop: Stop,
}

struct Slot {
    device: DeviceSpec,
    actor: ActorRef<TrainerMsg>,
    busy: Busy,
}

/// Whether a trainer is busy, as this dispatcher learns it from the owner, the store's leases:
/// its attempts in the last read of the leases, until it says it is idle, and the attempt sent
/// to it since that read.
#[derive(Debug, Default)]
struct Busy {
    /// Its attempts the last read of the leases showed, until it said it is idle.
    leased: Vec<(Uuid, u32)>,
    /// The attempt this dispatcher sent it since that read ("sent, not yet leased"): the next
    /// read shows its lease, or it has ended.
    sent: Option<(Uuid, u32)>,
    /// The task this dispatcher last sent it (the trainer may have run on from it since).
    given: Option<Uuid>,
}

impl Busy {
    fn is_busy(&self) -> bool {
        self.sent.is_some() || !self.leased.is_empty()
    }

    /// `busy` or `idle`, as the trainer gauges show it.
    fn state(&self) -> &'static str {
        if self.is_busy() { "busy" } else { "idle" }
    }

    /// The attempts it is known to run.
    fn tasks(&self) -> impl Iterator<Item = (Uuid, u32)> + '_ {
        self.sent.iter().chain(&self.leased).copied()
    }

    /// This dispatcher sent it attempt `attempt` of task `id`.
    fn sent(&mut self, id: Uuid, attempt: u32) {
        self.sent = Some((id, attempt));
        self.given = Some(id);
    }

    /// A read of the leases showed it holding `leased`: the attempt sent before is among them,
    /// or has ended.
    ///
    /// A trainer running on holds no lease for a moment when its claim lost the head to another
    /// node's (and it claims again): a task sent to it then is given back.
    fn read(&mut self, leased: impl Iterator<Item = (Uuid, u32)>) {
        self.leased = leased.collect();
        self.sent = None;
    }

    /// It said it is idle, done with task `done`, having run on from task `given`. A late
    /// notice (it already runs a newer task this dispatcher sent it, after a lease read showed
    /// it idle) changes nothing.
    fn idle(&mut self, done: Uuid, given: Uuid) {
        if self.tasks().all(|(id, _)| id == done) || self.given == Some(given) {
            *self = Busy::default();
        }
    }
}

pub struct DispatcherState {
    /// This dispatcher, put in the leader group while it leads.
    myself: ActorCell,
    trainers: BTreeMap<String, Slot>,
    /// Until when this node surely holds the leader lease (None: it does not lead).
    leads_until: Option<Instant>,
    next_lead: Instant,
    next_reconcile: Instant,
    /// When retries are next promoted and schedules next fired.
    next_periodic: Instant,
    /// Trainers that left the group (and have not come back): a lease one of them still holds
    /// is requeued by the leader, even one that left before this node led.
    departed: HashSet<String>,
    /// Nodes an operator drains, as read from the store with the leases: only to skip claims
    /// the store would refuse (the claim script enforces the drain).
    draining_nodes: HashSet<String>,
    /// When each node last got a task, to spread work.
    last_given: HashMap<String, u64>,
    given: u64,
}

impl<S: Store> Actor for Dispatcher<S> {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        groups::join_dispatchers(myself.get_cell());
        myself.send_interval(POLL_INTERVAL, || DispatcherMsg::Poll);
        let now = Instant::now();
        Ok(DispatcherState {
            myself: myself.get_cell(),
            trainers: BTreeMap::new(),
            leads_until: None,
            next_lead: now,
            next_reconcile: now,
            next_periodic: now,
            departed: HashSet::new(),
            draining_nodes: HashSet::new(),
            last_given: HashMap::new(),
            given: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Poll => {
                let now = Instant::now();
                if now >= state.next_lead {
                    state.next_lead = now + LEAD_EVERY;
                    self.contend(state).await;
                }
                let rejoined = self.sync_members(state).await;
                // A trainer back from a broken link may still run its task: its lease says so
                // before anything is sent to it.
                if rejoined || now >= state.next_reconcile {
                    let every = if Self::leads(state) {
                        RECONCILE_EVERY
                    } else {
                        FOLLOWER_RECONCILE_EVERY
                    };
                    state.next_reconcile = now + every;
                    self.reconcile(state).await;
                }
                // Every submission wakes the leader with a Poll: the periodic work runs at most
                // once per POLL_INTERVAL, so a burst of submissions costs only dispatching.
                if Self::leads(state) && now >= state.next_periodic {
                    state.next_periodic = now + POLL_INTERVAL;
                    if let Err(e) = self.store.promote().await {
                        tracing::warn!(error = %e, "cannot move due retries into the queue");
                    }
                    if let Err(e) = crate::schedule::fire_due(&*self.store).await {
                        tracing::warn!(error = %e, "cannot fire due schedules");
                    }
                    if let Err(e) = crate::sweeps::advance(&*self.store).await {
                        tracing::warn!(error = %e, "cannot advance sweeps");
                    }
                }
                self.dispatch(state).await;
            }
            DispatcherMsg::TrainerIdle {
                trainer,
                done,
                given,
            } => {
                if let Some(slot) = state.trainers.get_mut(&trainer) {
                    slot.busy.idle(done, given);
                }
                self.dispatch(state).await;
            }
        }
        publish(self.membership.name(), state);
        Ok(())
    }
}

impl<S: Store> Dispatcher<S> {
    fn leads(state: &DispatcherState) -> bool {
        state.leads_until.is_some_and(|t| Instant::now() < t)
    }

    /// Takes or renews the leader lease.
    async fn contend(&self, state: &mut DispatcherState) {
        let was = state.leads_until.is_some();
        if self.stop.is_stopping() || !self.membership.may_lead() {
            state.leads_until = None;
        } else {
            let asked = Instant::now();
            match self
                .store
                .lead(self.membership.name(), LEADER_TTL.as_secs_f64())
                .await
            {
                Ok(true) => state.leads_until = Some(asked + LEADER_TTL - LEAD_MARGIN),
                Ok(false) => state.leads_until = None,
                Err(e) => {
                    // Unconfirmed: keep leading only until the lease could lapse.
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                }
            }
        }
        let now = state.leads_until.is_some();
        if now != was {
            groups::set_leading(state.myself.clone(), now);
        }
        if now && !was {
            tracing::info!(node = %self.membership.name(), "this node leads the cluster");
            // Rebuild the view of busy trainers before dispatching anything.
            state.next_reconcile = Instant::now();
        } else if was && !now {
            tracing::info!(node = %self.membership.name(), "this node no longer leads");
        }
    }

    /// Follows the trainer group: new trainers are idle; the task of a trainer that left (its
    /// node died or disconnected, or the actor failed) is requeued at once by the leader.
    /// Returns whether a trainer that had left came back.
    async fn sync_members(&self, state: &mut DispatcherState) -> bool {
        let mut rejoined = false;
        let mut present: HashMap<String, ActorCell> = HashMap::new();
        for cell in groups::trainers() {
            if let Some(name) = cell.get_name() {
                present.insert(name, cell);
            }
        }
        let gone: Vec<String> = state
            .trainers
            .iter()
            .filter(|(name, slot)| {
                present
                    .get(*name)
                    .is_none_or(|cell| cell.get_id() != slot.actor.get_id())
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut lost = Vec::new();
        for name in gone {
            if let Some(slot) = state.trainers.remove(&name) {
                tracing::info!(trainer = %name, "trainer left");
                state.departed.insert(name.clone());
                lost.extend(slot.busy.tasks().map(|task| (name.clone(), task)));
            }
        }
        if !lost.is_empty() && Self::leads(state) {
            self.requeue_lost(&lost).await;
        }
        for (name, cell) in present {
            if state.trainers.contains_key(&name) {
                continue;
            }
            let Some(device) = device_of(&name) else {
                tracing::warn!(trainer = %name, "trainer name without a device; ignored");
                continue;
            };
            tracing::info!(trainer = %name, "trainer joined");
            rejoined |= state.departed.remove(&name);
            state.trainers.insert(
                name,
                Slot {
                    device,
                    actor: ActorRef::from(cell),
                    busy: Busy::default(),
                },
            );
        }
        rejoined
    }

    /// Requeues the tasks of trainers that left the group whose node is gone too: it has not
    /// announced itself in the store for `NODE_STALE_S`. Leaving the group alone proves
    /// nothing (a link between nodes broke, the store is still reached and the lease still
    /// renewed): such a task runs on, and is requeued only if its lease runs out.
    async fn requeue_lost(&self, lost: &[(String, (Uuid, u32))]) {
        let (leases, nodes) = match (self.store.leases().await, self.store.nodes().await) {
            (Ok(leases), Ok(nodes)) => (leases, nodes),
            (Err(e), _) | (_, Err(e)) => {
                // Their leases run out and they are requeued then.
                tracing::warn!(error = %e, "cannot read leases to requeue lost tasks");
                return;
            }
        };
        let now = now_s();
        let announced = |node: &str| {
            nodes
                .iter()
                .any(|n| n.name == node && now - n.seen_at < NODE_STALE_S)
        };
        for (trainer, (id, attempt)) in lost {
            let Some(lease) = leases
                .iter()
                .find(|l| l.id == *id && l.attempt == *attempt && &l.trainer == trainer)
            else {
                continue;
            };
            if announced(trainer_node(trainer)) {
                continue;
            }
            tracing::warn!(task_id = %id, trainer = %trainer, "trainer left while running a task; requeueing it");
            let error = TaskError {
                code: "trainer_lost".into(),
                message: format!(
                    "trainer {trainer} left the cluster and its node stopped announcing itself"
                ),
            };
            recover_attempt(&self.store, lease, error, false, 0.0).await;
        }
    }

    /// Re-reads which trainers are busy from the leases (the tasks sent since the last read
    /// are leased now, or ended), and the drained nodes; the leader requeues expired leases.
    async fn reconcile(&self, state: &mut DispatcherState) {
        let leases = match self.store.leases().await {
            Ok(leases) => leases,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read leases");
                return;
            }
        };
        if let Ok(names) = self.store.draining().await {
            state.draining_nodes = names.into_iter().collect();
        }
        let now = now_s();
        let leads = Self::leads(state);
        // A trainer can hold two leases for a moment: the next task is claimed for it while
        // the end of the last one is written.
        let mut running: HashMap<&str, Vec<&Lease>> = HashMap::new();
        let mut lost = Vec::new();
        for lease in &leases {
            if lease.until < now {
                if leads {
                    tracing::warn!(task_id = %lease.id, trainer = %lease.trainer, "task lease expired (its node hung or lost the store); requeueing it");
                    let error = TaskError {
                        code: "lease_expired".into(),
                        message: format!(
                            "trainer {} stopped renewing the task's lease",
                            lease.trainer
                        ),
                    };
                    recover_attempt(&self.store, lease, error, false, 0.0).await;
                }
                // Its trainer stopped renewing it: it hangs or lost the store, and is not
                // idle until a read shows it without the lease (or it says it is idle).
            } else if state.departed.contains(&lease.trainer) {
                lost.push((lease.trainer.clone(), (lease.id, lease.attempt)));
                continue;
            }
            running
                .entry(lease.trainer.as_str())
                .or_default()
                .push(lease);
        }
        for (name, slot) in state.trainers.iter_mut() {
            let leases = running.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            slot.busy.read(leases.iter().map(|l| (l.id, l.attempt)));
        }
        if leads && !lost.is_empty() {
            self.requeue_lost(&lost).await;
        }
        if leads && let Ok(depths) = self.store.queue_depths().await {
            telemetry::queue_depth(&depths);
        }
    }

    /// Gives idle trainers queued tasks, node with the least work first, until the queue or
    /// the trainers run out.
    async fn dispatch(&self, state: &mut DispatcherState) {
        // Device classes whose queues came up empty this round.
        let mut dry: HashSet<DeviceClass> = HashSet::new();
        // One claim first, then twice as many at once after each round that found work
        // for all: an empty queue costs one claim, a deep one is claimed from in bundles.
        let mut at_once = 1;
        loop {
            // A long round (hundreds of idle trainers, a slow store) renews the lease as the
            // Poll does, and ends if it lapsed: it once went on claiming without renewing, every
            // task sent carried a run-on permission already past, no trainer ran on, and all
            // the work came back to this loop. Only a renewal: a node that takes the lease reads
            // the leases (Poll) first.
            if self.stop.is_stopping() || !Self::leads(state) {
                return;
            }
            if Instant::now() >= state.next_lead {
                state.next_lead = Instant::now() + LEAD_EVERY;
                self.contend(state).await;
                if !Self::leads(state) {
                    return;
                }
            }
            // Trainers may run on from the tasks they are sent while this node surely leads.
            let run_on_until = state.leads_until.map_or(0.0, |until| {
                now_s()
                    + until
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64()
            });
            let picks = pick_idle(state, &dry, at_once);
            if picks.is_empty() {
                return;
            }
            // All at once: the store writes claims under way together, in one bundle.
            let claims = picks
                .iter()
                .map(|(name, device)| self.store.claim(name, *device));
            let claims = futures_util::future::join_all(claims).await;
            let mut failed = false;
            for ((name, device), claim) in picks.into_iter().zip(claims) {
                match claim {
                    Ok(Some(Claimed { task, stored })) => {
                        state.given += 1;
                        state
                            .last_given
                            .insert(trainer_node(&name).to_string(), state.given);
                        let slot = state.trainers.get_mut(&name).expect("picked slot exists");
                        slot.busy.sent(task.id, task.attempt);
                        tracing::info!(task_id = %task.id, trainer = %name, attempt = task.attempt, "task dispatched");
                        // A record too big for a cluster message is read by the trainer instead.
                        let stored = stored.filter(|s| s.size_bytes() <= MAX_STORED_SENT);
                        let sent = slot.actor.cast(TrainerMsg::Train {
                            id: task.id,
                            attempt: task.attempt,
                            stored,
                            run_on_until,
                        });
                        if sent.is_err() {
                            // The trainer is gone; the group sync requeues its task.
                            tracing::warn!(trainer = %name, "cannot reach trainer");
                        }
                    }
                    Ok(None) => {
                        dry.insert(device.class());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim a task");
                        failed = true;
                    }
                }
            }
            if failed {
                return;
            }
            at_once = (at_once * 2).min(CLAIMS_AT_ONCE);
        }
    }
}

/// Most claims the dispatcher has under way at once.
const CLAIMS_AT_ONCE: usize = 16;

/// The idle trainers to claim for next, up to `at_once`: each time the one of the node with
/// the least work (the fewest busy trainers, counting those picked, then the one given a task
/// longest ago), skipping device classes found dry and draining nodes.
fn pick_idle(
    state: &DispatcherState,
    dry: &HashSet<DeviceClass>,
    at_once: usize,
) -> Vec<(String, DeviceSpec)> {
    let mut busy: HashMap<&str, usize> = HashMap::new();
    for (name, slot) in &state.trainers {
        if slot.busy.is_busy() {
            *busy.entry(trainer_node(name)).or_default() += 1;
        }
    }
    let mut picks: Vec<(String, DeviceSpec)> = Vec::new();
    while picks.len() < at_once {
        let pick = state
            .trainers
            .iter()
            .filter(|(name, slot)| {
                !slot.busy.is_busy()
                    && !dry.contains(&slot.device.class())
                    && !state.draining_nodes.contains(trainer_node(name))
                    && !picks.iter().any(|(picked, _)| picked == *name)
            })
            .min_by_key(|(name, _)| {
                let node = trainer_node(name);
                (
                    busy.get(node).copied().unwrap_or(0),
                    state.last_given.get(node).copied().unwrap_or(0),
                )
            })
            .map(|(name, slot)| (name.as_str(), slot.device));
        let Some((name, device)) = pick else {
            break;
        };
        *busy.entry(trainer_node(name)).or_default() += 1;
        picks.push((name.to_string(), device));
    }
    picks
}

/// The device of a trainer named `node/device-N`.
pub fn device_of(trainer: &str) -> Option<DeviceSpec> {
    let (_, seat) = trainer.split_once('/')?;
    let (device, _) = seat.rsplit_once('-')?;
    device.parse().ok()
}

/// Publishes the gauges of this node's trainers from the dispatcher's view.
fn publish(node: &str, state: &DispatcherState) {
    let states: Vec<(String, &'static str)> = state
        .trainers
        .iter()
        .filter(|(name, _)| trainer_node(name) == node)
        .map(|(_, slot)| (slot.device.to_string(), slot.busy.state()))
        .collect();
    telemetry::trainers(&states);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_names_give_node_and_device() {
        assert_eq!(trainer_node("node-b/cpu-1"), "node-b");
        assert_eq!(device_of("node-b/cpu-1"), Some(DeviceSpec::Cpu));
        assert_eq!(device_of("n/gpu:2-0"), Some(DeviceSpec::Gpu(2)));
        assert_eq!(device_of("nonsense"), None);
    }

    #[test]
    fn the_leases_own_busy_and_sent_tasks_count_until_the_next_read() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut busy = Busy::default();
        assert!(!busy.is_busy());
        busy.sent(a, 1);
        assert!(busy.is_busy(), "sent, not yet leased");
        busy.read([(a, 1)].into_iter());
        assert_eq!((busy.is_busy(), busy.sent), (true, None), "leased now");
        // It ran on from a to b and says it is idle: the lease read is stale.
        busy.read([(b, 1)].into_iter());
        busy.idle(c, a);
        assert!(!busy.is_busy());
        // A read without its lease: the task sent ended.
        busy.sent(b, 2);
        busy.read(std::iter::empty());
        assert!(!busy.is_busy());
    }

    #[test]
    fn a_late_idle_notice_leaves_a_trainer_busy_with_a_newer_task() {
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let mut busy = Busy::default();
        busy.sent(new, 1);
        busy.idle(old, old);
        assert!(busy.is_busy());
        busy.idle(new, new);
        assert!(!busy.is_busy());
    }
}
