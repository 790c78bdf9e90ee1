//! The cf-webhook direction's settings (ContraForce → Halo; no secrets).

use super::read::{boolean, pairs, positive_id, seconds, Reader};
use crate::availability::Availability;
use crate::settings as names;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Halo priority ids by lower-cased CF severity; unknown severities take `fallback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityMap {
    by_severity: BTreeMap<String, i64>,
    fallback: i64,
}

impl PriorityMap {
    pub fn parse(value: &str) -> Result<Self, String> {
        let by_severity: BTreeMap<String, i64> =
            pairs(value, positive_id)?.into_iter().map(|(severity, id)| (severity.to_lowercase(), id)).collect();
        let fallback =
            by_severity.get("low").copied().ok_or("must map Low (it is also used for unknown severities)")?;
        Ok(PriorityMap { by_severity, fallback })
    }

    /// The priority for a severity, case-insensitively; unknown or missing severities get Low's priority.
    pub fn priority(&self, severity: Option<&str>) -> i64 {
        severity.and_then(|s| self.by_severity.get(&s.trim().to_lowercase())).copied().unwrap_or(self.fallback)
    }
}

/// The outcome of the private note: a name or, when numeric, an outcome id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOutcome {
    Name(String),
    Id(i64),
}

impl NoteOutcome {
    fn parse(value: &str) -> Result<Self, String> {
        match value.parse::<i64>() {
            Ok(id) if id > 0 => Ok(NoteOutcome::Id(id)),
            Ok(_) => Err("an outcome id must be positive".into()),
            Err(_) => Ok(NoteOutcome::Name(value.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CfWebhookConfig {
    pub max_skew: Duration,
    pub process_test_events: bool,
    pub ticket_type_id: i64,
    pub default_client_id: i64,
    /// Halo client id by lower-cased CF account id.
    pub client_map: HashMap<String, i64>,
    pub priorities: PriorityMap,
    pub note_outcome: NoteOutcome,
}

impl CfWebhookConfig {
    pub(crate) fn client_for(&self, account_id: Option<&str>) -> i64 {
        account_id
            .and_then(|a| self.client_map.get(&a.trim().to_lowercase()))
            .copied()
            .unwrap_or(self.default_client_id)
    }
}

pub(super) fn read(mut r: Reader<'_>) -> Availability<CfWebhookConfig> {
    let max_skew = r.optional_as(names::CF_MAX_SKEW_SECONDS, seconds);
    let process_test_events = r.optional_as(names::CF_PROCESS_TEST_EVENTS, boolean);
    let ticket_type_id = r.required_as(names::HALO_DEFAULT_TICKETTYPE_ID, positive_id);
    let default_client_id = r.required_as(names::HALO_DEFAULT_CLIENT_ID, positive_id);
    let client_map = match r.optional(names::HALO_CLIENT_MAP) {
        None => Some(HashMap::new()),
        value => r.parse(names::HALO_CLIENT_MAP, value, |v| {
            Ok(pairs(v, positive_id)?.into_iter().map(|(account, id)| (account.to_lowercase(), id)).collect())
        }),
    };
    let priorities = r.optional_as(names::HALO_PRIORITY_MAP, PriorityMap::parse);
    let note_outcome = r.optional_as(names::HALO_PRIVATE_NOTE_OUTCOME, NoteOutcome::parse);
    r.finish(|| {
        Some(CfWebhookConfig {
            max_skew: max_skew?,
            process_test_events: process_test_events?,
            ticket_type_id: ticket_type_id?,
            default_client_id: default_client_id?,
            client_map: client_map?,
            priorities: priorities?,
            note_outcome: note_outcome?,
        })
    })
}
