//! Where the bridge's state and its durable work live: a Functions-style connection (`<name>` as a connection
//! string, else the `<name>__*` identity settings). State: `StateStorage` first, then the host's
//! `AzureWebJobsStorage`. The work queue: always `AzureWebJobsStorage`, the connection its queue trigger reads
//! (`work-items/function.json`).

use super::read::{lookup, Lookup, Reader};
use crate::availability::{Availability, Problem};
use crate::settings as names;
use azure_storage::ConnectionString;

/// How to reach one storage service (tables or queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConnection {
    /// `UseDevelopmentStorage=true`: Azurite on 127.0.0.1 (tables 10002, queues 10001).
    Emulator,
    /// A connection string with an account key or SAS (kept whole; parsed by `store` and `queue`).
    ConnectionString(String),
    /// `<name>__tableServiceUri` (or `__queueServiceUri`) with a managed identity (user-assigned when `client_id`
    /// is set).
    ManagedIdentity { service_uri: String, client_id: Option<String> },
}

/// The queue of durable work: the queue trigger `work-items` reads it, and the host moves a message that failed
/// `maxDequeueCount` times to `work-items-poison`, which the `dead-letters` trigger reads.
pub const WORK_QUEUE: &str = "work-items";

#[derive(Debug, Clone)]
pub struct WorkQueueConfig {
    pub connection: StorageConnection,
    pub queue_name: &'static str,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub connection: StorageConnection,
    /// Which setting the connection came from, for messages.
    pub source: &'static str,
    pub table_name: String,
}

/// The settings of one Functions-style connection (for one service: `uri` is its `__<service>ServiceUri`).
struct Connection {
    string: &'static str,
    uri: &'static str,
    credential: &'static str,
    client_id: &'static str,
}

const CONNECTIONS: [Connection; 2] = [
    Connection {
        string: names::STATE_STORAGE,
        uri: names::STATE_STORAGE_TABLE_URI,
        credential: names::STATE_STORAGE_CREDENTIAL,
        client_id: names::STATE_STORAGE_CLIENT_ID,
    },
    Connection {
        string: names::WEBJOBS_STORAGE,
        uri: names::WEBJOBS_STORAGE_TABLE_URI,
        credential: names::WEBJOBS_STORAGE_CREDENTIAL,
        client_id: names::WEBJOBS_STORAGE_CLIENT_ID,
    },
];

const WORK_QUEUE_CONNECTION: Connection = Connection {
    string: names::WEBJOBS_STORAGE,
    uri: names::WEBJOBS_STORAGE_QUEUE_URI,
    credential: names::WEBJOBS_STORAGE_CREDENTIAL,
    client_id: names::WEBJOBS_STORAGE_CLIENT_ID,
};

/// Checks a connection string at startup, so a typo stops the app with the setting's name.
fn connection_string(cs: &str) -> Result<(), String> {
    // The crate's parse errors quote the whole string, account key included: never pass them on.
    let parsed =
        ConnectionString::new(cs).map_err(|_| "not a storage connection string (a `key=value` pair is malformed)")?;
    if parsed.use_development_storage == Some(true) {
        return Ok(());
    }
    parsed.account_name.ok_or("no AccountName")?;
    parsed.storage_credentials().map_err(|_| "no AccountKey or SharedAccessSignature".to_string())?;
    Ok(())
}

fn table_name(value: &str) -> Result<String, String> {
    let usable = (3..=63).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric())
        && value.starts_with(|c: char| c.is_ascii_alphabetic());
    usable
        .then(|| value.to_string())
        .ok_or_else(|| "a table name is 3–63 letters and digits, starting with a letter".into())
}

/// `Ok(None)` when this connection is not configured at all.
fn connection(r: &mut Reader<'_>, c: &Connection) -> Result<Option<StorageConnection>, Problem> {
    let env = r.env();
    match lookup(env, c.string) {
        Lookup::Unresolved => return Err(Problem::UnresolvedKeyVaultReference(c.string)),
        Lookup::Set(v) if v.replace(' ', "").eq_ignore_ascii_case("UseDevelopmentStorage=true") => {
            return Ok(Some(StorageConnection::Emulator))
        }
        Lookup::Set(v) => {
            if let Err(reason) = connection_string(v) {
                r.invalid(c.string, reason);
            }
            return Ok(Some(StorageConnection::ConnectionString(v.to_string())));
        }
        Lookup::Unset => {}
    }
    let Some(uri) = env.get(c.uri) else { return Ok(None) };
    let service_uri = r.parse(c.uri, Some(uri), super::read::base_url).unwrap_or_default();
    match env.get(c.credential) {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("managedidentity") => {}
        Some(other) => r.invalid(c.credential, format!("`{other}`: only `managedidentity` is supported")),
    }
    Ok(Some(StorageConnection::ManagedIdentity { service_uri, client_id: env.get(c.client_id).map(str::to_string) }))
}

/// The work queue, or why durable work is off (failures are then answered 503, for the sender to retry).
pub(super) fn read_work_queue(mut r: Reader<'_>) -> Availability<WorkQueueConfig> {
    match connection(&mut r, &WORK_QUEUE_CONNECTION) {
        Ok(Some(connection)) => Availability::Ready(WorkQueueConfig { connection, queue_name: WORK_QUEUE }),
        Ok(None) => Availability::Off(vec![Problem::Other(format!(
            "no work queue: set {} (or {} with {}=managedidentity)",
            names::WEBJOBS_STORAGE,
            names::WEBJOBS_STORAGE_QUEUE_URI,
            names::WEBJOBS_STORAGE_CREDENTIAL
        ))]),
        Err(problem) => Availability::Off(vec![problem]),
    }
}

pub(super) fn read(mut r: Reader<'_>) -> Availability<StorageConfig> {
    let table_name = r.optional_as(names::STATE_TABLE_NAME, table_name);
    for c in &CONNECTIONS {
        match connection(&mut r, c) {
            Ok(None) => continue,
            Ok(Some(connection)) => {
                let Some(table_name) = table_name else { break };
                return Availability::Ready(StorageConfig { connection, source: c.string, table_name });
            }
            Err(problem) => return Availability::Off(vec![problem]),
        }
    }
    Availability::Off(vec![Problem::Other(format!(
        "no state storage: set {} (or {}), or {} with {}=managedidentity",
        names::STATE_STORAGE,
        names::WEBJOBS_STORAGE,
        names::STATE_STORAGE_TABLE_URI,
        names::STATE_STORAGE_CREDENTIAL
    ))])
}
