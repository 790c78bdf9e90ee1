//! Configuration: read from the environment once, at startup, and validated here and nowhere else, one file per
//! area. An empty value means unset; a value still reading `@Microsoft.KeyVault(` is an unresolved Key Vault
//! reference and is reported by name; a direction whose required settings are missing stays off (its route answers
//! 503 naming what is missing) while the other keeps working; values that are present but invalid stop the start,
//! every one of them named in one error.

mod cf_webhook;
mod general;
mod halo_api;
mod halo_webhook;
mod key_vault;
mod read;
mod storage;

pub use cf_webhook::{CfWebhookConfig, ClientTarget, NoteOutcome, PriorityMap};
pub use general::{DEFAULT_PORT, PORT_VARIABLE};
pub use halo_api::HaloApiConfig;
pub use halo_webhook::{Decision, HaloWebhookConfig, ReconcileConfig};
pub use key_vault::KeyVaultConfig;
pub use storage::{StorageConfig, StorageConnection, WorkQueueConfig, WORK_QUEUE};

use crate::availability::{Availability, Problem};
use crate::secrets::{SecretId, SecretSource};
use crate::settings::{self as names, Area};
use read::{base_url, integer, positive_seconds, seconds, Reader};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// One present value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.name, self.reason)
    }
}

/// Every invalid value of one start (never empty); the start stops with all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The invalid settings' names, in the order they were read.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.name.as_str()).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// The raw environment, with empty values dropped. Tests build one from a map.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub(crate) fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).filter(|(_, v)| !v.trim().is_empty()).collect())
    }

    /// The value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }
}

/// Longest inline budget: the senders give up after about 30 s.
const MAX_INLINE_BUDGET: Duration = Duration::from_secs(20);

/// The whole validated configuration.
#[derive(Clone)]
pub struct Config {
    pub port: u16,
    pub log_filter: String,
    pub storage: Availability<StorageConfig>,
    /// Durable work: both directions need it (nothing is answered `queued` unless it is on the queue).
    pub work_queue: Availability<WorkQueueConfig>,
    pub halo: Availability<HaloApiConfig>,
    pub cf_webhook: Availability<CfWebhookConfig>,
    pub halo_webhook: Availability<HaloWebhookConfig>,
    pub key_vault: Option<KeyVaultConfig>,
    pub rotation_grace: Duration,
    pub upstream_timeout: Duration,
    pub claim_ttl: Duration,
    /// How long a webhook's work runs inline before it is queued instead.
    pub inline_budget: Duration,
    /// Extra trusted certificate authorities (PEM), from `SSL_CERT_FILE`.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Halo's web address, for the status page's ticket links.
    pub halo_web_url: Option<String>,
    /// How long run records are kept.
    pub run_retention: Duration,
    pub secrets: BTreeMap<SecretId, SecretSource>,
}

impl fmt::Debug for Config {
    // Secret values never reach a log line, even through Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("storage", &self.storage.ready().map(|s| (s.source, &s.table_name)))
            .field("halo", &self.halo.ready().map(|h| &h.api_base_url))
            .field("cf_webhook", &self.cf_webhook.problems())
            .field("halo_webhook", &self.halo_webhook.problems())
            .field("key_vault", &self.key_vault.as_ref().map(|k| &k.vault_uri))
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let storage = storage::read(Reader::new(env, &mut errors));
        let before = errors.len();
        let work_queue = storage::read_work_queue(Reader::new(env, &mut errors));
        // The work queue may read the same connection string as the state storage: report its error once.
        let (read, new) = errors.split_at(before);
        let new: Vec<ConfigError> = new.iter().filter(|e| !read.contains(e)).cloned().collect();
        errors.truncate(before);
        errors.extend(new);
        let halo = halo_api::read(Reader::new(env, &mut errors));
        let cf_webhook = cf_webhook::read(Reader::new(env, &mut errors));
        let halo_webhook = halo_webhook::read(Reader::new(env, &mut errors));
        let mut r = Reader::new(env, &mut errors);
        let port = general::port(&mut r);
        let log_filter = r.optional_as(names::LOG_LEVEL, general::log_filter);
        let key_vault = key_vault::read(&mut r);
        let secrets = key_vault::sources(&r, key_vault.is_some());
        let rotation_grace = r.optional_as(names::SECRET_ROTATION_GRACE_SECONDS, seconds);
        let upstream_timeout = r.optional_as(names::UPSTREAM_TIMEOUT_SECONDS, positive_seconds);
        let claim_ttl = r.optional_as(names::CLAIM_TTL_SECONDS, positive_seconds);
        let inline_budget = r.optional_as(names::INLINE_BUDGET_SECONDS, |v| match positive_seconds(v)? {
            // The senders wait about 30 s: the work must be queued, and the answer sent, well before.
            d if d > MAX_INLINE_BUDGET => Err(format!("at most {} seconds", MAX_INLINE_BUDGET.as_secs())),
            d => Ok(d),
        });
        let extra_ca_pem = general::extra_ca(&mut r);
        let halo_web_url = match r.optional(names::HALO_WEB_URL) {
            None => Some(None),
            value => r.parse(names::HALO_WEB_URL, value, base_url).map(Some),
        };
        let run_retention = r.optional_as(names::RUN_RETENTION_DAYS, |v| match integer(v)? {
            days @ 1..=365 => Ok(Duration::from_secs(days as u64 * 86_400)),
            _ => Err("a number of days from 1 to 365".into()),
        });
        let config = (|| {
            Some(Config {
                port: port?,
                log_filter: log_filter?,
                storage,
                work_queue,
                halo,
                cf_webhook,
                halo_webhook,
                key_vault,
                rotation_grace: rotation_grace?,
                upstream_timeout: upstream_timeout?,
                claim_ttl: claim_ttl?,
                inline_budget: inline_budget?,
                extra_ca_pem: extra_ca_pem?,
                halo_web_url: halo_web_url?,
                run_retention: run_retention?,
                secrets,
            })
        })();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Every problem that keeps an area off, its own and those of the parts it uses (secrets excluded: their
    /// availability can change at run time and is checked by `secrets`).
    pub(crate) fn problems_of(&self, area: Area) -> Vec<Problem> {
        let own = match area {
            Area::CfWebhook => self.cf_webhook.problems(),
            Area::HaloWebhook => self.halo_webhook.problems(),
            _ => &[],
        };
        let parts = [self.halo.problems(), self.storage.problems(), self.work_queue.problems()];
        own.iter().chain(parts.into_iter().flatten()).cloned().collect()
    }
}

#[cfg(test)]
mod tests;
