//! The records the bridge keeps, and where each lives.
//!
//! Per incident (partition `inc-<digest(ref)>`): the incident claim/link (`incident`), one record per event id
//! (`evt-<digest(event id)>`), one per signed delivery that became a note (`dlv-<delivery id>`), and one per note
//! the bridge wrote on its ticket (`own-<action id>`). Per Halo ticket (partition `tkt-<id>`): the sync state (`ticket`) and one marker per
//! forwarded or own action (`act-<id>`). The work ledger (partition `work`): one record per piece of durable work
//! that is queued, dead-lettered or of uncertain outcome, keyed by its work id.

use super::claim::{Guarded, Stage};
use super::{digest, Key};
use crate::domain::{unix_now, EventId, ExternalRef, TicketId};
use serde::{Deserialize, Serialize};

pub fn incident_key(reference: &ExternalRef) -> Key {
    Key { partition: format!("inc-{}", digest(&reference.to_string())), row: "incident".into() }
}

pub fn event_key(reference: &ExternalRef, event_id: &EventId) -> Key {
    Key {
        partition: format!("inc-{}", digest(&reference.to_string())),
        row: format!("evt-{}", digest(event_id.as_str())),
    }
}

/// One signed delivery (`cf::signature::delivery_id`), in its incident's partition.
pub fn delivery_key(reference: &ExternalRef, delivery: &str) -> Key {
    Key { partition: format!("inc-{}", digest(&reference.to_string())), row: format!("dlv-{delivery}") }
}

/// The row of a ticket's sync state in its partition.
pub const TICKET_ROW: &str = "ticket";

pub fn ticket_key(ticket_id: TicketId) -> Key {
    Key { partition: format!("tkt-{ticket_id}"), row: TICKET_ROW.into() }
}

pub fn action_key(ticket_id: TicketId, action_id: i64) -> Key {
    Key { partition: format!("tkt-{ticket_id}"), row: format!("act-{action_id:012}") }
}

/// The row prefix of the bridge's own notes in an incident's partition.
pub const OWN_NOTE_ROW: &str = "own-";

/// A Halo action the bridge wrote itself (a later event's private note), in the partition of `incident` (its
/// incident's key): marked in the same write that settles the event, and read with the incident's record when
/// the halo-webhook verifies the link, so it is never forwarded back.
pub fn own_note_key(incident: &Key, action_id: i64) -> Key {
    Key { partition: incident.partition.clone(), row: format!("{OWN_NOTE_ROW}{action_id:012}") }
}

/// A claim on some work, so that only one delivery does it at a time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Claim {
    /// A random token of the request holding the claim.
    pub owner: String,
    #[serde(with = "crate::wire::unix_string")]
    pub since: i64,
}

impl Claim {
    pub fn new(owner: &str) -> Self {
        Claim { owner: owner.to_string(), since: unix_now() }
    }

    /// Released (`since == 0`) or older than `ttl`: another delivery may take it over.
    pub(crate) fn is_stale(&self, ttl_secs: i64) -> bool {
        self.since == 0 || unix_now() - self.since > ttl_secs
    }

    pub(crate) fn released() -> Self {
        Claim { owner: String::new(), since: 0 }
    }

