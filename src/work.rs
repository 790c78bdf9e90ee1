//! Durable work: what could not be finished inline is recorded in the work ledger (Table Storage, partition
//! `work`) and put on the work queue; the `work-items` queue trigger does it later, and the Functions host retries
//! it (visibility timeout) until `maxDequeueCount`, then moves it to the poison queue, which the `dead-letters`
//! trigger turns into a dead letter. A permanent refusal is dead-lettered at once and never blocks later work; an
//! operator lists dead letters and replays them (`handler dead-letters`, `handler replay`). docs/durable-work.md
//! tells the whole story.
//!
//! Every item is idempotent: running it again after it succeeded does nothing (the claims and records of each
//! direction see to that), so a message delivered twice, a replay of finished work, or two instances taking the
//! same ticket's items are all safe.

use crate::domain::{unix_now, TicketId};
use crate::store::queue::{QueueError, WorkQueue};
use crate::store::{
    action_key, digest, ticket_key, work_key, ActionMarker, Chunks, Claim, CloseState, MarkerState, Store, StoreError,
    TicketRecord, WorkRecord, WorkState, WORK_PARTITION,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The queue-triggered function that does queued work; also the name of its queue (`config::WORK_QUEUE`).
pub const WORK_FUNCTION: &str = "work-items";
/// The queue-triggered function that turns the poison queue (`work-items-poison`) into dead letters.
pub const DEAD_LETTER_FUNCTION: &str = "dead-letters";

/// One piece of work, as it travels on the queue (JSON) and names its ledger record (`id`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkItem {
    /// A verified ContraForce delivery; its body is in the ledger record, `signed_at` its signed time (together
    /// the delivery's identity, `cf::signature::delivery_id`).
    CfEvent {
        reference: String,
        event_id: String,
        #[serde(default)]
        signed_at: i64,
    },
    /// Bring one Halo ticket up to date in ContraForce (its new public actions, its close).
    HaloTicket { ticket: TicketId },
    /// Forward one Halo action again (a replayed dead letter or uncertain comment).
    HaloAction { ticket: TicketId, action: i64 },
    /// Mirror one ticket's close again (a replayed dead letter).
    HaloClose { ticket: TicketId },
}

impl WorkItem {
    /// The work id: the same work always has the same id (the ledger's row key, the answer's `workId`).
    pub fn id(&self) -> String {
        match self {
            WorkItem::CfEvent { reference, event_id, .. } => format!("cf-{}-{}", digest(reference), digest(event_id)),
            WorkItem::HaloTicket { ticket } => format!("halo-{ticket}"),
            WorkItem::HaloAction { ticket, action } => format!("halo-{ticket}-act-{action}"),
            WorkItem::HaloClose { ticket } => format!("halo-{ticket}-close"),
        }
    }

    /// The queue message.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).expect("a work item serializes")
    }

    pub fn from_message(text: &str) -> Option<WorkItem> {
        serde_json::from_str(text).ok()
    }
}

/// What a direction's failure means for its work.
pub trait WorkFailure: std::fmt::Display {
    /// Fails the same way however often it is tried: a dead letter at once.
    fn is_permanent(&self) -> bool;
    /// The upstream said when to try again.
    fn retry_after(&self) -> Option<Duration>;
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the delivery is too large to be queued ({0} bytes)")]
    TooLarge(usize),
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Put back on the queue.
    Queued,
    /// No such work in the ledger: it was done (or never existed).
    NothingToDo,
    /// The record cannot be turned back into work (an unreadable message, kept for the operator).
    Unreadable,
}

/// The work ledger and the queue, together: nothing is queued without its record.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    queue: Arc<dyn WorkQueue>,
}

impl Ledger {
    pub fn new(store: Store, queue: Arc<dyn WorkQueue>) -> Self {
        Ledger { store, queue }
    }

    /// Whether the work queue answers, and about how many messages wait on it (`None`: not created yet).
    pub async fn probe_queue(&self) -> Result<Option<u64>, crate::store::queue::QueueError> {
        self.queue.probe().await
    }

    /// Records the work, then puts it on the queue (visible after `visible_after` when an upstream asked to wait):
    /// only once both are done may the sender be answered `queued`.
    pub async fn enqueue(
        &self,
        item: &WorkItem,
        body: Option<&str>,
        reason: &str,
        visible_after: Option<Duration>,
    ) -> Result<String, WorkError> {
        if let Some(body) = body.filter(|b| !Chunks::fits(b)) {
            return Err(WorkError::TooLarge(body.len()));
        }
        self.write(item, body, WorkState::Queued, reason, 1).await?;
        self.queue.send(&item.to_message(), visible_after).await?;
        Ok(item.id())
    }

