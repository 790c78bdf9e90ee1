//! Durable state in Azure Storage: event dedupe, incident claims, ticket links, sync progress and the work ledger in
//! Table Storage; the work queue (`queue`) in Queue Storage.
//!
//! Everything goes through the small `Table` interface (get / insert / replace-if-match / delete-if-match), so a
//! test can see exactly what was written, and the frozen `azure_data_tables` crate stays behind one module.

mod azure;
pub mod claim;
mod connection;
mod memory;
pub mod queue;
pub mod records;
pub mod runs;

pub use azure::AzureTable;
pub use memory::MemoryTable;
pub use records::*;

use crate::domain::TicketId;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// An entity's properties (no keys, no metadata).
pub(crate) type Props = Map<String, Value>;

/// The version of an entity as last read or written (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etag(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the entity already exists")]
    Conflict,
    #[error("the entity changed since it was read")]
    Changed,
    #[error("the entity does not exist")]
    NotFound,
    #[error("Table Storage is unavailable: {0}")]
    Unavailable(String),
}

/// An entity's address. Keys are derived from outside data by hashing or formatting numbers, so they never contain
/// the characters Table Storage forbids (`/ \ # ?`, quotes, control characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub partition: String,
    pub row: String,
}

/// The storage primitive every record goes through.
#[async_trait::async_trait]
pub trait Table: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<(Props, Etag)>, StoreError>;
    /// Some rows of one partition in one round trip; a row that does not exist is left out of the answer.
    async fn get_rows(&self, partition: &str, rows: &[&str]) -> Result<Vec<(String, Props, Etag)>, StoreError>;
    /// Every row of one partition (small partitions only: the work ledger).
    async fn rows(&self, partition: &str) -> Result<Vec<(String, Props, Etag)>, StoreError>;
    /// Every entity, across partitions, whose row key is `row` and whose text property `except.0` is not
    /// `except.1` (one paged query, filtered by Table Storage), as (partition, properties, ETag).
    async fn scan(&self, row: &str, except: (&str, &str)) -> Result<Vec<(String, Props, Etag)>, StoreError>;
    /// The entities `range` selects, in key order (partition, then row), at most `range.top`.
    async fn range(&self, range: &Range) -> Result<Vec<(Key, Props)>, StoreError>;
    /// Fails with `Conflict` when the entity exists.
    async fn insert(&self, key: &Key, props: Props) -> Result<Etag, StoreError>;
    /// Fails with `Changed` when the entity's ETag is no longer `etag`, `NotFound` when it is gone.
    async fn replace(&self, key: &Key, props: Props, etag: &Etag) -> Result<Etag, StoreError>;
    /// Fails with `Changed` when the entity's ETag is no longer `etag`.
    async fn delete(&self, key: &Key, etag: &Etag) -> Result<(), StoreError>;
    /// An entity group transaction: every write lands or none does, in one round trip (one partition, at most
    /// `MAX_BATCH` writes). Fails as its first write that cannot be applied would alone (`Conflict`, `Changed`,
    /// `NotFound`). Returns each write's new ETag, in order.
    async fn batch(&self, partition: &str, writes: &[Write]) -> Result<Vec<Etag>, StoreError>;
}

/// Most writes one entity group transaction holds (Table Storage's limit).
pub const MAX_BATCH: usize = 100;

/// One write of a `Table::batch`, by row key within the batch's partition.
#[derive(Debug, Clone)]
pub enum Write {
    /// Fails the batch with `Conflict` when the entity exists.
    Insert { row: String, props: Props },
    /// Fails the batch with `Changed` (or `NotFound`) when the entity is no longer at `etag`.
    Replace { row: String, props: Props, etag: Etag },
}

impl Write {
    pub fn row(&self) -> &str {
        match self {
            Write::Insert { row, .. } | Write::Replace { row, .. } => row,
        }
    }

    /// An insert of `value` at `key.row`.
    pub fn insert<T: Serialize>(key: &Key, value: &T) -> Write {
        Write::Insert { row: key.row.clone(), props: to_props(value) }
    }

