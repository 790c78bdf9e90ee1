//! Halo → ContraForce, exactly once: every public Halo action reaches ContraForce once as a comment, oldest first,
//! and each close is mirrored once, across restarts, retries and concurrent webhooks.
//!
//! Per ticket, Table Storage holds the highest action id handled (it only moves forward), a marker per forwarded
//! action (inserted before the comment is posted, so two concurrent webhooks cannot both post it), and the close
//! state (claimed with an ETag before the close is sent).

use crate::app::Context;
use crate::cf::client::{CfClient, Close};
use crate::config::InboundConfig;
use crate::domain::{ExternalRef, TicketId};
use crate::halo::model::{Action, Ticket};
use crate::halo::text::{cap, html_to_text, MAX_COMMENT_CHARS};
use crate::store::{
    action_key, ticket_key, ActionMarker, Claim, CloseState, Etag, Key, MarkerState, StoreError, TicketRecord,
};
use crate::upstream::UpstreamError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    Ignored(&'static str),
    Processed { forwarded: usize, closed: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error(transparent)]
    Halo(UpstreamError),
    #[error(transparent)]
    Cf(UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl InboundError {
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            InboundError::Halo(e) | InboundError::Cf(e) => e.retry_after(),
            InboundError::Store(_) => None,
        }
    }
}

/// Bound on re-reads when claiming one action's marker races with other webhooks.
const MAX_MARKER_ATTEMPTS: usize = 10;

/// Why an action is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Private,
    ByTheBridgeApplication,
    ByTheBridgeAgent,
    TicketCreation,
    NoText,
}

/// The decision for one action, and the comment text when it is forwarded.
pub fn forwardable(action: &Action, cfg: &InboundConfig, is_bridge_creation: bool) -> Result<String, Skip> {
    if action.hiddenfromuser {
        return Err(Skip::Private);
    }
    let by_app = match (&cfg.integration_application, &action.actionby_application_id) {
        (Some(ours), Some(theirs)) => ours.trim().eq_ignore_ascii_case(theirs.trim()),
        _ => false,
    };
    if by_app {
        return Err(Skip::ByTheBridgeApplication);
    }
    if cfg.integration_agent_id.is_some() && action.who_agentid == cfg.integration_agent_id {
        return Err(Skip::ByTheBridgeAgent);
    }
    if is_bridge_creation {
        return Err(Skip::TicketCreation);
    }
    let text = match action.note_html.as_deref().filter(|h| !h.trim().is_empty()) {
        Some(html) => html_to_text(html),
        None => action.note.as_deref().unwrap_or_default().trim().to_string(),
    };
    if text.is_empty() {
        return Err(Skip::NoText);
    }
    Ok(text)
}

/// The comment ContraForce receives for a forwarded action.
pub fn comment_for(ticket_id: TicketId, action: &Action, text: &str) -> String {
    let who = action.who.as_deref().map(str::trim).filter(|w| !w.is_empty()).unwrap_or("Halo");
    format!("[Halo ticket #{ticket_id} note by {who}]\n\n{}", cap(text, MAX_COMMENT_CHARS))
}

/// Whether Halo says the ticket is closed.
pub fn is_closed(ticket: &Ticket, cfg: &InboundConfig) -> bool {
    ticket.hasbeenclosed || ticket.status_id.is_some_and(|s| cfg.closed_status_ids.contains(&s))
}

enum Forwarded {
    Posted,
    AlreadyHandled,
    /// Another webhook is posting this action right now: stop here to keep the order.
    InFlightElsewhere,
}

/// Everything one webhook needs.
pub struct TicketSync<'a> {
    pub ctx: Context<'a>,
    pub cf: &'a CfClient,
    pub cfg: &'a InboundConfig,
}

impl<'a> std::ops::Deref for TicketSync<'a> {
    type Target = Context<'a>;
    fn deref(&self) -> &Context<'a> {
        &self.ctx
    }
}

