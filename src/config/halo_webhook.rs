//! The halo-webhook direction's settings (Halo → ContraForce; no secrets).

use super::read::{base_url, integer, list, positive_id, positive_seconds, Reader};
use crate::availability::Availability;
use crate::settings as names;
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
    match integer(value)? {
        n if (1..=MAX_RECONCILE_CALLS).contains(&n) => Ok(n as u32),
        _ => Err(format!("must be between 1 and {MAX_RECONCILE_CALLS}")),
    }
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
            reconcile: ReconcileConfig { halo_calls: reconcile_calls?, requeue_after: requeue_after? },
        })
    })
}