    /// A replace of the entity at `key.row`, if still at `etag`, with `value`.
    pub fn replace<T: Serialize>(key: &Key, value: &T, etag: &Etag) -> Write {
        Write::Replace { row: key.row.clone(), props: to_props(value), etag: etag.clone() }
    }
}

/// A query over a range of partitions (the run history's hours): partition keys `partitions.0 ..= partitions.1`,
/// row keys from `rows_from`, properties equal to `equal` (text or number), only `select`ed properties (all when
/// empty), at most `top` entities (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub partitions: (String, String),
    pub rows_from: Option<String>,
    pub equal: Vec<(&'static str, Value)>,
    pub select: Vec<&'static str>,
    pub top: Option<u32>,
}

impl Range {
    /// One partition, every row.
    pub fn partition(partition: &str) -> Range {
        Range { partitions: (partition.to_string(), partition.to_string()), ..Range::default() }
    }

    /// Whether an entity is selected (the in-memory table's evaluation of the same query).
    pub(crate) fn selects(&self, key: &Key, props: &Props) -> bool {
        let (from, to) = &self.partitions;
        key.partition >= *from
            && key.partition <= *to
            && self.rows_from.as_ref().is_none_or(|r| key.row >= *r)
            && self.equal.iter().all(|(name, value)| props.get(*name) == Some(value))
    }
}

/// A record with the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Etag,
}

/// Typed access to the records, shared by both directions.
#[derive(Clone)]
pub struct Store {
    table: Arc<dyn Table>,
}

/// A stable, key-safe digest of outside text (first 128 bits of SHA-256, hex).
pub(crate) fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

fn to_props<T: Serialize>(value: &T) -> Props {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Props::new(),
    }
}

fn from_props<T: DeserializeOwned>(props: Props) -> Result<T, StoreError> {
    serde_json::from_value(Value::Object(props)).map_err(|e| StoreError::Unavailable(format!("unreadable record: {e}")))
}

