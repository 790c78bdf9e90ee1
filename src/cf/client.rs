//! The ContraForce API calls of the inbound direction: add a comment, close an incident. Basic auth with the
//! service account; the secret is read at each call, so a rotation takes effect at once.

use crate::config::HaloWebhookConfig;
use crate::domain::IncidentAt;
use crate::secrets::SecretId;
use crate::secrets::Secrets;
use crate::upstream::{self, Deadline, Retry, UpstreamError};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SERVICE: &str = "ContraForce API";

pub struct CfClient {
    http: reqwest::Client,
    base: reqwest::Url,
    workspace: String,
    client_id: String,
    secrets: Secrets,
    call_timeout: Duration,
    calls: AtomicU64,
}

/// What a close sends besides the status.
#[derive(Debug, Clone)]
pub struct Close<'a> {
    pub comment: &'a str,
    pub classification: &'a str,
    /// `None`: no `classificationReason` is sent.
    pub reason: Option<&'a str>,
}

impl CfClient {
    pub fn new(http: reqwest::Client, cfg: &HaloWebhookConfig, secrets: Secrets, call_timeout: Duration) -> Self {
        CfClient {
            http,
            base: reqwest::Url::parse(&cfg.cf_api_base_url).expect("validated in config"),
            workspace: cfg.cf_workspace_id.clone(),
            client_id: cfg.cf_client_id.clone(),
            secrets,
            call_timeout,
            calls: AtomicU64::new(0),
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// `{base}/workspaces/{ws}/incidents/{incidentId}/{leaf}`, each segment URL-escaped; `ws` is the incident's
    /// own workspace when it was routed to one (`CF_WORKSPACE_MAP`), else `CF_WORKSPACE_ID`.
    fn incident_url(&self, at: IncidentAt<'_>, leaf: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("an http(s) base URL").pop_if_empty().extend([
            "workspaces",
            at.workspace.unwrap_or(&self.workspace),
            "incidents",
            at.reference.incident_id(),
            leaf,
        ]);
        url
    }

    fn secret(&self) -> Result<crate::secrets::SecretValue, UpstreamError> {
        self.secrets
            .current(SecretId::CfServiceAccount)
            .map_err(|p| UpstreamError::NotSent { service: SERVICE, detail: p.to_string() })
    }

    /// A read-only call proving the service account's credentials (`handler --check`).
    /// `workspace`: a routed workspace (`None`: `CF_WORKSPACE_ID`).
    pub(crate) async fn check_credentials(
        &self,
        workspace: Option<&str>,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let secret = self.secret()?;
        let mut url = self.base.clone();
        url.path_segments_mut().expect("an http(s) base URL").pop_if_empty().extend([
            "workspaces",
            workspace.unwrap_or(&self.workspace),
            "incidents",
        ]);
        url.query_pairs_mut().append_pair("take", "1");
        upstream::send(SERVICE, self.call_timeout, deadline, Retry::Idempotent, || {
            self.http.get(url.clone()).basic_auth(&self.client_id, Some(secret.expose()))
        })
        .await
        .map(drop)
    }

    /// Posts one comment. Retried only when it surely did not arrive (connection refused).
    pub async fn add_comment(
        &self,
        at: IncidentAt<'_>,
        content: &str,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let incident = at.reference;
        let body = json!({ "incidentId": incident.incident_id(), "content": content, "source": incident.source() });
        self.write(reqwest::Method::POST, self.incident_url(at, "comments"), &body, Retry::OnlyIfNotSent, deadline)
            .await
    }

    /// Closes the incident (idempotent: retried on 429/5xx/connection errors).
    pub async fn close(&self, at: IncidentAt<'_>, close: &Close<'_>, deadline: Deadline) -> Result<(), UpstreamError> {
        let incident = at.reference;
        let mut body = json!({
            "incidentId": incident.incident_id(),
            "source": incident.source(),
            "status": "Closed",
            "comment": close.comment,
            "classification": close.classification,
        });
        if let Some(reason) = close.reason {
            body["classificationReason"] = reason.into();
        }
        self.write(reqwest::Method::PUT, self.incident_url(at, "status"), &body, Retry::Idempotent, deadline).await
    }

    /// One authenticated write. Only the status matters: a 2xx whose body broke off was carried out.
    async fn write(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: &serde_json::Value,
        retry: Retry,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let secret = self.secret()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        crate::trace::count(crate::trace::Service::Cf);
        match upstream::send(SERVICE, self.call_timeout, deadline, retry, || {
            self.http.request(method.clone(), url.clone()).basic_auth(&self.client_id, Some(secret.expose())).json(body)
        })
        .await
        {
            Ok(_) | Err(UpstreamError::IncompleteSuccess { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
