//! Queue triggers, as the Functions host runs them for a custom handler (docs/durable-work.md cites the sources):
//! each `queueTrigger` function's queue is polled (Get Messages, `batchSize` at a time, the polling interval
//! doubling while the queue is empty up to `maxPollingInterval`); each message is sent to the handler as the
//! invocation envelope (`POST /<function>` with `Data.<binding name>` = the message text, base64-decoded unless
//! `messageEncoding` is `none`, and `Metadata.DequeueCount`, `Id`, `PopReceipt`, `sys`); a 2xx answer deletes it;
//! any other answer, a broken connection or the function timeout fails it: the message is visible again after
//! `visibilityTimeout`, and once it has been dequeued `maxDequeueCount` times it is moved to `<queue>-poison`.

use super::config::{QueueSettings, QueueTrigger};
use super::{Phase, Shared};
use azure_storage::{CloudLocation, ConnectionString};
use azure_storage_queues::prelude::*;
use azure_storage_queues::{NumberOfMessages, QueueServiceClientBuilder};
use base64::Engine;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How an invocation of a queue-triggered function ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the message was deleted.
    Succeeded,
    /// Failed: visible again after the visibility timeout.
    Failed,
    /// Failed for the last time: moved to the poison queue.
    Poisoned,
}

/// One invocation the stand-in made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The function.
    pub function: String,
    /// The queue message id.
    pub message_id: String,
    /// The message text as the handler received it.
    pub text: String,
    /// How many times the message has been dequeued, this time included.
    pub dequeue_count: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The queue client of a connection setting (a connection string with a `QueueEndpoint`, or
/// `UseDevelopmentStorage=true`).
fn queue_client(connection: &str, queue: &str) -> Result<QueueClient, String> {
    if connection.trim().eq_ignore_ascii_case("UseDevelopmentStorage=true") {
        return Ok(QueueServiceClientBuilder::emulator().build().queue_client(queue));
    }
    let parsed = ConnectionString::new(connection).map_err(|_| "unusable connection string".to_string())?;
    let credentials =
        parsed.storage_credentials().map_err(|_| "no credentials in the connection string".to_string())?;
    let account = parsed.account_name.unwrap_or_default().to_string();
    let location = match parsed.queue_endpoint {
        Some(uri) => CloudLocation::Custom { account, uri: uri.trim_end_matches('/').to_string() },
        None => CloudLocation::Public { account },
    };
    Ok(QueueServiceClientBuilder::with_location(location, credentials).build().queue_client(queue))
}

/// Starts one poller per queue trigger on the current runtime. A trigger whose connection cannot be resolved is
/// logged in the host log and not polled (the real host would not start it either).
pub(crate) fn start(shared: &Arc<Shared>) {
    for trigger in &shared.app.queue_triggers {
        let connection = shared.app.env.iter().rev().find(|(k, _)| *k == trigger.connection).map(|(_, v)| v.clone());
        let clients = connection.ok_or_else(|| format!("no setting {}", trigger.connection)).and_then(|c| {
            Ok((queue_client(&c, &trigger.queue)?, queue_client(&c, &format!("{}-poison", trigger.queue))?))
        });
        match clients {
            Ok((queue, poison)) => {
                tokio::spawn(poll(shared.clone(), trigger.clone(), queue, poison));
            }
            Err(e) => shared.host_log(format!("queue trigger {} not started: {e}", trigger.function)),
        }
    }
}

async fn poll(shared: Arc<Shared>, trigger: QueueTrigger, queue: QueueClient, poison: QueueClient) {
    let settings = shared.queue_settings();
    let first = Duration::from_millis(100).min(settings.max_polling_interval);
    let mut interval = first;
    let _ = queue.create().into_future().await;
    loop {
        if shared.stopping() {
            return;
        }
        if shared.handler_port().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let got = queue
            .get_messages()
            .number_of_messages(NumberOfMessages::new(settings.batch_size))
            .visibility_timeout(settings.processing_visibility)
            .into_future()
            .await;
        let messages = match got {
            Ok(answer) => answer.messages,
            Err(_) => Vec::new(),
        };
        if messages.is_empty() {
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(settings.max_polling_interval);
            continue;
        }
        interval = first;
        let runs = messages.into_iter().map(|m| invoke(&shared, &trigger, &queue, &poison, &settings, m));
        futures::future::join_all(runs).await;
    }
}

async fn invoke(
    shared: &Arc<Shared>,
    trigger: &QueueTrigger,
    queue: &QueueClient,
    poison: &QueueClient,
    settings: &QueueSettings,
    message: azure_storage_queues::operations::Message,
) {
    let text = match settings.base64 {
        true => base64::engine::general_purpose::STANDARD
            .decode(message.message_text.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        false => Some(message.message_text.clone()),
    };
    let succeeded = match &text {
        // The real host fails a message it cannot decode without invoking the function.
        None => false,
        Some(text) => {
            let envelope = json!({
                "Data": { trigger.binding.clone(): text },
                "Metadata": {
                    "DequeueCount": message.dequeue_count,
                    "Id": message.message_id,
                    "PopReceipt": message.pop_receipt,
                    "sys": { "MethodName": trigger.function, "UtcNow": crate::util::now_rfc3339(),
                             "RandGuid": crate::util::uuid_v4() },
                },
            });
            post(shared, &trigger.function, &envelope).await
        }
    };
    let receipt = queue.pop_receipt_client(message.pop_receipt());
    let outcome = if succeeded {
        let _ = receipt.delete().into_future().await;
        Outcome::Succeeded
    } else if message.dequeue_count >= settings.max_dequeue_count {
        let _ = poison.create().into_future().await;
        if poison.put_message(message.message_text.clone()).into_future().await.is_ok() {
            let _ = receipt.delete().into_future().await;
        }
        Outcome::Poisoned
    } else {
        let _ = receipt.update(message.message_text.clone(), settings.visibility_timeout).into_future().await;
        Outcome::Failed
    };
    shared.host_log(format!(
        "Executed 'Functions.{}' ({}, Id={}, DequeueCount={})",
        trigger.function,
        match outcome {
            Outcome::Succeeded => "Succeeded",
            Outcome::Failed => "Failed",
            Outcome::Poisoned => "Failed; moved to the poison queue",
        },
        message.message_id,
        message.dequeue_count
    ));
    shared.invocations().push(Invocation {
        function: trigger.function.clone(),
        message_id: message.message_id.clone(),
        text: text.unwrap_or_default(),
        dequeue_count: message.dequeue_count,
        outcome,
    });
}

/// POSTs the envelope to the running handler; true for a 2xx answer with a JSON body.
async fn post(shared: &Arc<Shared>, function: &str, envelope: &serde_json::Value) -> bool {
    let Some(port) = shared.handler_port() else { return false };
    let url = format!("http://127.0.0.1:{port}/{function}");
    let sent = shared.client.post(url).json(envelope).timeout(shared.app.request_timeout).send().await;
    match sent {
        Ok(answer) if answer.status().is_success() => answer.json::<serde_json::Value>().await.is_ok(),
        _ => false,
    }
}

impl Shared {
    pub(crate) fn handler_port(&self) -> Option<u16> {
        let s = self.state();
        match s.phase {
            Phase::Running => s.child.as_ref().map(|c| c.port),
            _ => None,
        }
    }

    fn stopping(&self) -> bool {
        matches!(self.state().phase, Phase::Stopped)
    }

    fn queue_settings(&self) -> QueueSettings {
        self.opts.queue_settings.clone().unwrap_or_else(|| self.app.queue_settings.clone())
    }
}
