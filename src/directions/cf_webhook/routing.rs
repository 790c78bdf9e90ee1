//! Which Halo client (and site) a new incident's ticket is created for, in this order: the account's entry in
//! `HALO_CLIENT_MAP`; else, with `HALO_CLIENT_MATCH_BY_NAME`, the one active Halo client whose name is exactly the
//! event's `accountName` (case and spacing ignored), looked up once per name per `HALO_CLIENT_NAME_CACHE_SECONDS`
//! and kept in Table Storage; else the default client. A name matching no client, or several, goes to the default,
//! and says why.

use crate::cf::event::Incident;
use crate::config::{CfWebhookConfig, ClientTarget};
use crate::directions::Context;
use crate::domain::unix_now;
use crate::store::{client_name_key, ClientNameRecord, StoreError};
use crate::upstream::UpstreamError;

/// The chosen client and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub client: ClientTarget,
    pub by: RoutedBy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutedBy {
    Map,
    Name,
    Default,
    /// Name matching is on, but no active client carries the name (0) or several do (2 or more).
    DefaultNameMatched(u32),
}

impl RoutedBy {
    /// As logged and recorded.
    pub fn describe(&self) -> String {
        match self {
            RoutedBy::Map => "map".into(),
            RoutedBy::Name => "name".into(),
            RoutedBy::Default => "default".into(),
            RoutedBy::DefaultNameMatched(0) => "default: no Halo client has the account's name".into(),
            RoutedBy::DefaultNameMatched(n) => format!("default: {n} Halo clients have the account's name"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(transparent)]
    Halo(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A name as compared: trimmed, inner spacing collapsed to one space, lower case.
pub fn normalized(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

pub async fn route(ctx: &Context<'_>, cfg: &CfWebhookConfig, incident: &Incident) -> Result<Route, RoutingError> {
    if let Some(client) = cfg.mapped_client(incident.account_id.as_deref()) {
        return Ok(Route { client, by: RoutedBy::Map });
    }
    let default =
        Route { client: ClientTarget { client_id: cfg.default_client_id, site_id: None }, by: RoutedBy::Default };
    let name = incident.account_name.as_deref().map(normalized).filter(|n| !n.is_empty());
    let Some(name) = name.filter(|_| cfg.match_client_by_name) else { return Ok(default) };
    let matched = match_name(ctx, cfg, &name).await?;
    Ok(match matched.client_id {
        Some(client_id) => Route { client: ClientTarget { client_id, site_id: None }, by: RoutedBy::Name },
        None => Route { by: RoutedBy::DefaultNameMatched(matched.matches), ..default },
    })
}

/// The cached match of a name, or Halo's answer (then cached).
async fn match_name(ctx: &Context<'_>, cfg: &CfWebhookConfig, name: &str) -> Result<ClientNameRecord, RoutingError> {
    let key = client_name_key(name);
    let cached = ctx.store.get::<ClientNameRecord>(&key).await?;
    let ttl = cfg.client_name_ttl.as_secs() as i64;
    if let Some(fresh) = cached.as_ref().filter(|c| c.value.name == name && unix_now() - c.value.fetched_at < ttl) {
        return Ok(fresh.value.clone());
    }
    let clients = ctx.halo.clients_named(name, ctx.deadline).await?;
    let exact: Vec<i64> =
        clients.iter().filter(|c| c.name.as_deref().map(normalized).as_deref() == Some(name)).map(|c| c.id).collect();
    let record = ClientNameRecord {
        name: name.to_string(),
        client_id: (exact.len() == 1).then(|| exact[0]),
        matches: exact.len() as u32,
        fetched_at: unix_now(),
    };
    // Best effort: a lost race with another delivery's write of the same answer changes nothing.
    let written = match cached {
        None => ctx.store.insert(&key, &record).await.map(drop),
        Some(old) => ctx.store.replace(&key, &record, &old.etag).await.map(drop),
    };
    match written {
        Ok(()) | Err(StoreError::Conflict | StoreError::Changed | StoreError::NotFound) => {}
        Err(e) => tracing::warn!(error = %e, "could not cache a client name match; the next incident asks Halo again"),
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_or_spacing() {
        assert_eq!(normalized("  Contoso   Ltd\t"), "contoso ltd");
        assert_eq!(normalized("CONTOSO LTD"), normalized("contoso ltd"));
        assert_ne!(normalized("Contoso Ltd."), normalized("Contoso Ltd"), "punctuation is part of a name");
    }

    #[test]
    fn the_reason_says_why_the_default_was_used() {
        assert_eq!(RoutedBy::DefaultNameMatched(2).describe(), "default: 2 Halo clients have the account's name");
        assert_eq!(RoutedBy::Map.describe(), "map");
    }
}