impl Store {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Store { table }
    }

    /// The raw table (for read-only probes).
    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<Versioned<T>>, StoreError> {
        match self.table.get(key).await? {
            None => Ok(None),
            Some((props, etag)) => Ok(Some(Versioned { value: from_props(props)?, etag })),
        }
    }

    /// Three records of one partition in one round trip (the cf-webhook's single read per delivery).
    pub(crate) async fn get_three<A: DeserializeOwned, B: DeserializeOwned, C: DeserializeOwned>(
        &self,
        a: &Key,
        b: &Key,
        c: &Key,
    ) -> Result<(Option<Versioned<A>>, Option<Versioned<B>>, Option<Versioned<C>>), StoreError> {
        debug_assert!(a.partition == b.partition && b.partition == c.partition, "one query reads one partition");
        let mut found = (None, None, None);
        for (row, props, etag) in self.table.get_rows(&a.partition, &[&a.row, &b.row, &c.row]).await? {
            if row == a.row {
                found.0 = Some(Versioned { value: from_props(props)?, etag });
            } else if row == b.row {
                found.1 = Some(Versioned { value: from_props(props)?, etag });
            } else if row == c.row {
                found.2 = Some(Versioned { value: from_props(props)?, etag });
            }
        }
        Ok(found)
    }

    /// The record at `key` and which of `others` (row keys of its partition) exist, in one query for up to
    /// `ROWS_PER_QUERY` rows in all (more take one query per further chunk).
    pub async fn get_with_rows<T: DeserializeOwned>(
        &self,
        key: &Key,
        others: &[String],
    ) -> Result<(Option<Versioned<T>>, Vec<String>), StoreError> {
        let mut rows: Vec<&str> = vec![&key.row];
        rows.extend(others.iter().map(String::as_str));
        let (mut record, mut found) = (None, Vec::new());
        for chunk in rows.chunks(ROWS_PER_QUERY) {
            for (row, props, etag) in self.table.get_rows(&key.partition, chunk).await? {
                if row == key.row {
                    record = Some(Versioned { value: from_props(props)?, etag });
                } else {
                    found.push(row);
                }
            }
        }
        Ok((record, found))
    }

    /// Every record of one partition, with its row key.
    pub async fn rows<T: DeserializeOwned>(&self, partition: &str) -> Result<Vec<(String, Versioned<T>)>, StoreError> {
        let mut found = Vec::new();
        for (row, props, etag) in self.table.rows(partition).await? {
            found.push((row, Versioned { value: from_props(props)?, etag }));
        }
        Ok(found)
    }

    /// The ticket records whose close is not mirrored, by ticket id (the reconcile's watch list: a ticket leaves
    /// it when its close reaches ContraForce, and comes back when a reopen arms its close again).
    pub async fn open_tickets(&self) -> Result<Vec<(TicketId, TicketRecord)>, StoreError> {
        let mut found = Vec::new();
        for (partition, props, _) in self.table.scan(TICKET_ROW, ("Close", "Closed")).await? {
            let Some(id) = partition.strip_prefix("tkt-").and_then(|id| id.parse::<TicketId>().ok()) else { continue };
            found.push((id, from_props(props)?));
        }
        found.sort_by_key(|(id, _)| *id);
        Ok(found)
    }

    pub async fn insert<T: Serialize>(&self, key: &Key, value: &T) -> Result<Etag, StoreError> {
        self.table.insert(key, to_props(value)).await
    }

    pub async fn replace<T: Serialize>(&self, key: &Key, value: &T, etag: &Etag) -> Result<Etag, StoreError> {
        self.table.replace(key, to_props(value), etag).await
    }

    /// Writes of one partition in one round trip, all or none (`Table::batch`).
    pub async fn batch(&self, partition: &str, writes: &[Write]) -> Result<Vec<Etag>, StoreError> {
        debug_assert!(!writes.is_empty() && writes.len() <= MAX_BATCH);
        self.table.batch(partition, writes).await
    }

    pub async fn delete(&self, key: &Key, etag: &Etag) -> Result<(), StoreError> {
        match self.table.delete(key, etag).await {
            Err(StoreError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// Reads, changes and writes a record until the write wins against concurrent writers. `change` returns false
    /// when nothing needs writing. Returns the record as stored.
    pub async fn update<T, F>(&self, key: &Key, mut change: F) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(&mut T) -> bool,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some(mut current) = self.get::<T>(key).await? else { return Ok(None) };
            if !change(&mut current.value) {
                return Ok(Some(current.value));
            }
            match self.replace(key, &current.value, &current.etag).await {
                Ok(_) => return Ok(Some(current.value)),
                Err(StoreError::Changed) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("too much contention on one record; retry".into()))
    }
}

const MAX_UPDATE_ATTEMPTS: usize = 20;

/// Row keys one `get_rows` query names (its filter stays far inside the service's URL limit).
const ROWS_PER_QUERY: usize = 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_key_safe_and_stable() {
        let d = digest("cf|sentinel|a/b\\c#d?e'f");
        assert_eq!(d.len(), 32);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(d, digest("cf|sentinel|a/b\\c#d?e'f"));
        assert_ne!(d, digest("cf|sentinel|other"));
    }

    #[tokio::test]
    async fn update_retries_until_it_wins_and_never_goes_backwards() {
        let store = Store::new(Arc::new(MemoryTable::default()));
        let key = Key { partition: "p".into(), row: "r".into() };
        store
            .insert(&key, &TicketRecord::new(crate::domain::ExternalRef::parse("cf|s|1").unwrap(), false))
            .await
            .unwrap();
        let tasks: Vec<_> = (1..=10)
            .map(|n| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    store
                        .update::<TicketRecord, _>(&key, |t| {
                            let changed = n > t.last_action_id;
                            t.last_action_id = t.last_action_id.max(n);
                            changed
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let stored = store.get::<TicketRecord>(&key).await.unwrap().unwrap().value;
        assert_eq!(stored.last_action_id, 10);
    }
}
