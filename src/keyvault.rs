//! Direct Key Vault reads (when `KEY_VAULT_URI` is set): each secret read at start and refreshed in the background
//! every `KEY_VAULT_REFRESH_SECONDS`. A request never waits on Key Vault once a value is known; when Key Vault is
//! down the last good value stays; a changed value starts a rotation (`secrets` keeps the old webhook secret
//! accepted for the grace time).
//!
//! One read is one REST call on the shared HTTP client (so it trusts what every other client trusts, `SSL_CERT_FILE`
//! included): `GET {vault}/secrets/{name}?api-version=2025-07-01` with a bearer token for Key Vault from the
//! managed identity, answered `{"value": "...", "id": ..., "attributes": ...}` (docs/azure-sdk.md, *Key Vault*).

use crate::availability::Problem;
use crate::config::{Config, KeyVaultConfig};
use crate::secrets::{SecretId, SecretSource};
use crate::secrets::{SecretValue, Secrets, Update};
use crate::upstream::{self, Deadline, Retry, UpstreamError};
use azure_core::auth::TokenCredential;
use std::sync::Arc;
use std::time::Duration;

/// The Key Vault data-plane API version (the newest GA one; docs/azure-sdk.md).
const API_VERSION: &str = "2025-07-01";
/// The token scope of the Key Vault data plane.
const SCOPE: &str = "https://vault.azure.net/.default";
const SERVICE: &str = "Key Vault";
/// Longest one secret read may take once the token is known (retries included).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why one secret could not be read. Neither the secret's value nor Key Vault's answer body is ever in it.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("no token for Key Vault: {0}")]
    Token(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("Key Vault answered without a secret value")]
    NoValue,
    #[error("the secret is empty")]
    Empty,
}

impl ReadError {
    /// Where an operator looks first.
    fn what_to_check(&self) -> &'static str {
        match self {
            ReadError::Token(_) => "the managed identity and AZURE_CLIENT_ID",
            ReadError::Upstream(UpstreamError::NotSent { .. }) => {
                "KEY_VAULT_URI, and SSL_CERT_FILE when a TLS-inspecting proxy or a private CA is in the way"
            }
            ReadError::Upstream(e) if e.status() == Some(404) => "the secret name",
            _ => "the identity's 'Key Vault Secrets User' role, AZURE_CLIENT_ID, and the secret name",
        }
    }
}

/// The part of Key Vault's secret bundle the bridge uses.
#[derive(serde::Deserialize)]
struct SecretBundle {
    value: String,
}

pub(crate) struct KeyVaultSecrets {
    http: reqwest::Client,
    vault: reqwest::Url,
    credential: Arc<dyn TokenCredential>,
    names: Vec<(SecretId, String)>,
    secrets: Secrets,
    refresh: Duration,
}

impl KeyVaultSecrets {
    pub fn new(cfg: &KeyVaultConfig, config: &Config, secrets: Secrets, http: reqwest::Client) -> Result<Self, String> {
        let credential = crate::identity::credential(http.clone(), cfg.client_id.clone())
            .map_err(|e| format!("no managed identity for Key Vault: {e}"))?;
        // Validated in config (an http(s) URL without a query, no trailing slash).
        let vault = reqwest::Url::parse(&format!("{}/", cfg.vault_uri)).map_err(|e| format!("KEY_VAULT_URI: {e}"))?;
        let names = config
            .secrets
            .iter()
            .filter_map(|(id, source)| match source {
                SecretSource::KeyVault(name) => Some((*id, name.clone())),
                SecretSource::Setting(_) => None,
            })
            .collect();
        Ok(KeyVaultSecrets { http, vault, credential, names, secrets, refresh: cfg.refresh })
    }

    /// `{vault}/secrets/{name}`, the name escaped as one path segment.
    fn secret_url(&self, name: &str) -> reqwest::Url {
        let mut url = self.vault.clone();
        url.path_segments_mut().expect("an http(s) URL has a path").pop_if_empty().extend(["secrets", name]);
        url
    }

    async fn read(&self, name: &str) -> Result<String, ReadError> {
        let token = self.credential.get_token(&[SCOPE]).await.map_err(|e| ReadError::Token(e.to_string()))?;
        let url = self.secret_url(name);
        let answer = upstream::send(SERVICE, READ_TIMEOUT, Deadline::after(READ_TIMEOUT), Retry::Idempotent, || {
            self.http.get(url.clone()).query(&[("api-version", API_VERSION)]).bearer_auth(token.token.secret())
        })
        .await?;
        // serde's message could quote part of the value: a fixed one instead.
        let bundle: SecretBundle = serde_json::from_slice(&answer.body).map_err(|_| ReadError::NoValue)?;
        match bundle.value {
            value if value.is_empty() => Err(ReadError::Empty),
            value => Ok(value),
        }
    }

    /// Reads every secret once (concurrently); returns how many were read.
    pub(crate) async fn refresh_once(&self) -> usize {
        let reads = futures::future::join_all(
            self.names.iter().map(|(id, name)| async move { (*id, name, self.read(name).await) }),
        )
        .await;
        let mut read = 0;
        for (id, name, result) in reads {
            match result {
                Ok(value) => {
                    read += 1;
                    match self.secrets.update(id, SecretValue::new(value)) {
                        Update::Unchanged => {}
                        Update::First => {
                            tracing::info!(setting = id.setting(), secret = %name, "secret read from Key Vault")
                        }
                        Update::Rotated => tracing::info!(
                            setting = id.setting(),
                            secret = %name,
                            grace_seconds = self.secrets.grace().as_secs(),
                            "secret rotated in Key Vault: the new value is used, the previous one stays accepted for webhooks during the grace time"
                        ),
                    }
                }
                Err(reason) => self.fail(id, name, &reason),
            }
        }
        read
    }

    fn fail(&self, id: SecretId, name: &str, reason: &ReadError) {
        let known = self.secrets.current(id).is_ok();
        tracing::warn!(setting = id.setting(), secret = %name, %reason, keeping_last_good_value = known, "Key Vault read failed");
        self.secrets.report_failure(
            id,
            Problem::Other(format!(
                "{} could not be read from Key Vault secret `{name}`: {reason} (check {})",
                id.setting(),
                reason.what_to_check()
            )),
        );
    }

    /// Refreshes forever in the background.
    pub(crate) fn spawn_refresh(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.refresh);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate: the start already read everything
            loop {
                ticker.tick().await;
                self.refresh_once().await;
            }
        })
    }
}