    /// A permanent failure: kept for an operator, never retried by itself.
    pub async fn dead_letter(&self, item: &WorkItem, body: Option<&str>, reason: &str) -> Result<String, StoreError> {
        let body = body.filter(|b| Chunks::fits(b));
        self.write(item, body, WorkState::DeadLettered, reason, 1).await?;
        let id = item.id();
        tracing::warn!(work_id = %id, outcome = "dead-lettered", reason, "work dead-lettered; `handler replay` once the cause is fixed");
        Ok(id)
    }

    /// Work that may have been done (its answer was lost): never repeated by itself.
    pub async fn uncertain(&self, item: &WorkItem, reason: &str) -> Result<String, StoreError> {
        self.write(item, None, WorkState::Uncertain, reason, 1).await?;
        let id = item.id();
        tracing::warn!(work_id = %id, outcome = "uncertain", reason, "work outcome unknown; not repeated (check, then `handler replay` or leave it)");
        Ok(id)
    }

    /// An attempt from the queue failed and the host will retry it: counted, with its reason.
    pub async fn attempt_failed(&self, item: &WorkItem, reason: &str) -> Result<(), StoreError> {
        self.write(item, None, WorkState::Queued, reason, 1).await
    }

    /// The host gave up on a queued item (the poison queue): a dead letter with the last attempt's reason.
    pub async fn exhausted(&self, item: &WorkItem, dequeue_count: u32) -> Result<String, StoreError> {
        let last = self.store.get::<WorkRecord>(&work_key(&item.id())).await?.map(|r| r.value.reason);
        let reason =
            format!("retries exhausted after {dequeue_count} attempts; last: {}", last.as_deref().unwrap_or("unknown"));
        self.write(item, None, WorkState::DeadLettered, &reason, 0).await?;
        let id = item.id();
        tracing::warn!(work_id = %id, outcome = "dead-lettered", reason, "work dead-lettered; `handler replay` once the cause is fixed");
        Ok(id)
    }

    /// A message that is not a work item (not written by the bridge): kept as a dead letter, text and all.
    pub async fn unreadable(&self, text: &str) -> Result<String, StoreError> {
        let id = format!("unreadable-{}", digest(text));
        let now = unix_now();
        let record = WorkRecord {
            item: String::new(),
            state: WorkState::DeadLettered,
            attempts: 1,
            reason: "the queue message is not a work item".into(),
            first_at: now,
            updated_at: now,
            body: Chunks(text.chars().take(10_000).collect()),
        };
        match self.store.insert(&work_key(&id), &record).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
        tracing::warn!(work_id = %id, outcome = "dead-lettered", "an unreadable queue message was dead-lettered");
        Ok(id)
    }

    /// The body the work needs (a ContraForce delivery), `None` when its record is gone: the work was done.
    pub async fn body(&self, item: &WorkItem) -> Result<Option<String>, StoreError> {
        Ok(self.store.get::<WorkRecord>(&work_key(&item.id())).await?.map(|r| r.value.body.0))
    }

