//! The halo-webhook direction's settings (Halo → ContraForce; no secrets).

use super::read::{base_url, integer_in, list, pairs, positive_id, positive_seconds, Reader};
use crate::availability::Availability;
use crate::settings as names;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HaloWebhookConfig {
    pub closed_status_ids: Vec<i64>,
    pub integration_agent_id: Option<i64>,
    pub integration_application: Option<String>,
    pub cf_api_base_url: String,
    pub cf_client_id: String,
    pub cf_workspace_id: String,
    pub close_classification: String,
    pub close_classification_reason: String,
    pub reconcile: ReconcileConfig,
    /// The decision each closing status stands for (`HALO_CLOSE_DECISION_MAP`).
    pub decisions: HashMap<i64, Decision>,
    /// A custom field holding the decision, which wins over the status (`HALO_CLASSIFICATION_FIELD_ID`).
    pub classification_field_id: Option<i64>,
}

/// The analyst's decision as ContraForce takes it with a close (Sentinel's classifications and reasons:
/// docs/contraforce-contract.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub classification: String,
    /// `None`: sent without a reason (Sentinel's Undetermined has none).
    pub reason: Option<String>,
}

const CLASSIFICATIONS: [&str; 4] = ["BenignPositive", "FalsePositive", "TruePositive", "Undetermined"];
const REASONS: [&str; 4] = ["SuspiciousActivity", "SuspiciousButExpected", "IncorrectAlertLogic", "InaccurateData"];

impl Decision {
    /// `FalsePositive/IncorrectAlertLogic` or `Undetermined`, names compared without case, written as ContraForce
    /// spells them.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (classification, reason) = match value.split_once('/') {
            Some((c, r)) => (c.trim(), Some(r.trim())),
            None => (value.trim(), None),
        };
        let known = |name: &str, all: &[&'static str]| all.iter().find(|k| k.eq_ignore_ascii_case(name)).copied();
        let classification = known(classification, &CLASSIFICATIONS)
            .ok_or_else(|| format!("`{classification}` is not one of {}", CLASSIFICATIONS.join(", ")))?;
        let reason = match reason {
            None => None,
            Some(r) => Some(known(r, &REASONS).ok_or_else(|| format!("`{r}` is not one of {}", REASONS.join(", ")))?),
        };
        Ok(Decision { classification: classification.to_string(), reason: reason.map(str::to_string) })
    }
}

/// The reconcile timer's budget (its schedule is the host's: `RECONCILE_SCHEDULE` in `reconcile/function.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// The most Halo calls one run makes.
    pub halo_calls: u32,
    /// Queued work untouched this long has lost its queue message and is queued again.
    pub requeue_after: Duration,
}

/// The most a run may spend: a hosted tenant's whole 5-minute allowance.
const MAX_RECONCILE_CALLS: i64 = 300;

fn halo_calls(value: &str) -> Result<u32, String> {
    integer_in(1..=MAX_RECONCILE_CALLS)(value).map(|n| n as u32)
}

pub(super) fn read(mut r: Reader<'_>) -> Availability<HaloWebhookConfig> {
    let closed_status_ids = r.optional_as(names::HALO_CLOSED_STATUS_ID, |v| list(v, positive_id));
    let integration_agent_id = match r.optional(names::HALO_INTEGRATION_AGENT_ID) {
        None => Some(None),
        value => r.parse(names::HALO_INTEGRATION_AGENT_ID, value, positive_id).map(Some),
    };
    let integration_application = r.optional(names::HALO_INTEGRATION_APPLICATION).map(str::to_string);
    let cf_api_base_url = r.required_as(names::CF_API_BASE_URL, base_url);
    let cf_client_id = r.required(names::CF_SERVICE_ACCOUNT_CLIENT_ID).map(str::to_string);
    let cf_workspace_id = r.required(names::CF_WORKSPACE_ID).map(str::to_string);
    let close_classification = r.optional(names::CF_CLOSE_CLASSIFICATION).map(str::to_string);
    let close_classification_reason = r.optional(names::CF_CLOSE_CLASSIFICATION_REASON).map(str::to_string);
    let decisions = match r.optional(names::HALO_CLOSE_DECISION_MAP) {
        None => Some(HashMap::new()),
        value => r.parse(names::HALO_CLOSE_DECISION_MAP, value, |v| {
            let mut map = HashMap::new();
            for (status, decision) in pairs(v, Decision::parse)? {
                let id = positive_id(&status).map_err(|e| format!("`{status}`: {e}"))?;
                if map.insert(id, decision).is_some() {
                    return Err(format!("status {id} is mapped twice"));
                }
            }
            Ok(map)
        }),
    };
    let classification_field_id = match r.optional(names::HALO_CLASSIFICATION_FIELD_ID) {
        None => Some(None),
        value => r.parse(names::HALO_CLASSIFICATION_FIELD_ID, value, positive_id).map(Some),
    };
    let reconcile_calls = r.optional_as(names::RECONCILE_HALO_CALLS, halo_calls);
    let requeue_after = r.optional_as(names::RECONCILE_REQUEUE_AFTER_SECONDS, positive_seconds);
    r.finish(|| {
        Some(HaloWebhookConfig {
            closed_status_ids: closed_status_ids?,
            integration_agent_id: integration_agent_id?,
            integration_application,
            cf_api_base_url: cf_api_base_url?,
            cf_client_id: cf_client_id?,
            cf_workspace_id: cf_workspace_id?,
            close_classification: close_classification?,
            close_classification_reason: close_classification_reason?,
            decisions: decisions?,
            classification_field_id: classification_field_id?,
            reconcile: ReconcileConfig { halo_calls: reconcile_calls?, requeue_after: requeue_after? },
        })
    })
}
