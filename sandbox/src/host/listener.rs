//! Queue triggers (docs/functions-host.md, Queue triggers in the stand-in host): one listener per queue-triggered
//! function polls its queue as the host does and hands each message to [`super::invoke::Call`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::config::{MessageEncoding, QueueSettings, Trigger, TriggeredFunction};
use super::invoke::{Call, Disposition, Invocation, InvocationReason, Outcome};
use super::{LogLevel, Shared};
use crate::queues::{Queue, QueueError, QueueMessage, QueueService};
use crate::util::iso_offset;

/// The shortest wait between two polls (the host's: 100 ms after a message was found).
const MIN_POLL: Duration = Duration::from_millis(100);

/// How long a fetched message stays invisible while it is processed (the storage service's default, which the
/// host also uses); longer when the function timeout is longer.
const PROCESSING_VISIBILITY: Duration = Duration::from_secs(10 * 60);

/// Starts a listener for each queue-triggered function (on the current runtime: the host's).
pub(crate) fn start(shared: &Arc<Shared>) {
    for function in shared.app.triggered.iter().filter(|f| matches!(f.trigger, Trigger::Queue { .. })) {
        tokio::spawn(listen(shared.clone(), function.clone()));
    }
}

/// The value of a connection setting: the setting itself, else `AzureWebJobs<name>` (how the host resolves it).
fn connection_string(env: &[(String, String)], setting: &str) -> Option<String> {
    let find = |name: &str| env.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    find(setting).or_else(|| find(&format!("AzureWebJobs{setting}"))).filter(|v| !v.trim().is_empty())
}

/// Messages being processed by one listener, to keep within `newBatchThreshold`.
#[derive(Default)]
struct Busy {
    count: AtomicUsize,
    done: Notify,
}

