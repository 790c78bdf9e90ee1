//! The Halo OAuth2 client_credentials token: one shared by all requests, refreshed 60 s before it runs out, one
//! refresh at a time. The client secret is read from `secrets` at each refresh, so a rotation takes effect on the
//! next token.

use crate::config::HaloApiConfig;
use crate::secrets::SecretId;
use crate::secrets::{SecretValue, Secrets};
use crate::upstream::{self, Deadline, Retry, UpstreamError};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

const SERVICE: &str = "Halo token";
/// Refresh this long before the token expires.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Used when Halo omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Clone)]
struct Token {
    value: SecretValue,
    refresh_at: Instant,
}

/// The cached token and how to get a new one.
pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    scope: String,
    tenant: Option<String>,
    secrets: Secrets,
    call_timeout: Duration,
    cached: Mutex<Option<Token>>,
    fetched: AtomicU64,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, cfg: &HaloApiConfig, secrets: Secrets, call_timeout: Duration) -> Self {
        let mut token_url = format!("{}/token", cfg.auth_url);
        if let Some(tenant) = &cfg.tenant {
            // Halo's own clients send the tenant in the query string; the samples sent it in the form. We do both.
            let encoded: String = reqwest::Url::parse_with_params("http://x/", [("tenant", tenant)])
                .map(|u| u.query().unwrap_or_default().to_string())
                .unwrap_or_default();
            token_url = format!("{token_url}?{encoded}");
        }
        TokenSource {
            http,
            token_url,
            client_id: cfg.client_id.clone(),
            scope: cfg.scope.clone(),
            tenant: cfg.tenant.clone(),
            secrets,
            call_timeout,
            cached: Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched since start (for checks and benchmarks).
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A valid token; fetches one when the cached token is missing or near expiry. Concurrent callers wait for the
    /// one refresh in flight.
    pub async fn token(&self, deadline: Deadline) -> Result<SecretValue, UpstreamError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.refresh_at {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch(deadline).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Drops the cached token if it is still `rejected` (the API answered 401 with it).
    pub(crate) async fn invalidate(&self, rejected: &SecretValue) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == rejected) {
            *cached = None;
        }
    }

    async fn fetch(&self, deadline: Deadline) -> Result<Token, UpstreamError> {
        let secret = self
            .secrets
            .current(SecretId::HaloClient)
            .map_err(|p| UpstreamError::NotSent { service: SERVICE, detail: p.to_string() })?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        if let Some(tenant) = &self.tenant {
            form.push(("tenant", tenant.as_str()));
        }
        let answer = upstream::send(SERVICE, self.call_timeout, deadline, Retry::Idempotent, || {
            self.http.post(&self.token_url).form(&form)
        })
        .await?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| UpstreamError::Broken { service: SERVICE, detail: "no access_token in the answer".into() })?;
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(crate::wire::lenient_i64)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_LIFETIME);
        Ok(Token {
            value: SecretValue::new(parsed.access_token),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        })
    }
}
