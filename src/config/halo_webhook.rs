//! The halo-webhook direction's settings (Halo → ContraForce; no secrets).

use super::read::{base_url, list, positive_id, Reader};
use crate::availability::Availability;
use crate::settings as names;

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
        })
    })
}
