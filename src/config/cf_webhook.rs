//! The cf-webhook direction's settings (ContraForce → Halo; no secrets).

use super::read::{boolean, pairs, positive_id, positive_seconds, seconds, Reader};
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

/// A Halo client, and optionally one of its sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTarget {
    pub client_id: i64,
    pub site_id: Option<i64>,
}

impl ClientTarget {
    /// `12` (client 12) or `12/3` (client 12, site 3).
    fn parse(value: &str) -> Result<Self, String> {
        match value.split_once('/') {
            None => Ok(ClientTarget { client_id: positive_id(value)?, site_id: None }),
            Some((client, site)) => Ok(ClientTarget {
                client_id: positive_id(client.trim())?,
                site_id: Some(positive_id(site.trim()).map_err(|e| format!("site: {e}"))?),
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CfWebhookConfig {
    pub max_skew: Duration,
    pub process_test_events: bool,
    pub ticket_type_id: i64,
    pub default_client_id: i64,
    /// Halo client (and site) by lower-cased CF account id.
    pub client_map: HashMap<String, ClientTarget>,
    /// Match an unmapped account's name against Halo's clients (exactly, ignoring case and spacing).
    pub match_client_by_name: bool,
    /// How long a name match (or its absence) is kept in Table Storage before Halo is asked again.
    pub client_name_ttl: Duration,
    /// ContraForce workspace by lower-cased CF account id (unmapped: `CF_WORKSPACE_ID`).
    pub workspace_map: HashMap<String, String>,
    pub priorities: PriorityMap,
    pub note_outcome: NoteOutcome,
}

impl CfWebhookConfig {
    /// The client `HALO_CLIENT_MAP` names for an account.
    pub fn mapped_client(&self, account_id: Option<&str>) -> Option<ClientTarget> {
        account_id.and_then(|a| self.client_map.get(&a.trim().to_lowercase())).copied()
    }

    /// The workspace `CF_WORKSPACE_MAP` names for an account.
    pub fn mapped_workspace(&self, account_id: Option<&str>) -> Option<&str> {
        account_id.and_then(|a| self.workspace_map.get(&a.trim().to_lowercase())).map(String::as_str)
    }
}

/// Account ids compared case-insensitively; one account mapped twice is a mistake, not a choice.
fn by_account<T>(entries: Vec<(String, T)>) -> Result<HashMap<String, T>, String> {
    let mut map = HashMap::new();
    for (account, value) in entries {
        if map.insert(account.to_lowercase(), value).is_some() {
            return Err(format!("`{account}` is mapped twice"));
        }
    }
    Ok(map)
}

pub(super) fn read(mut r: Reader<'_>) -> Availability<CfWebhookConfig> {
    let max_skew = r.optional_as(names::CF_MAX_SKEW_SECONDS, seconds);
    let process_test_events = r.optional_as(names::CF_PROCESS_TEST_EVENTS, boolean);
    let ticket_type_id = r.required_as(names::HALO_DEFAULT_TICKETTYPE_ID, positive_id);
    let default_client_id = r.required_as(names::HALO_DEFAULT_CLIENT_ID, positive_id);
    let client_map = match r.optional(names::HALO_CLIENT_MAP) {
        None => Some(HashMap::new()),
        value => r.parse(names::HALO_CLIENT_MAP, value, |v| by_account(pairs(v, ClientTarget::parse)?)),
    };
    let match_client_by_name = r.optional_as(names::HALO_CLIENT_MATCH_BY_NAME, boolean);
    let client_name_ttl = r.optional_as(names::HALO_CLIENT_NAME_CACHE_SECONDS, positive_seconds);
    let workspace_map = match r.optional(names::CF_WORKSPACE_MAP) {
        None => Some(HashMap::new()),
        value => r.parse(names::CF_WORKSPACE_MAP, value, |v| by_account(pairs(v, |w| Ok(w.to_string()))?)),
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
            match_client_by_name: match_client_by_name?,
            client_name_ttl: client_name_ttl?,
            workspace_map: workspace_map?,
            priorities: priorities?,
            note_outcome: note_outcome?,
        })
    })
}
