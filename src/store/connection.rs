//! One way to reach an Azure Storage service (tables or queues) from a Functions-style connection: the
//! location and credentials, the shared TLS trust and transport, and the storage retry policy.

use crate::config::StorageConnection;
use azure_core::error::ErrorKind;
use azure_core::{ExponentialRetryOptions, RetryOptions, TransportOptions};
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use std::sync::Arc;
use std::time::Duration;

/// Longest a single storage call may take, retries included, before the request answers 503.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(6);

/// Where a service is and how to sign for it.
pub(super) enum Endpoint {
    /// `UseDevelopmentStorage=true`: Azurite on its default ports.
    Emulator,
    At(CloudLocation, StorageCredentials),
}

/// The endpoint of one service; `pick` chooses its endpoint from a connection string (`TableEndpoint`,
/// `QueueEndpoint`), and without one the account's public endpoint is used.
pub(super) fn endpoint(
    connection: &StorageConnection,
    http: &reqwest::Client,
    pick: fn(&ConnectionString<'_>) -> Option<String>,
) -> azure_core::Result<Endpoint> {
    Ok(match connection {
        StorageConnection::Emulator => Endpoint::Emulator,
        StorageConnection::ConnectionString(cs) => {
            // Errors here would quote the string (and its key): replaced by fixed text.
            let unusable =
                |_| azure_core::Error::message(ErrorKind::Other, "the storage connection string is not usable");
            let parsed = ConnectionString::new(cs).map_err(unusable)?;
            let credentials = parsed.storage_credentials().map_err(unusable)?;
            let account = parsed.account_name.unwrap_or_default().to_string();
            let location = match pick(&parsed) {
                Some(uri) => CloudLocation::Custom { account, uri: uri.trim_end_matches('/').to_string() },
                None => CloudLocation::Public { account },
            };
            Endpoint::At(location, credentials)
        }
        StorageConnection::ManagedIdentity { service_uri, client_id } => {
            let credential = crate::identity::credential(http.clone(), client_id.clone())?;
            let account = reqwest::Url::parse(service_uri)
                .ok()
                .and_then(|u| u.host_str().and_then(|h| h.split('.').next()).map(str::to_string))
                .unwrap_or_default();
            Endpoint::At(
                CloudLocation::Custom { account, uri: service_uri.trim_end_matches('/').to_string() },
                StorageCredentials::token_credential(credential),
            )
        }
    })
}

/// Two quick retries inside the call's time limit.
pub(super) fn retry() -> RetryOptions {
    RetryOptions::exponential(
        ExponentialRetryOptions::default()
            .max_retries(2u32)
            .initial_delay(Duration::from_millis(100))
            .max_total_elapsed(CALL_TIMEOUT),
    )
}

/// The storage transport: the one TLS trust configuration, with storage's shorter timeouts.
pub(super) fn transport(extra_ca_pem: Option<&[u8]>) -> azure_core::Result<TransportOptions> {
    let client = crate::upstream::client_builder(extra_ca_pem)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| azure_core::Error::new(ErrorKind::Other, e))?;
    Ok(TransportOptions::new(Arc::new(client)))
}

/// A storage error that is not an HTTP answer, for an operator: its kind and its innermost cause (a TLS or socket
/// error). Never the error's own text, nor any cause that quotes a URL: it can carry a SAS token in its query.
pub(super) fn unanswered(e: &azure_core::Error) -> String {
    let kind = e.kind();
    let mut cause = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = Some(s.to_string());
        source = s.source();
    }
    match cause.filter(|c| !c.contains("://")) {
        Some(cause) => format!("{kind:?}: {cause}"),
        None => format!("{kind:?}"),
    }
}
