//! A small Azure Queue Storage client over the REST API, signed with Shared Key: what the stand-in host's queue
//! triggers need (create, get, update visibility, delete, put) and what tests need to feed and inspect queues
//! (put, peek, clear). docs/functions-host.md, "Queue triggers in the stand-in host", cites the operations.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// The REST API version sent with every request (Azurite runs with `--skipApiVersionCheck`).
const API_VERSION: &str = "2021-08-06";

/// How long one storage request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a queue operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The connection string cannot be used (no account key, no queue endpoint, …).
    Connection(String),
    /// The request got no answer (refused, timed out).
    Transport(String),
    /// The service answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// `x-ms-error-code`, when given.
        code: Option<String>,
    },
    /// The answer could not be read.
    Answer(String),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Connection(m) => write!(f, "unusable storage connection: {m}"),
            QueueError::Transport(m) => write!(f, "queue service unreachable: {m}"),
            QueueError::Status { status, code } => {
                write!(f, "queue service answered {status} {}", code.as_deref().unwrap_or(""))
            }
            QueueError::Answer(m) => write!(f, "unreadable queue service answer: {m}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// A storage account's queue service, from a connection string.
#[derive(Clone, Debug)]
pub struct QueueService {
    inner: Arc<Account>,
    http: reqwest::Client,
}

struct Account {
    name: String,
    key: Vec<u8>,
    endpoint: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account").field("name", &self.name).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl QueueService {
    /// Reads `AccountName`, `AccountKey` and `QueueEndpoint` (else `DefaultEndpointsProtocol` + `EndpointSuffix`)
    /// from a connection string; `UseDevelopmentStorage=true` is Azurite's well-known account on 127.0.0.1:10001.
    pub fn from_connection_string(connection: &str) -> Result<QueueService, QueueError> {
        let pairs: Vec<(String, String)> = connection
            .split(';')
            .filter_map(|part| part.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let (name, key, endpoint) = if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let name = crate::azurite::ACCOUNT_NAME.to_string();
            (name.clone(), crate::azurite::ACCOUNT_KEY.to_string(), format!("http://127.0.0.1:10001/{name}"))
        } else {
            let name = get("accountname").ok_or_else(|| QueueError::Connection("no AccountName".into()))?;
            let key = get("accountkey").ok_or_else(|| QueueError::Connection("no AccountKey".into()))?;
            let endpoint = match get("queueendpoint") {
                Some(e) => e,
                // The emulator's account has no public endpoint to fall back on (and tests stay on loopback).
                None if name == crate::azurite::ACCOUNT_NAME => {
                    return Err(QueueError::Connection(format!("no QueueEndpoint for the emulator account {name}")));
                }
                None => {
                    let protocol = get("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
                    let suffix = get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into());
                    format!("{protocol}://{name}.queue.{suffix}")
                }
            };
            (name, key, endpoint)
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| QueueError::Connection("AccountKey is not base64".into()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| QueueError::Connection(e.to_string()))?;
        Ok(QueueService {
            inner: Arc::new(Account { name, key, endpoint: endpoint.trim_end_matches('/').to_string() }),
            http,
        })
    }

    /// The queue service's base URL.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// A handle on one queue (nothing is sent yet).
    pub fn queue(&self, name: &str) -> Queue {
        Queue { service: self.clone(), name: name.to_string() }
    }

    /// Sends one signed request; `resource` is the path after the endpoint, `query` the (unencoded) parameters.
    async fn send(
        &self,
        method: reqwest::Method,
        resource: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<(u16, String), QueueError> {
        let mut url = reqwest::Url::parse(&format!("{}/{resource}", self.inner.endpoint))
            .map_err(|e| QueueError::Connection(format!("bad queue endpoint: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let date = crate::azurite::x_ms_date(secs);
        let body = body.unwrap_or_default();
        let content_type = if body.is_empty() { "" } else { "application/xml" };
        let length = if body.is_empty() { String::new() } else { body.len().to_string() };
        let authorization = self.shared_key(&method, &url, &date, content_type, &length, query);
        let mut request = self
            .http
            .request(method, url)
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("authorization", authorization);
        if !body.is_empty() {
            request = request.header("content-type", content_type).body(body);
        } else {
            request = request.header("content-length", "0");
        }
        let response = request.send().await.map_err(|e| QueueError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = response.text().await.map_err(|e| QueueError::Transport(e.to_string()))?;
        if status >= 300 {
            let code = code.or_else(|| element(&text, "Code"));
            return Err(QueueError::Status { status, code });
        }
        Ok((status, text))
    }

    /// The Shared Key `Authorization` value (Authorize with Shared Key, Blob and Queue services).
    fn shared_key(
        &self,
        method: &reqwest::Method,
        url: &reqwest::Url,
        date: &str,
        content_type: &str,
        length: &str,
        query: &[(&str, String)],
    ) -> String {
        use hmac::{Hmac, Mac};
        let mut resource = format!("/{}{}", self.inner.name, url.path());
        let mut params: Vec<(String, &str)> = query.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
        params.sort();
        for (k, v) in params {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since, If-Match, If-None-Match,
        // If-Unmodified-Since, Range, then the x-ms- headers (sorted) and the resource.
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n{resource}"
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.inner.key).expect("HMAC accepts keys of any length");
        mac.update(to_sign.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        format!("SharedKey {}:{signature}", self.inner.name)
    }
}

/// One queue message as the service returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    /// `MessageId`.
    pub id: String,
    /// `PopReceipt` (empty for a peeked message).
    pub pop_receipt: String,
    /// `MessageText` as stored (base64 when the writer encoded it).
    pub text: String,
    /// `DequeueCount` (this retrieval included).
    pub dequeue_count: u32,
    /// `InsertionTime`.
    pub insertion_time: SystemTime,
    /// `ExpirationTime`.
    pub expiration_time: SystemTime,
    /// `TimeNextVisible` (`UNIX_EPOCH` for a peeked message).
    pub next_visible_time: SystemTime,
}

impl QueueMessage {
    /// The text, base64-decoded (as a queue trigger with `messageEncoding: base64` reads it); `None` when it is not
    /// base64 of UTF-8 text.
    pub fn decoded_text(&self) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.text.trim()).ok()?;
        String::from_utf8(bytes).ok()
    }
}

/// One queue of a [`QueueService`].
#[derive(Clone, Debug)]
pub struct Queue {
    service: QueueService,
    name: String,
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the queue; an existing one is fine.
    pub async fn create_if_missing(&self) -> Result<(), QueueError> {
        match self.service.send(reqwest::Method::PUT, &self.name, &[], None).await {
            Ok(_) | Err(QueueError::Status { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Puts a message with this exact text (encode it first when the reader expects base64), invisible for
    /// `visible_after` when given.
    pub async fn put(&self, text: &str, visible_after: Option<Duration>) -> Result<(), QueueError> {
        let body = format!("<QueueMessage><MessageText>{}</MessageText></QueueMessage>", xml_escape(text));
        let query: Vec<(&str, String)> =
            visible_after.map(|d| vec![("visibilitytimeout", d.as_secs().to_string())]).unwrap_or_default();
        self.service.send(reqwest::Method::POST, &format!("{}/messages", self.name), &query, Some(body)).await?;
        Ok(())
    }

    /// Puts `text` base64-encoded (what a queue trigger reads by default).
    pub async fn put_base64(&self, text: &str) -> Result<(), QueueError> {
        self.put(&base64::engine::general_purpose::STANDARD.encode(text), None).await
    }

    /// Gets up to `max` (1..=32) visible messages and hides them for `visibility` (at least 1 s).
    pub async fn get(&self, max: u32, visibility: Duration) -> Result<Vec<QueueMessage>, QueueError> {
        let query = [
            ("numofmessages", max.clamp(1, 32).to_string()),
            ("visibilitytimeout", visibility.as_secs().max(1).to_string()),
        ];
        let (_, xml) =
            self.service.send(reqwest::Method::GET, &format!("{}/messages", self.name), &query, None).await?;
        parse_messages(&xml)
    }

    /// Peeks at up to `max` (1..=32) visible messages without hiding them.
    pub async fn peek(&self, max: u32) -> Result<Vec<QueueMessage>, QueueError> {
        let query = [("numofmessages", max.clamp(1, 32).to_string()), ("peekonly", "true".to_string())];
        let (_, xml) =
            self.service.send(reqwest::Method::GET, &format!("{}/messages", self.name), &query, None).await?;
        parse_messages(&xml)
    }

    /// Deletes a message retrieved with [`Queue::get`].
    pub async fn delete(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let query = [("popreceipt", message.pop_receipt.clone())];
        let path = format!("{}/messages/{}", self.name, message.id);
        self.service.send(reqwest::Method::DELETE, &path, &query, None).await.map(drop)
    }

    /// Makes a retrieved message visible again after `visibility` (its text unchanged).
    pub async fn release(&self, message: &QueueMessage, visibility: Duration) -> Result<(), QueueError> {
        let query =
            [("popreceipt", message.pop_receipt.clone()), ("visibilitytimeout", visibility.as_secs().to_string())];
        let path = format!("{}/messages/{}", self.name, message.id);
        self.service.send(reqwest::Method::PUT, &path, &query, None).await.map(drop)
    }

    /// Deletes every message.
    pub async fn clear(&self) -> Result<(), QueueError> {
        self.service.send(reqwest::Method::DELETE, &format!("{}/messages", self.name), &[], None).await.map(drop)
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[at..at + end + 2]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The unescaped text of the first `<tag>…</tag>` in `xml`.
fn element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml_unescape(&xml[start..end]))
}

fn parse_messages(xml: &str) -> Result<Vec<QueueMessage>, QueueError> {
    let mut messages = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<QueueMessage>") {
        let end = rest[start..].find("</QueueMessage>").ok_or_else(|| QueueError::Answer(xml.to_string()))? + start;
        let one = &rest[start..end];
        let time = |tag: &str| -> Result<SystemTime, QueueError> {
            match element(one, tag) {
                Some(t) => httpdate::parse_http_date(&t).map_err(|_| QueueError::Answer(format!("{tag} {t:?}"))),
                None => Ok(UNIX_EPOCH),
            }
        };
        messages.push(QueueMessage {
            id: element(one, "MessageId").ok_or_else(|| QueueError::Answer("a message without MessageId".into()))?,
            pop_receipt: element(one, "PopReceipt").unwrap_or_default(),
            text: element(one, "MessageText").unwrap_or_default(),
            dequeue_count: element(one, "DequeueCount").and_then(|c| c.trim().parse().ok()).unwrap_or(0),
            insertion_time: time("InsertionTime")?,
            expiration_time: time("ExpirationTime")?,
            next_visible_time: time("TimeNextVisible")?,
        });
        rest = &rest[end..];
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_name_the_queue_endpoint() {
        let dev = QueueService::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.endpoint(), "http://127.0.0.1:10001/devstoreaccount1");
        let key = crate::azurite::ACCOUNT_KEY;
        let explicit = QueueService::from_connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName=a;AccountKey={key};QueueEndpoint=http://127.0.0.1:5/a/;"
        ))
        .unwrap();
        assert_eq!(explicit.endpoint(), "http://127.0.0.1:5/a");
        let public = QueueService::from_connection_string(&format!("AccountName=acct;AccountKey={key}")).unwrap();
        assert_eq!(public.endpoint(), "https://acct.queue.core.windows.net");
        assert!(matches!(QueueService::from_connection_string("AccountName=a"), Err(QueueError::Connection(_))));
        let tables_only = format!("AccountName=devstoreaccount1;AccountKey={key};TableEndpoint=http://127.0.0.1:5/x");
        assert!(matches!(QueueService::from_connection_string(&tables_only), Err(QueueError::Connection(_))));
    }

    #[test]
    fn messages_are_parsed_and_unescaped() {
        let xml = "<?xml version=\"1.0\"?><QueueMessagesList><QueueMessage><MessageId>m1</MessageId>\
            <InsertionTime>Fri, 09 Oct 2009 21:04:30 GMT</InsertionTime><ExpirationTime>Fri, 16 Oct 2009 21:04:30 GMT\
            </ExpirationTime><PopReceipt>p+1</PopReceipt><TimeNextVisible>Fri, 09 Oct 2009 23:29:20 GMT\
            </TimeNextVisible><DequeueCount>2</DequeueCount><MessageText>a &amp; &lt;b&gt; &#233;</MessageText>\
            </QueueMessage><QueueMessage><MessageId>m2</MessageId><MessageText></MessageText></QueueMessage>\
            </QueueMessagesList>";
        let got = parse_messages(xml).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "m1");
        assert_eq!(got[0].pop_receipt, "p+1");
        assert_eq!(got[0].dequeue_count, 2);
        assert_eq!(got[0].text, "a & <b> é");
        assert_eq!(got[0].insertion_time, UNIX_EPOCH + Duration::from_secs(1_255_122_270));
        assert_eq!(got[1].text, "");
        assert_eq!(xml_unescape(&xml_escape("<x a='1'>&</x>")), "<x a='1'>&</x>");
    }
}