impl TicketSync<'_> {
    pub async fn sync(&self, ticket_id: TicketId) -> Result<InboundOutcome, InboundError> {
        let Some(ticket) = self.halo.ticket(ticket_id, self.deadline).await.map_err(InboundError::Halo)? else {
            return Ok(InboundOutcome::Ignored("ticket not found"));
        };
        let Some(record) = self.record(&ticket).await? else {
            return Ok(InboundOutcome::Ignored("not a CF-linked ticket"));
        };
        let Some(reference) = ExternalRef::parse(&record.reference) else {
            return Ok(InboundOutcome::Ignored("not a CF-linked ticket"));
        };
        let actions = self.halo.actions(ticket_id, self.deadline).await.map_err(InboundError::Halo)?;
        let forwarded = self.forward_actions(ticket_id, &reference, &record, &actions).await?;
        let closed = self.mirror_close(&ticket, &reference, record.close).await?;
        Ok(InboundOutcome::Processed { forwarded, closed })
    }

    /// Our record of the ticket (written by cf-webhook when it created it), else one made from the reference on
    /// the ticket. `None` when the ticket is not linked to an incident.
    async fn record(&self, ticket: &Ticket) -> Result<Option<TicketRecord>, StoreError> {
        let key = ticket_key(ticket.id);
        loop {
            if let Some(found) = self.store.get::<TicketRecord>(&key).await? {
                return Ok(Some(found.value));
            }
            let Some(reference) = ticket.candidate_references(self.location).find_map(ExternalRef::parse) else {
                return Ok(None);
            };
            match self.store.insert(&key, &TicketRecord::new(reference.to_string(), false)).await {
                Ok(_) | Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn forward_actions(
        &self,
        ticket_id: TicketId,
        reference: &ExternalRef,
        record: &TicketRecord,
        actions: &[Action],
    ) -> Result<usize, InboundError> {
        // The creation of a ticket the bridge made is written by the bridge's Halo application, so the echo filter
        // skips it. Without that filter configured, fall back to skipping the ticket's first action.
        let echo_filter = self.cfg.integration_application.is_some() || self.cfg.integration_agent_id.is_some();
        let creation_id = actions.first().map(|a| a.id).filter(|_| record.created_by_bridge && !echo_filter);
        let mut handled_through = record.last_action_id;
        let mut forwarded = 0;
        let mut outcome = Ok(());
        for action in actions.iter().filter(|a| a.id > record.last_action_id) {
            if let Ok(text) = forwardable(action, self.cfg, Some(action.id) == creation_id) {
                match self.forward_once(ticket_id, reference, action, &text).await {
                    Ok(Forwarded::Posted) => forwarded += 1,
                    Ok(Forwarded::AlreadyHandled) => {}
                    Ok(Forwarded::InFlightElsewhere) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            handled_through = action.id;
        }
        // Nothing new (the common webhook: any ticket update): the record just read needs no write, and no re-read.
        if handled_through > record.last_action_id {
            self.advance(ticket_id, handled_through).await?;
        }
        outcome.map(|_| forwarded)
    }

    /// Posts one action's comment unless another webhook has, or is doing it. The marker goes Reserved (claimed,
    /// not posted) → Sending (written just before the POST) → Sent. A stale Reserved marker is taken over and
    /// posted; only a Sending marker whose post never reported back means "outcome unknown: not posted again".
    /// Every conflicting write is re-read and counts as ours when it carries our claim (a storage retry of a write
    /// that had landed).
    async fn forward_once(
        &self,
        ticket_id: TicketId,
        reference: &ExternalRef,
        action: &Action,
        text: &str,
    ) -> Result<Forwarded, InboundError> {
        let key = action_key(ticket_id, action.id);
        let etag = match self.reserve(&key, action.id).await? {
            Ok(etag) => etag,
            Err(handled) => return Ok(handled),
        };
        let sending = ActionMarker { state: MarkerState::Sending, claim: Claim::new(&self.owner) };
        let etag = match self.store.replace(&key, &sending, &etag).await {
            Ok(etag) => etag,
            Err(StoreError::Changed) => match self.store.get::<ActionMarker>(&key).await? {
                Some(m) if m.value.state == MarkerState::Sending && m.value.claim.owner == self.owner => m.etag,
                _ => return Ok(Forwarded::InFlightElsewhere),
            },
            Err(e) => return Err(e.into()),
        };
        match self.cf.add_comment(reference, &comment_for(ticket_id, action, text), self.deadline).await {
            Ok(()) => {
                self.set_marker(&key, &etag, MarkerState::Sent, action.id).await;
                Ok(Forwarded::Posted)
            }
            // An HTTP error answer (or a refused connection) means ContraForce did not store the comment: release
            // the reservation so the next webhook posts it. A timeout or a broken answer may have stored it: the
            // Sending marker stays, and the comment is not posted twice.
            Err(e) if e.status().is_some() || !e.maybe_applied() => {
                self.set_marker(&key, &etag, MarkerState::Reserved, action.id).await;
                Err(InboundError::Cf(e))
            }
            Err(e) => {
                tracing::warn!(action_id = action.id, error = %e, "comment delivery uncertain; it will not be posted again");
                Err(InboundError::Cf(e))
            }
        }
    }

    /// Claims an action for this webhook: `Ok(Ok(etag))` when ours to post, `Ok(Err(_))` when it is handled or
    /// being handled elsewhere.
    async fn reserve(&self, key: &Key, action_id: i64) -> Result<Result<Etag, Forwarded>, InboundError> {
        let reserved = ActionMarker { state: MarkerState::Reserved, claim: Claim::new(&self.owner) };
        for _ in 0..MAX_MARKER_ATTEMPTS {
            let found = match self.store.insert(key, &reserved).await {
                Ok(etag) => return Ok(Ok(etag)),
                Err(StoreError::Conflict) => self.store.get::<ActionMarker>(key).await?,
                Err(e) => return Err(e.into()),
            };
            let Some(found) = found else { continue };
            let mine = found.value.claim.owner == self.owner;
            let stale = found.value.claim.is_stale(self.claim_ttl_secs);
            match found.value.state {
                MarkerState::Sent | MarkerState::Own => return Ok(Err(Forwarded::AlreadyHandled)),
                // Our own insert, landed by a storage retry: nothing was posted yet.
                MarkerState::Reserved if mine => return Ok(Ok(found.etag)),
                MarkerState::Reserved if stale => match self.store.replace(key, &reserved, &found.etag).await {
                    Ok(etag) => return Ok(Ok(etag)),
                    Err(StoreError::Changed) => continue,
                    Err(e) => return Err(e.into()),
                },
                MarkerState::Sending if stale => {
                    tracing::warn!(action_id, "an earlier comment post has an unknown outcome; not posting it again");
                    return Ok(Err(Forwarded::AlreadyHandled));
                }
                MarkerState::Reserved | MarkerState::Sending => return Ok(Err(Forwarded::InFlightElsewhere)),
            }
        }
        Ok(Err(Forwarded::InFlightElsewhere))
    }

    /// Moves our marker on (best effort: a marker left at Sending is never posted again, one left Reserved by us
    /// is taken over once stale).
    async fn set_marker(&self, key: &Key, etag: &Etag, state: MarkerState, action_id: i64) {
        let claim = if state == MarkerState::Reserved { Claim::released() } else { Claim::new(&self.owner) };
        let marker = ActionMarker { state, claim };
        let result = match self.store.replace(key, &marker, etag).await {
            Err(StoreError::Changed) => self
                .store
                .update::<ActionMarker, _>(key, |m| {
                    let ours = m.state == MarkerState::Sending && m.claim.owner == self.owner;
                    if ours {
                        *m = marker.clone();
                    }
                    ours
                })
                .await
                .map(drop),
            other => other.map(drop),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, action_id, ?state, "could not update a forwarded action's marker");
        }
    }

    /// Moves the handled-through id forward, never backward.
    async fn advance(&self, ticket_id: TicketId, handled_through: i64) -> Result<(), StoreError> {
        self.store
            .update::<TicketRecord, _>(&ticket_key(ticket_id), |r| {
                let forward = handled_through > r.last_action_id;
                r.last_action_id = r.last_action_id.max(handled_through);
                forward
            })
            .await
            .map(drop)
    }

    /// Mirrors the ticket's close once per close; a reopen arms the next close. `read` is the close state as read
    /// at the start of this webhook.
    async fn mirror_close(
        &self,
        ticket: &Ticket,
        reference: &ExternalRef,
        read: CloseState,
    ) -> Result<bool, InboundError> {
        let key = ticket_key(ticket.id);
        let closed = is_closed(ticket, self.cfg);
        // Halo and the record as read agree (open and armed, or closed and mirrored): nothing to write or re-read.
        if (!closed && read == CloseState::Open) || (closed && read == CloseState::Closed) {
            return Ok(false);
        }
        if !closed {
            self.store
                .update::<TicketRecord, _>(&key, |r| {
                    let reopened = r.close == CloseState::Closed;
                    if reopened {
                        r.close = CloseState::Open;
                    }
                    reopened
                })
                .await?;
            return Ok(false);
        }
        let mut claimed = false;
        self.store
            .update::<TicketRecord, _>(&key, |r| {
                claimed = match r.close {
                    CloseState::Closed => false,
                    CloseState::Closing if !r.close_claim.is_stale(self.claim_ttl_secs) => false,
                    _ => true,
                };
                if claimed {
                    r.close = CloseState::Closing;
                    r.close_claim = Claim::new(&self.owner);
                }
                claimed
            })
            .await?;
        if !claimed {
            return Ok(false);
        }
        let comment = format!(
            "Closed in HaloPSA (ticket #{}, status '{}').",
            ticket.id,
            ticket.status_name.as_deref().unwrap_or("Closed")
        );
        let close = Close {
            comment: &comment,
            classification: &self.cfg.close_classification,
            reason: &self.cfg.close_classification_reason,
        };
        let result = self.cf.close(reference, &close, self.deadline).await;
        let final_state = if result.is_ok() { CloseState::Closed } else { CloseState::Open };
        self.store
            .update::<TicketRecord, _>(&key, |r| {
                let ours = r.close == CloseState::Closing && r.close_claim.owner == self.owner;
                if ours {
                    r.close = final_state;
                    r.close_claim = Claim::released();
                }
                ours
            })
            .await?;
        result.map(|_| true).map_err(InboundError::Cf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};

    fn cfg() -> InboundConfig {
        let env = Env::from_pairs([
            ("CF_API_BASE_URL", "http://127.0.0.1:1/api/v2"),
            ("CF_SERVICE_ACCOUNT_CLIENT_ID", "c"),
            ("CF_WORKSPACE_ID", "ws"),
            ("HALO_INTEGRATION_AGENT_ID", "12"),
            ("HALO_INTEGRATION_APPLICATION", "ContraForce Bridge"),
            ("HALO_CLOSED_STATUS_ID", "9,17"),
        ]);
        Config::from_env(&env).unwrap().inbound.ready().unwrap().clone()
    }

    fn action(json: serde_json::Value) -> Action {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn filters_skip_private_own_empty_and_creation_actions() {
        let c = cfg();
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x", "hiddenfromuser": true})), &c, false),
            Err(Skip::Private)
        );
        assert_eq!(
            forwardable(
                &action(serde_json::json!({"id": 1, "note": "x", "actionby_application_id": " contraforce bridge "})),
                &c,
                false
            ),
            Err(Skip::ByTheBridgeApplication)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x", "who_agentid": 12})), &c, false),
            Err(Skip::ByTheBridgeAgent)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "  ", "note_html": "<p> </p>"})), &c, false),
            Err(Skip::NoText)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x"})), &c, true),
            Err(Skip::TicketCreation)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "plain", "who_agentid": 3})), &c, false),
            Ok("plain".into())
        );
        assert_eq!(
            forwardable(
                &action(serde_json::json!({"id": 1, "note": "plain", "note_html": "<p>rich &amp; <b>bold</b></p>"})),
                &c,
                false
            ),
            Ok("rich & bold".into())
        );
    }

    #[test]
    fn the_comment_names_the_ticket_and_the_author() {
        let a = action(serde_json::json!({"id": 5, "who": "Sam"}));
        assert_eq!(comment_for(1001, &a, "hello"), "[Halo ticket #1001 note by Sam]\n\nhello");
        let a = action(serde_json::json!({"id": 5}));
        assert!(comment_for(1001, &a, "hello").starts_with("[Halo ticket #1001 note by Halo]"));
        let long = "x".repeat(MAX_COMMENT_CHARS + 10);
        assert!(comment_for(1, &a, &long).contains("(truncated"));
    }

    #[test]
    fn close_decision_uses_the_flag_or_any_configured_status() {
        let c = cfg();
        let t = |json| serde_json::from_value::<Ticket>(json).unwrap();
        assert!(is_closed(&t(serde_json::json!({"id": 1, "hasbeenclosed": true, "status_id": 2})), &c));
        assert!(is_closed(&t(serde_json::json!({"id": 1, "status_id": 17})), &c));
        assert!(!is_closed(&t(serde_json::json!({"id": 1, "status_id": 2})), &c));
        assert!(!is_closed(&t(serde_json::json!({"id": 1})), &c));
    }
}
