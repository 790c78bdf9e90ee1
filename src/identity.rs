//! Managed identity for azure_core 0.21 clients, with a user-assigned client id.
//!
//! The 0.21 `azure_identity` credentials are system-assigned only (docs/azure-sdk.md), so this small
//! `TokenCredential` calls the App Service / Functions identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`)
//! itself, sending `client_id` when one is configured, and caches each resource's token until 5 minutes before it
//! expires. Without `IDENTITY_ENDPOINT` it falls back to the crate's default chain (Azure CLI for local runs). Both
//! talk over the shared HTTP client, so they trust what every other client trusts (`SSL_CERT_FILE` included).

use crate::upstream::{self, Deadline, Retry};
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use azure_identity::{DefaultAzureCredential, SpecificAzureCredential, TokenCredentialOptions, AZURE_CREDENTIAL_KIND};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;

const API_VERSION: &str = "2019-08-01";
const SERVICE: &str = "managed identity endpoint";
/// Longest one token request may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct MsiToken {
    access_token: String,
    expires_on: serde_json::Value,
}

/// The App Service identity endpoint, user- or system-assigned.
#[derive(Debug)]
pub(crate) struct AppServiceIdentity {
    http: reqwest::Client,
    endpoint: String,
    header: String,
    client_id: Option<String>,
    cache: Mutex<HashMap<String, AccessToken>>,
}

impl AppServiceIdentity {
    /// From `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`; `None` when not running under App Service/Functions.
    pub fn from_env(http: reqwest::Client, client_id: Option<String>) -> Option<Self> {
        let endpoint = std::env::var("IDENTITY_ENDPOINT").ok().filter(|v| !v.is_empty())?;
        let header = std::env::var("IDENTITY_HEADER").ok().filter(|v| !v.is_empty())?;
        Some(AppServiceIdentity { http, endpoint, header, client_id, cache: Mutex::new(HashMap::new()) })
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let mut query = vec![("api-version", API_VERSION), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let answer = upstream::send(SERVICE, CALL_TIMEOUT, Deadline::after(CALL_TIMEOUT), Retry::Idempotent, || {
            self.http.get(&self.endpoint).query(&query).header("X-IDENTITY-HEADER", &self.header)
        })
        .await
        .map_err(|e| {
            let hint = if e.status().is_some() { " (check the identity and its client id)" } else { "" };
            Error::message(ErrorKind::Credential, format!("{e}{hint}"))
        })?;
        // Not serde's message: it could quote part of the token.
        let token: MsiToken = serde_json::from_slice(&answer.body)
            .map_err(|_| Error::message(ErrorKind::Credential, format!("{SERVICE} answered without a token")))?;
        let expires_on = crate::wire::lenient_i64(&token.expires_on)
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| Error::message(ErrorKind::Credential, "managed identity token has no expires_on"))?;
        Ok(AccessToken::new(token.access_token, expires_on))
    }
}

#[async_trait::async_trait]
impl TokenCredential for AppServiceIdentity {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let scope = scopes.first().copied().unwrap_or_default();
        let resource = scope.strip_suffix("/.default").unwrap_or(scope).to_string();
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(&resource) {
            if token.expires_on - REFRESH_MARGIN > OffsetDateTime::now_utc() {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(&resource).await?;
        cache.insert(resource, token.clone());
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

/// The credential for Key Vault and identity-based storage. Every variant talks over `http` (the one TLS trust
/// configuration): the App Service endpoint above, or, without one, `azure_identity`'s chain (the one
/// `azure_identity::create_credential` builds: `AZURE_CREDENTIAL_KIND` when set, else the default chain) given
/// `http` instead of a client of its own.
pub fn credential(http: reqwest::Client, client_id: Option<String>) -> azure_core::Result<Arc<dyn TokenCredential>> {
    if let Some(identity) = AppServiceIdentity::from_env(http.clone(), client_id) {
        return Ok(Arc::new(identity));
    }
    let options = TokenCredentialOptions::from(Arc::new(http) as Arc<dyn azure_core::HttpClient>);
    Ok(match std::env::var_os(AZURE_CREDENTIAL_KIND) {
        Some(_) => Arc::new(SpecificAzureCredential::create(options)?),
        None => Arc::new(DefaultAzureCredential::create(options)?),
    })
}