    /// Released, but not to be taken over for `settle_secs` yet: after an uncertain call, the upstream may still be
    /// carrying it out, and the next attempt's lookup must see its result.
    pub(crate) fn settling(ttl_secs: i64, settle_secs: i64) -> Self {
        Claim { owner: String::new(), since: unix_now() - ttl_secs + settle_secs }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum IncidentState {
    /// A delivery is creating the ticket (or crashed doing so: see `lookup_needed`).
    Claimed,
    /// The ticket exists: `ticket_id`.
    Created,
}

/// One incident and its Halo ticket: the source of truth for "exactly one ticket per incident".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IncidentRecord {
    pub reference: ExternalRef,
    pub state: IncidentState,
    #[serde(default)]
    pub ticket_id: Option<TicketId>,
    #[serde(flatten)]
    pub claim: Claim,
    /// A create may have reached Halo without us seeing its answer: look in Halo before creating again.
    #[serde(default)]
    pub lookup_needed: bool,
    #[serde(default)]
    pub created_by_event: Option<String>,
    /// The signed delivery that created the ticket: sent again under another event id, it is a duplicate.
    #[serde(default)]
    pub created_by_delivery: Option<String>,
    /// The Halo client the ticket was created for, and how it was chosen (`map`, `name`, `default`, or
    /// `default: …` with the reason a name match was not used).
    #[serde(default)]
    pub client_id: Option<i64>,
    #[serde(default)]
    pub routed_by: Option<String>,
    /// The ContraForce workspace the incident belongs to, when routed (`CF_WORKSPACE_MAP`).
    #[serde(default)]
    pub workspace_id: Option<String>,
}

impl IncidentRecord {
    /// A record in `state` with no claim held and nothing else known yet.
    pub fn new(reference: ExternalRef, state: IncidentState, ticket_id: Option<TicketId>) -> Self {
        IncidentRecord {
            reference,
            state,
            ticket_id,
            claim: Claim::released(),
            lookup_needed: false,
            created_by_event: None,
            created_by_delivery: None,
            client_id: None,
            routed_by: None,
            workspace_id: None,
        }
    }
}

/// A signed delivery that became a note, and under which event id: the same delivery under another id is a replay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryRecord {
    pub event_id: String,
    pub ticket_id: TicketId,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum EventState {
    /// A delivery is adding the note for this event (or crashed doing so).
    Pending,
    /// Processed: a redelivery is a duplicate.
    Done,
}

/// The outcome of one event id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EventRecord {
    pub event_id: String,
    pub state: EventState,
    #[serde(default)]
    pub ticket_id: Option<TicketId>,
    #[serde(flatten)]
    pub claim: Claim,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum CloseState {
    Open,
    /// A delivery is mirroring the close (idempotent, so a stale claim is simply retried).
    Closing,
    /// The current close has reached ContraForce; a reopen sets `Open` again.
    Closed,
}

/// Sync state of one Halo ticket linked to an incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TicketRecord {
    pub reference: ExternalRef,
    /// Created by the cf-webhook direction: its first action (the creation) is not echoed back.
    pub created_by_bridge: bool,
    /// Every action up to this id has been handled (forwarded, skipped, or marked).
    pub last_action_id: i64,
    /// The ticket's `lastactiondate` when every action it then had was handled: while Halo still answers the same
    /// date, a webhook has no action to read.
    #[serde(default)]
    pub last_action_date: Option<String>,
    pub close: CloseState,
    #[serde(flatten)]
    pub close_claim: Claim,
    /// The ContraForce workspace of the incident when it was routed to one (`CF_WORKSPACE_MAP`); `None` (and every
    /// link made before routing existed): `CF_WORKSPACE_ID`.
    #[serde(default)]
    pub workspace_id: Option<String>,
}

impl TicketRecord {
    pub fn new(reference: ExternalRef, created_by_bridge: bool) -> Self {
        TicketRecord {
            reference,
            created_by_bridge,
            last_action_id: 0,
            last_action_date: None,
            close: CloseState::Open,
            close_claim: Claim::released(),
            workspace_id: None,
        }
    }

    /// Where the incident's comments and close go.
    pub fn at(&self) -> crate::domain::IncidentAt<'_> {
        crate::domain::IncidentAt { reference: &self.reference, workspace: self.workspace_id.as_deref() }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum MarkerState {
    /// Surely not posted (released after a post that did not land, or by a replay): the next webhook takes it
    /// over and posts it.
    Reserved,
    /// Claimed and being posted to ContraForce (inserted just before the post), or the post's outcome is unknown
    /// (a stale claim): not posted again.
    Sending,
    /// Posted to ContraForce.
    Sent,
    /// Written by the bridge itself (a private note): never forwarded. Older versions of the bridge kept this
    /// marker in the ticket's partition; it is now an `own_note_key` row in the incident's.
    Own,
    /// ContraForce refused it for good: a dead letter holds it, and it does not block the actions after it.
    DeadLettered,
}

/// One Halo action the bridge has dealt with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ActionMarker {
    pub state: MarkerState,
    #[serde(flatten)]
    pub claim: Claim,
}

/// `Guarded` for a record: which field is its claim, and the stage of its work.
macro_rules! guarded {
    ($record:ty, $claim:ident, |$r:ident| $stage:expr) => {
        impl Guarded for $record {
            fn claim(&self) -> &Claim {
                &self.$claim
            }
            fn claim_mut(&mut self) -> &mut Claim {
                &mut self.$claim
            }
            fn stage(&self) -> Stage {
                let $r = self;
                $stage
            }
        }
    };
}

guarded!(IncidentRecord, claim, |r| match r.state {
    IncidentState::Claimed => Stage::Open,
    IncidentState::Created => Stage::Done,
});

guarded!(EventRecord, claim, |r| match r.state {
    EventState::Pending => Stage::Open,
    EventState::Done => Stage::Done,
});

// The close of a ticket is the work its record guards (the close call is idempotent: a stale claim is retried).
guarded!(TicketRecord, close_claim, |r| match r.close {
    CloseState::Open | CloseState::Closing => Stage::Open,
    CloseState::Closed => Stage::Done,
});

guarded!(ActionMarker, claim, |r| match r.state {
    MarkerState::Reserved => Stage::Open,
    MarkerState::Sending => Stage::Unknown,
    MarkerState::Sent | MarkerState::Own | MarkerState::DeadLettered => Stage::Done,
});

/// The cached Halo client match of one customer name (normalized: trimmed, spacing collapsed, lower case).
pub fn client_name_key(normalized_name: &str) -> Key {
    Key { partition: "client-name".into(), row: digest(normalized_name) }
}

/// What Halo's clients said about one name, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ClientNameRecord {
    pub name: String,
    /// The one client of exactly this name (`None`: none or several).
    #[serde(default)]
    pub client_id: Option<i64>,
    /// How many active clients carry exactly this name.
    pub matches: u32,
    #[serde(with = "crate::wire::unix_string")]
    pub fetched_at: i64,
}

