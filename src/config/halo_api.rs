//! The Halo API client's settings (both directions use it). The client secret lives in `secrets`.

use super::read::{base_url, integer_in, positive_id, Reader};
use crate::availability::Availability;
use crate::domain::{RefLocation, LEGACY_REFERENCE, SUPPLIER_REFERENCE};
use crate::settings as names;

#[derive(Debug, Clone)]
pub struct HaloApiConfig {
    pub auth_url: String,
    pub api_base_url: String,
    pub client_id: String,
    pub tenant: Option<String>,
    pub scope: String,
    pub reference: RefLocation,
    /// The client-side limit: at most `rate_limit` calls started in any `rate_window`.
    pub rate_limit: u32,
    pub rate_window: std::time::Duration,
}

pub(super) fn read(mut r: Reader<'_>) -> Availability<HaloApiConfig> {
    let auth_url = r.required_as(names::HALO_AUTH_URL, base_url);
    let api_base_url = r.required_as(names::HALO_API_BASE_URL, base_url);
    let client_id = r.required(names::HALO_CLIENT_ID).map(str::to_string);
    let tenant = r.optional(names::HALO_TENANT).map(str::to_string);
    let scope = r.optional(names::HALO_SCOPE).unwrap_or("all").to_string();
    let reference = ref_location(&mut r);
    let rate_limit = r.optional_as(names::HALO_RATE_LIMIT, integer_in(1..=10_000));
    let rate_window = r.optional_as(names::HALO_RATE_WINDOW_SECONDS, integer_in(1..=3_600));
    r.finish(|| {
        Some(HaloApiConfig {
            auth_url: auth_url?,
            api_base_url: api_base_url?,
            client_id: client_id?,
            tenant,
            scope,
            reference: reference?,
            rate_limit: rate_limit? as u32,
            rate_window: std::time::Duration::from_secs(rate_window? as u64),
        })
    })
}

fn ref_location(r: &mut Reader<'_>) -> Option<RefLocation> {
    if r.optional(names::HALO_EXTERNAL_REF_FIELD_ID).is_some() {
        return r.optional_as(names::HALO_EXTERNAL_REF_FIELD_ID, positive_id).map(RefLocation::CustomField);
    }
    r.optional_as(names::HALO_EXTERNAL_REF_FIELD, ref_field)
}

/// The ticket field the reference is written to. `thirdpartynumber` is refused: Halo's ticket schema has no such
/// field, so Halo drops it, and the lookup after an uncertain create could never find the ticket (a duplicate).
fn ref_field(field: &str) -> Result<RefLocation, String> {
    match field.to_ascii_lowercase().as_str() {
        SUPPLIER_REFERENCE => Ok(RefLocation::SupplierReference),
        LEGACY_REFERENCE => Err(format!(
            "`{LEGACY_REFERENCE}` cannot be written: it is not a field of Halo's ticket schema, so Halo drops it and \
             a ticket whose create answer was lost could never be found again (a second ticket would be created). \
             Tickets of Logic App 01 that carry it are still read. Use `{SUPPLIER_REFERENCE}` (the default), or a \
             custom field with {}",
            names::HALO_EXTERNAL_REF_FIELD_ID
        )),
        other => Err(format!(
            "`{other}` is not {SUPPLIER_REFERENCE}; for a custom field set {}",
            names::HALO_EXTERNAL_REF_FIELD_ID
        )),
    }
}