    /// The work is done: its record goes, unless it changed since (new work of the same id is queued).
    pub async fn completed(&self, item: &WorkItem) -> Result<(), StoreError> {
        let key = work_key(&item.id());
        match self.store.get::<WorkRecord>(&key).await? {
            Some(found) if found.value.state == WorkState::Queued || found.value.state == WorkState::DeadLettered => {
                match self.store.delete(&key, &found.etag).await {
                    Ok(()) | Err(StoreError::Changed) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }

    /// Queued work untouched for `older_than` (neither tried nor queued again since): its queue message was lost
    /// (a host that crashed holding it past every retry, a message deleted by hand), so it is put on the queue
    /// again. A message that was only late meets work already done and does nothing: every item is idempotent.
    /// Returns the ids queued again.
    pub async fn requeue_lost(&self, older_than: Duration) -> Result<Vec<String>, WorkError> {
        let cutoff = unix_now() - older_than.as_secs() as i64;
        let mut requeued = Vec::new();
        for (id, found) in self.store.rows::<WorkRecord>(WORK_PARTITION).await? {
            if found.value.state != WorkState::Queued || found.value.updated_at > cutoff {
                continue;
            }
            let Some(item) = WorkItem::from_message(&found.value.item) else { continue };
            let mut touched = found.value.clone();
            touched.updated_at = unix_now();
            touched.reason = format!("queued again: its queue message was lost (was: {})", found.value.reason);
            match self.store.replace(&work_key(&id), &touched, &found.etag).await {
                Ok(_) => {}
                // Done or tried meanwhile: its message was not lost.
                Err(StoreError::Changed | StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
            self.queue.send(&item.to_message(), None).await?;
            tracing::warn!(work_id = %id, outcome = "requeued", "queued work had lost its queue message; queued again");
            requeued.push(id);
        }
        Ok(requeued)
    }

    /// Every record of the ledger: queued, dead-lettered and uncertain work.
    pub async fn list(&self) -> Result<Vec<(String, WorkRecord)>, StoreError> {
        Ok(self.store.rows::<WorkRecord>(WORK_PARTITION).await?.into_iter().map(|(id, r)| (id, r.value)).collect())
    }

    /// Puts a dead-lettered, uncertain or queued item back on the queue; a replay of finished work (no record)
    /// does nothing.
    pub async fn replay(&self, id: &str) -> Result<Replay, WorkError> {
        let key = work_key(id);
        let Some(found) = self.store.get::<WorkRecord>(&key).await? else { return Ok(Replay::NothingToDo) };
        let Some(item) = WorkItem::from_message(&found.value.item) else { return Ok(Replay::Unreadable) };
        self.rearm(&item).await?;
        let mut queued = found.value.clone();
        queued.state = WorkState::Queued;
        queued.reason = "replayed by an operator".into();
        queued.updated_at = unix_now();
        match self.store.replace(&key, &queued, &found.etag).await {
            Ok(_) => {}
            // Changed meanwhile (another replay, or the worker finished it): that writer's outcome stands.
            Err(StoreError::Changed | StoreError::NotFound) => return Ok(Replay::NothingToDo),
            Err(e) => return Err(e.into()),
        }
        self.queue.send(&item.to_message(), None).await?;
        tracing::info!(work_id = %id, outcome = "replayed", "work put back on the queue");
        Ok(Replay::Queued)
    }

    /// What a replay must undo first so the work runs again: a set-aside action's marker becomes claimable, a
    /// set-aside close is armed again.
    async fn rearm(&self, item: &WorkItem) -> Result<(), StoreError> {
        match item {
            WorkItem::HaloAction { ticket, action } => {
                self.store
                    .update::<ActionMarker, _>(&action_key(*ticket, *action), |m| {
                        let set_aside = matches!(m.state, MarkerState::DeadLettered | MarkerState::Sending);
                        if set_aside {
                            *m = ActionMarker { state: MarkerState::Reserved, claim: Claim::released() };
                        }
                        set_aside
                    })
                    .await?;
            }
            WorkItem::HaloClose { ticket } => {
                self.store
                    .update::<TicketRecord, _>(&ticket_key(*ticket), |r| {
                        let closed = r.close == CloseState::Closed;
                        if closed {
                            r.close = CloseState::Open;
                            r.close_claim = Claim::released();
                        }
                        closed
                    })
                    .await?;
            }
            WorkItem::CfEvent { .. } | WorkItem::HaloTicket { .. } => {}
        }
        Ok(())
    }

    /// Writes the record in `state`: a new record, or the existing one updated (its first time and, unless a new
    /// one is given, its body kept). Most work is new: the insert is tried first.
    async fn write(
        &self,
        item: &WorkItem,
        body: Option<&str>,
        state: WorkState,
        reason: &str,
        failed_attempts: u32,
    ) -> Result<(), StoreError> {
        let key = work_key(&item.id());
        let now = unix_now();
        let fresh = WorkRecord {
            item: item.to_message(),
            state,
            attempts: failed_attempts,
            reason: reason.to_string(),
            first_at: now,
            updated_at: now,
            body: Chunks(body.unwrap_or_default().to_string()),
        };
        match self.store.insert(&key, &fresh).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
        let updated = self
            .store
            .update::<WorkRecord, _>(&key, |r| {
                r.state = state;
                r.reason = reason.to_string();
                r.attempts += failed_attempts;
                r.updated_at = now;
                if let Some(body) = body {
                    r.body = Chunks(body.to_string());
                }
                true
            })
            .await?;
        match updated {
            Some(_) => Ok(()),
            // Deleted between the insert and the read (the work just completed): write it anew.
            None => self.store.insert(&key, &fresh).await.map(drop).or_else(|e| match e {
                StoreError::Conflict => Ok(()),
                e => Err(e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::MemoryQueue;
    use crate::store::MemoryTable;

    fn ledger() -> (Ledger, Arc<MemoryQueue>, Store) {
        let store = Store::new(Arc::new(MemoryTable::default()));
        let queue = Arc::new(MemoryQueue::default());
        (Ledger::new(store.clone(), queue.clone()), queue, store)
    }

    #[test]
    fn work_ids_are_stable_and_distinct() {
        let cf = WorkItem::CfEvent { reference: "cf|s|1".into(), event_id: "e1".into(), signed_at: 1 };
        assert_eq!(cf.id(), cf.clone().id());
        assert_ne!(cf.id(), WorkItem::CfEvent { reference: "cf|s|1".into(), event_id: "e2".into(), signed_at: 1 }.id());
        assert_eq!(WorkItem::HaloAction { ticket: 7, action: 3 }.id(), "halo-7-act-3");
        let back = WorkItem::from_message(&WorkItem::HaloClose { ticket: 7 }.to_message());
        assert_eq!(back, Some(WorkItem::HaloClose { ticket: 7 }));
        assert_eq!(WorkItem::from_message("{\"kind\":\"other\"}"), None);
    }

    #[tokio::test]
    async fn queued_work_whose_message_was_lost_is_queued_again_once_and_nothing_else_is() {
        let (ledger, queue, store) = ledger();
        let lost = WorkItem::HaloTicket { ticket: 7 };
        let recent = WorkItem::HaloTicket { ticket: 8 };
        let dead = WorkItem::HaloClose { ticket: 9 };
        ledger.enqueue(&lost, None, "Halo answered 503", None).await.unwrap();
        ledger.enqueue(&recent, None, "Halo answered 503", None).await.unwrap();
        ledger.dead_letter(&dead, None, "ContraForce answered 404").await.unwrap();
        // The lost item and the dead letter were last touched two hours ago.
        for item in [&lost, &dead] {
            store
                .update::<WorkRecord, _>(&work_key(&item.id()), |r| {
                    r.updated_at -= 7200;
                    true
                })
                .await
                .unwrap();
        }
        queue.sent.lock().unwrap().clear();
        let requeued = ledger.requeue_lost(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(requeued, [lost.id()], "only queued work, and only when untouched past the window");
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent, [(lost.to_message(), None)]);
        let record = store.get::<WorkRecord>(&work_key(&lost.id())).await.unwrap().unwrap().value;
        assert!(record.reason.starts_with("queued again") && record.state == WorkState::Queued, "{record:?}");
        assert!(ledger.requeue_lost(Duration::from_secs(3600)).await.unwrap().is_empty(), "touched: not again");
    }

    #[tokio::test]
    async fn queued_work_is_recorded_before_it_is_sent_and_goes_when_done() {
        let (ledger, queue, _) = ledger();
        let item = WorkItem::CfEvent { reference: "cf|s|1".into(), event_id: "e1".into(), signed_at: 1 };
        let id = ledger.enqueue(&item, Some("{\"body\":1}"), "Halo answered 503", None).await.unwrap();
        assert_eq!(queue.sent.lock().unwrap().len(), 1);
        assert_eq!(ledger.body(&item).await.unwrap().as_deref(), Some("{\"body\":1}"));
        let listed = ledger.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].0.as_str(), listed[0].1.state), (id.as_str(), WorkState::Queued));
        ledger.completed(&item).await.unwrap();
        assert!(ledger.list().await.unwrap().is_empty());
        assert_eq!(ledger.replay(&id).await.unwrap(), Replay::NothingToDo);
        assert_eq!(queue.sent.lock().unwrap().len(), 1, "a replay of finished work sends nothing");
    }

    #[tokio::test]
    async fn nothing_is_reported_queued_when_the_queue_refuses() {
        let (ledger, queue, _) = ledger();
        queue.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let item = WorkItem::HaloTicket { ticket: 5 };
        assert!(matches!(ledger.enqueue(&item, None, "r", None).await, Err(WorkError::Queue(_))));
        let too_big = "x".repeat(500_000);
        assert!(matches!(ledger.enqueue(&item, Some(&too_big), "r", None).await, Err(WorkError::TooLarge(_))));
    }

    #[tokio::test]
    async fn a_replay_rearms_a_dead_lettered_action_and_keeps_the_body() {
        let (ledger, queue, store) = ledger();
        let item = WorkItem::HaloAction { ticket: 9, action: 4 };
        store
            .insert(&action_key(9, 4), &ActionMarker { state: MarkerState::DeadLettered, claim: Claim::released() })
            .await
            .unwrap();
        let id = ledger.dead_letter(&item, None, "ContraForce answered 404").await.unwrap();
        ledger.dead_letter(&item, None, "ContraForce answered 404").await.unwrap();
        let record = &ledger.list().await.unwrap()[0].1;
        assert_eq!((record.state, record.attempts), (WorkState::DeadLettered, 2));
        assert!(queue.sent.lock().unwrap().is_empty(), "a dead letter is not queued");
        assert_eq!(ledger.replay(&id).await.unwrap(), Replay::Queued);
        let marker = store.get::<ActionMarker>(&action_key(9, 4)).await.unwrap().unwrap().value;
        assert_eq!(marker.state, MarkerState::Reserved);
        assert_eq!(queue.sent.lock().unwrap()[0].0, item.to_message());
        assert_eq!(ledger.list().await.unwrap()[0].1.state, WorkState::Queued);
    }
}