/// The reconcile's one record: its lease, where the last run stopped, and until when Halo asked it to wait.
pub fn reconcile_key() -> Key {
    Key { partition: "reconcile".into(), row: "state".into() }
}

/// The reconcile's state. The lease is a claim (`store::claim`): one run at a time across instances, and a run
/// that died holding it is taken over once the claim is stale.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ReconcileRecord {
    /// The watch list is walked in ticket-id order: a run cut short resumes after this ticket id (0: from the
    /// start).
    pub cursor: TicketId,
    /// Halo's `Retry-After` after a 429: no run calls Halo before this time (Unix seconds).
    #[serde(with = "crate::wire::unix_string")]
    pub not_before: i64,
    #[serde(flatten)]
    pub lease: Claim,
}

impl Default for Claim {
    fn default() -> Self {
        Claim::released()
    }
}

// The reconcile's work is never done: its lease is always claimable once released or stale.
guarded!(ReconcileRecord, lease, |_r| Stage::Open);

/// The partition of the work ledger.
pub const WORK_PARTITION: &str = "work";

pub fn work_key(work_id: &str) -> Key {
    Key { partition: WORK_PARTITION.into(), row: work_id.to_string() }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum WorkState {
    /// On the queue: the queue trigger will do it (and delete this record).
    Queued,
    /// Refused for good, or retries exhausted: waits for an operator's `handler replay`.
    DeadLettered,
    /// May have been done (an answer lost after a create): never repeated by itself; an operator checks and
    /// replays it, or deletes it.
    Uncertain,
}

/// One piece of durable work. `item` is the work item (`work::WorkItem`, as JSON); `body` the verified delivery it
/// needs (a ContraForce event), stored over as many properties as it takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct WorkRecord {
    pub item: String,
    pub state: WorkState,
    /// Attempts that failed (inline and from the queue).
    pub attempts: u32,
    /// Why it is queued, dead-lettered or uncertain (an operator's words: never a secret or an upstream body).
    pub reason: String,
    #[serde(with = "crate::wire::unix_string")]
    pub first_at: i64,
    #[serde(with = "crate::wire::unix_string")]
    pub updated_at: i64,
    #[serde(flatten)]
    pub body: Chunks,
}

/// Longest text one property holds: 30,000 UTF-8 bytes are at most 30,000 UTF-16 units, inside the 64 KiB limit of
/// a string property.
const CHUNK_BYTES: usize = 30_000;
/// Chunks one entity holds (1 MiB per entity): a body beyond 450 KB cannot be queued (answered 503).
pub const MAX_CHUNKS: usize = 15;

/// Text too long for one Table property, stored as `Body0`, `Body1`, ... (none when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks(pub String);

impl Chunks {
    fn parts(&self) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut rest = self.0.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(CHUNK_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            parts.push(&rest[..end]);
            rest = &rest[end..];
        }
        parts
    }

    /// Whether the text fits one entity.
    pub fn fits(text: &str) -> bool {
        Chunks(text.to_string()).parts().len() <= MAX_CHUNKS
    }
}

impl Serialize for Chunks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let parts = self.parts();
        let mut map = serializer.serialize_map(Some(parts.len()))?;
        for (n, part) in parts.iter().enumerate() {
            map.serialize_entry(&format!("Body{n}"), part)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Chunks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Chunks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("Body0, Body1, ... properties")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Chunks, A::Error> {
                let mut parts = std::collections::BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: serde_json::Value = map.next_value()?;
                    if let (Some(n), serde_json::Value::String(text)) =
                        (key.strip_prefix("Body").and_then(|n| n.parse::<usize>().ok()), value)
                    {
                        parts.insert(n, text);
                    }
                }
                Ok(Chunks(parts.into_values().collect()))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_round_trips_through_chunk_properties() {
        let body = format!("{}é{}", "a".repeat(CHUNK_BYTES - 1), "b".repeat(CHUNK_BYTES + 5));
        let record = WorkRecord {
            item: "{}".into(),
            state: WorkState::Queued,
            attempts: 0,
            reason: "r".into(),
            first_at: 1,
            updated_at: 2,
            body: Chunks(body.clone()),
        };
        let props = serde_json::to_value(&record).unwrap();
        let chunks: Vec<&str> =
            props.as_object().unwrap().keys().filter(|k| k.starts_with("Body")).map(String::as_str).collect();
        assert_eq!(chunks, ["Body0", "Body1", "Body2"]);
        for (_, v) in props.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("Body")) {
            assert!(v.as_str().unwrap().len() <= CHUNK_BYTES);
        }
        let back: WorkRecord = serde_json::from_value(props).unwrap();
        assert_eq!(back, record);
        assert!(Chunks::fits(&body));
        assert!(!Chunks::fits(&"x".repeat(CHUNK_BYTES * MAX_CHUNKS + 1)));
    }
}
