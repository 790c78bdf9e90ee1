//! Direct Key Vault reads (when `KEY_VAULT_URI` is set): each secret read at start and refreshed in the background
//! every `KEY_VAULT_REFRESH_SECONDS`. A request never waits on Key Vault once a value is known; when Key Vault is
//! down the last good value stays; a changed value starts a rotation (`secrets` keeps the old webhook secret
//! accepted for the grace time).

use crate::availability::Problem;
use crate::config::{Config, KeyVaultConfig};
use crate::secrets::{SecretId, SecretSource};
use crate::secrets::{SecretValue, Secrets, Update};
use azure_security_keyvault::SecretClient;
use std::time::Duration;

/// Longest one read may take (the crate's own retries included).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct KeyVaultSecrets {
    client: SecretClient,
    names: Vec<(SecretId, String)>,
    secrets: Secrets,
    refresh: Duration,
}

impl KeyVaultSecrets {
    pub fn new(cfg: &KeyVaultConfig, config: &Config, secrets: Secrets, http: reqwest::Client) -> Result<Self, String> {
        let credential = crate::identity::credential(http, cfg.client_id.clone())
            .map_err(|e| format!("no managed identity for Key Vault: {e}"))?;
        let client = SecretClient::new(&cfg.vault_uri, credential).map_err(|e| format!("KEY_VAULT_URI: {e}"))?;
        let names = config
            .secrets
            .iter()
            .filter_map(|(id, source)| match source {
                SecretSource::KeyVault(name) => Some((*id, name.clone())),
                SecretSource::Setting(_) => None,
            })
            .collect();
        Ok(KeyVaultSecrets { client, names, secrets, refresh: cfg.refresh })
    }

    async fn read(&self, name: &str) -> Result<String, String> {
        match tokio::time::timeout(READ_TIMEOUT, self.client.get(name).into_future()).await {
            Err(_) => Err("Key Vault did not answer in time".into()),
            Ok(Ok(secret)) => Ok(secret.value),
            Ok(Err(e)) => Err(match e.kind() {
                azure_core::error::ErrorKind::HttpResponse { status, error_code } => {
                    format!("Key Vault answered {status} {}", error_code.as_deref().unwrap_or(""))
                }
                other => format!("Key Vault could not be read ({other:?})"),
            }),
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
                Ok(value) if !value.is_empty() => {
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
                Ok(_) => self.fail(id, name, "the secret is empty"),
                Err(reason) => self.fail(id, name, &reason),
            }
        }
        read
    }

    fn fail(&self, id: SecretId, name: &str, reason: &str) {
        let known = self.secrets.current(id).is_ok();
        tracing::warn!(setting = id.setting(), secret = %name, reason, keeping_last_good_value = known, "Key Vault read failed");
        self.secrets.report_failure(
            id,
            Problem::Other(format!(
                "{} could not be read from Key Vault secret `{name}`: {reason} (check the identity's \
                 'Key Vault Secrets User' role, AZURE_CLIENT_ID, and the secret name)",
                id.setting()
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
