//! The queue of durable work (an Azure Storage queue read by the `work-items` queue trigger): the bridge only puts
//! messages on it. Taking them off, retrying a failed one after the visibility timeout and moving one that failed
//! `maxDequeueCount` times to the poison queue is the Functions host's job (docs/durable-work.md).

use super::connection::{endpoint, retry, transport, unanswered, Endpoint, CALL_TIMEOUT};
use crate::config::WorkQueueConfig;
use azure_storage_queues::prelude::*;
use azure_storage_queues::QueueServiceClientBuilder;
use base64::Engine;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the work queue is unavailable: {0}")]
pub struct QueueError(pub String);

/// Where durable work goes.
#[async_trait::async_trait]
pub trait WorkQueue: Send + Sync {
    /// Puts one message on the queue, invisible for `visible_after` (a `Retry-After`) when given.
    async fn send(&self, text: &str, visible_after: Option<Duration>) -> Result<(), QueueError>;

    /// Whether the queue answers (`--check`): its approximate length, or `None` when it does not exist yet (the
    /// first enqueue creates it).
    async fn probe(&self) -> Result<Option<u64>, QueueError>;
}

pub struct AzureQueue {
    client: QueueClient,
}

impl AzureQueue {
    pub fn new(
        config: &WorkQueueConfig,
        http: &reqwest::Client,
        extra_ca_pem: Option<&[u8]>,
    ) -> azure_core::Result<Self> {
        let builder = match endpoint(&config.connection, http, |cs| cs.queue_endpoint.map(str::to_string))? {
            Endpoint::Emulator => QueueServiceClientBuilder::emulator(),
            Endpoint::At(location, credentials) => QueueServiceClientBuilder::with_location(location, credentials),
        };
        let service = builder.retry(retry()).transport(transport(extra_ca_pem)?).build();
        Ok(AzureQueue { client: service.queue_client(config.queue_name) })
    }

    async fn put(&self, encoded: &str, visible_after: Option<Duration>) -> azure_core::Result<()> {
        let mut put = self.client.put_message(encoded.to_string());
        if let Some(after) = visible_after {
            put = put.visibility_timeout(after.max(Duration::from_secs(1)));
        }
        put.into_future().await.map(drop)
    }
}

/// The queue does not exist (yet): the first enqueue creates it.
fn queue_not_found(e: &azure_core::Error) -> bool {
    matches!(e.kind(), azure_core::error::ErrorKind::HttpResponse { error_code: Some(code), .. } if code == "QueueNotFound")
}

/// Maps the crate's errors to ours without their text (it can carry the request URL and its SAS).
fn queue_error(e: &azure_core::Error) -> QueueError {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, error_code } => {
            QueueError(format!("{status} {}", error_code.as_deref().unwrap_or("")))
        }
        _ => QueueError(unanswered(e)),
    }
}

/// A queue trigger reads base64 message text by default (`extensions.queues.messageEncoding`).
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[async_trait::async_trait]
impl WorkQueue for AzureQueue {
    async fn probe(&self) -> Result<Option<u64>, QueueError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.client.get_metadata().into_future()).await {
            Err(_) => Err(QueueError("timed out".into())),
            Ok(Ok(answer)) => Ok(Some(answer.approximate_messages_count as u64)),
            Ok(Err(e)) if queue_not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(queue_error(&e)),
        }
    }

    async fn send(&self, text: &str, visible_after: Option<Duration>) -> Result<(), QueueError> {
        let encoded = encode(text);
        let attempt = || tokio::time::timeout(CALL_TIMEOUT, self.put(&encoded, visible_after));
        match attempt().await {
            Err(_) => Err(QueueError("timed out".into())),
            Ok(Ok(())) => Ok(()),
            // First use (or someone deleted it): create the queue, then send again.
            Ok(Err(e)) if queue_not_found(&e) => {
                let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.create().into_future()).await;
                match attempt().await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(queue_error(&e)),
                    Err(_) => Err(QueueError("timed out".into())),
                }
            }
            Ok(Err(e)) => Err(queue_error(&e)),
        }
    }
}

/// An in-memory queue for tests: what was sent, in order; `fail` makes every send fail.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<(String, Option<Duration>)>>,
    pub fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl WorkQueue for MemoryQueue {
    async fn probe(&self) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.sent.lock().unwrap().len() as u64))
    }

    async fn send(&self, text: &str, visible_after: Option<Duration>) -> Result<(), QueueError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError("the test queue refuses messages".into()));
        }
        self.sent.lock().unwrap().push((text.to_string(), visible_after));
        Ok(())
    }
}