async fn listen(shared: Arc<Shared>, function: TriggeredFunction) {
    let Trigger::Queue { queue_name, connection } = &function.trigger else { return };
    let name = &function.name;
    let service = match connection_string(&shared.app.env, connection)
        .ok_or_else(|| format!("Storage account connection string '{connection}' does not exist"))
        .and_then(|cs| QueueService::from_connection_string(&cs).map_err(|e| e.to_string()))
    {
        Ok(service) => service,
        Err(why) => {
            let text = format!("The listener for function 'Functions.{name}' was unable to start: {why}.");
            shared.host_log(LogLevel::Error, text);
            return;
        }
    };
    let queue = service.queue(queue_name);
    let poison = service.queue(&format!("{queue_name}-poison"));
    let settings = shared.app.queues.clone();
    let visibility = PROCESSING_VISIBILITY.max(shared.app.function_timeout + Duration::from_secs(60));
    let busy = Arc::new(Busy::default());
    let mut stopping = shared.stopping.subscribe();
    let floor = MIN_POLL.min(settings.max_polling_interval);
    let mut delay = floor;
    let mut created = false;
    let mut last_error: Option<QueueError> = None;
    while !*stopping.borrow() {
        // Fetch another batch only when at most newBatchThreshold messages are under way.
        while busy.count.load(Ordering::SeqCst) > settings.new_batch_threshold as usize {
            tokio::select! {
                _ = busy.done.notified() => {}
                _ = stopping.changed() => return,
            }
        }
        let fetched = match created {
            false => queue.create_if_missing().await.map(|()| Vec::new()),
            true => queue.get(settings.batch_size, visibility).await,
        };
        match fetched {
            Ok(batch) => {
                if last_error.take().is_some() {
                    shared.host_log(
                        LogLevel::Information,
                        format!("The listener for 'Functions.{name}' reaches queue '{queue_name}' again."),
                    );
                }
                if !created {
                    created = true;
                    delay = floor;
                    continue;
                }
                if batch.is_empty() {
                    delay = (delay * 2).min(settings.max_polling_interval).max(floor);
                } else {
                    delay = floor;
                    for message in batch {
                        busy.count.fetch_add(1, Ordering::SeqCst);
                        shared.in_flight.fetch_add(1, Ordering::SeqCst);
                        let job = Job {
                            shared: shared.clone(),
                            function: function.clone(),
                            queue: queue.clone(),
                            poison: poison.clone(),
                            settings: settings.clone(),
                        };
                        let busy = busy.clone();
                        tokio::spawn(async move {
                            job.process(message).await;
                            job.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                            busy.count.fetch_sub(1, Ordering::SeqCst);
                            busy.done.notify_one();
                        });
                    }
                }
            }
            Err(e) => {
                if matches!(e, QueueError::Status { status: 404, .. }) {
                    created = false; // deleted meanwhile: create it again
                }
                if last_error.as_ref() != Some(&e) {
                    let text = format!("The listener for 'Functions.{name}' cannot reach queue '{queue_name}': {e}");
                    shared.host_log(LogLevel::Warning, text);
                }
                last_error = Some(e);
                delay = (delay * 2).min(settings.max_polling_interval).max(floor);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// One message to process.
struct Job {
    shared: Arc<Shared>,
    function: TriggeredFunction,
    queue: Queue,
    poison: Queue,
    settings: QueueSettings,
}

impl Job {
    async fn process(&self, message: QueueMessage) {
        let name = &self.function.name;
        let max = self.settings.max_dequeue_count;
        let input = match self.settings.message_encoding {
            MessageEncoding::None => Ok(Value::String(message.text.clone())),
            MessageEncoding::Base64 => message
                .decoded_text()
                .map(Value::String)
                .ok_or_else(|| "the message is not valid base64 (messageEncoding is base64)".to_string()),
        };
        let mut metadata = Map::new();
        metadata.insert("DequeueCount".into(), message.dequeue_count.into());
        metadata.insert("ExpirationTime".into(), iso_offset(message.expiration_time).into());
        metadata.insert("Id".into(), message.id.clone().into());
        metadata.insert("InsertionTime".into(), iso_offset(message.insertion_time).into());
        metadata.insert("NextVisibleTime".into(), iso_offset(message.next_visible_time).into());
        metadata.insert("PopReceipt".into(), message.pop_receipt.clone().into());
        let call = Call {
            function: &self.function,
            reason: format!("New queue message detected on '{}'.", self.queue.name()),
            details: Some(format!(
                "Trigger Details: MessageId: {}, DequeueCount: {}, InsertionTime: {}",
                message.id,
                message.dequeue_count,
                iso_offset(message.insertion_time)
            )),
            input: input.clone(),
            metadata,
        };
        let (id, outcome) = call.run(&self.shared).await;
        let disposition = match self.settle(&message, &outcome, max).await {
            Ok(d) => Some(d),
            Err(e) => {
                let text = format!(
                    "Functions.{name}: could not settle message {} on '{}': {e}",
                    message.id,
                    self.queue.name()
                );
                self.shared.host_log(LogLevel::Warning, text);
                None
            }
        };
        self.shared.invocations().push(Invocation {
            id,
            function: name.clone(),
            reason: InvocationReason::QueueMessage,
            message_id: Some(message.id.clone()),
            dequeue_count: Some(message.dequeue_count),
            input: input.unwrap_or(Value::Null),
            outcome,
            disposition,
        });
    }

    /// Deletes the message after a success; after a failure releases it for a retry, or at `maxDequeueCount`
    /// copies it to the poison queue and deletes it (QueueProcessor.CompleteProcessingMessageAsync).
    async fn settle(&self, message: &QueueMessage, outcome: &Outcome, max: u32) -> Result<Disposition, QueueError> {
        if outcome.succeeded() {
            self.queue.delete(message).await?;
            return Ok(Disposition::Deleted);
        }
        if message.dequeue_count < max {
            self.queue.release(message, self.settings.visibility_timeout).await?;
            return Ok(Disposition::Released);
        }
        let text =
            format!("Message has reached MaxDequeueCount of {max}. Moving message to queue '{}'.", self.poison.name());
        self.shared.host_log(LogLevel::Warning, text);
        self.poison.create_if_missing().await?;
        self.poison.put(&message.text, None).await?;
        self.queue.delete(message).await?;
        Ok(Disposition::Poisoned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_resolve_like_the_host() {
        let env = vec![("AzureWebJobsStorage".to_string(), "cs1".to_string()), ("Mine".to_string(), "cs2".to_string())];
        assert_eq!(connection_string(&env, "AzureWebJobsStorage").as_deref(), Some("cs1"));
        assert_eq!(connection_string(&env, "Storage").as_deref(), Some("cs1"), "AzureWebJobs<name>");
        assert_eq!(connection_string(&env, "mine").as_deref(), Some("cs2"));
        assert_eq!(connection_string(&env, "Other"), None);
    }
}
