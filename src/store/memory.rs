//! An in-memory `Table` with the same ETag semantics, for unit tests and for recording writes.

use super::{Etag, Key, Props, Range, StoreError, Table, Write};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryTable {
    entities: Mutex<BTreeMap<Key, (Props, Etag)>>,
    version: AtomicU64,
    /// Every successful write, in order: ("insert" | "replace" | "delete", key, props).
    pub writes: Mutex<Vec<(&'static str, Key, Props)>>,
    /// The size of every entity group transaction that landed, in order (its writes are in `writes` too).
    pub batches: Mutex<Vec<usize>>,
    /// Writes still to answer ambiguously (see `answer_next_writes_ambiguously`).
    ambiguous: AtomicUsize,
}

impl MemoryTable {
    fn next_etag(&self) -> Etag {
        Etag(format!("W/\"{}\"", self.version.fetch_add(1, Ordering::Relaxed) + 1))
    }

    fn record(&self, op: &'static str, key: &Key, props: &Props) {
        self.writes.lock().unwrap().push((op, key.clone(), props.clone()));
    }

    /// The next `n` inserts and replaces land but answer as if they had lost a race (409 / 412): what a storage
    /// retry of a write whose first answer was lost meets.
    pub fn answer_next_writes_ambiguously(&self, n: usize) {
        self.ambiguous.store(n, Ordering::SeqCst);
    }

    fn landed_ambiguously(&self) -> bool {
        self.ambiguous.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

#[async_trait::async_trait]
impl Table for MemoryTable {
    async fn get(&self, key: &Key) -> Result<Option<(Props, Etag)>, StoreError> {
        Ok(self.entities.lock().unwrap().get(key).cloned())
    }

    async fn get_rows(&self, partition: &str, rows: &[&str]) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        let entities = self.entities.lock().unwrap();
        Ok(rows
            .iter()
            .filter_map(|row| {
                let key = Key { partition: partition.to_string(), row: row.to_string() };
                entities.get(&key).map(|(props, etag)| (row.to_string(), props.clone(), etag.clone()))
            })
            .collect())
    }

    async fn rows(&self, partition: &str) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        let entities = self.entities.lock().unwrap();
        Ok(entities
            .iter()
            .filter(|(key, _)| key.partition == partition)
            .map(|(key, (props, etag))| (key.row.clone(), props.clone(), etag.clone()))
            .collect())
    }

    async fn scan(&self, row: &str, except: (&str, &str)) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        let entities = self.entities.lock().unwrap();
        let excluded = |props: &Props| props.get(except.0).and_then(|v| v.as_str()) == Some(except.1);
        Ok(entities
            .iter()
            .filter(|(key, (props, _))| key.row == row && !excluded(props))
            .map(|(key, (props, etag))| (key.partition.clone(), props.clone(), etag.clone()))
            .collect())
    }

    async fn range(&self, range: &Range) -> Result<Vec<(Key, Props)>, StoreError> {
        let entities = self.entities.lock().unwrap();
        let selected =
            entities.iter().filter(|(key, (props, _))| range.selects(key, props)).map(|(key, (props, _))| {
                let props = if range.select.is_empty() {
                    props.clone()
                } else {
                    props
                        .iter()
                        .filter(|(name, _)| range.select.contains(&name.as_str()))
                        .map(|(n, v)| (n.clone(), v.clone()))
                        .collect()
                };
                (key.clone(), props)
            });
        Ok(selected.take(range.top.map_or(usize::MAX, |n| n as usize)).collect())
    }

    async fn insert(&self, key: &Key, props: Props) -> Result<Etag, StoreError> {
        let mut entities = self.entities.lock().unwrap();
        if entities.contains_key(key) {
            return Err(StoreError::Conflict);
        }
        let etag = self.next_etag();
        self.record("insert", key, &props);
        entities.insert(key.clone(), (props, etag.clone()));
        if self.landed_ambiguously() {
            return Err(StoreError::Conflict);
        }
        Ok(etag)
    }

    async fn replace(&self, key: &Key, props: Props, etag: &Etag) -> Result<Etag, StoreError> {
        let mut entities = self.entities.lock().unwrap();
        match entities.get(key) {
            None => Err(StoreError::NotFound),
            Some((_, current)) if current != etag => Err(StoreError::Changed),
            Some(_) => {
                let etag = self.next_etag();
                self.record("replace", key, &props);
                entities.insert(key.clone(), (props, etag.clone()));
                if self.landed_ambiguously() {
                    return Err(StoreError::Changed);
                }
                Ok(etag)
            }
        }
    }

    async fn delete(&self, key: &Key, etag: &Etag) -> Result<(), StoreError> {
        let mut entities = self.entities.lock().unwrap();
        match entities.get(key) {
            None => Err(StoreError::NotFound),
            Some((_, current)) if current != etag && etag.0 != "*" => Err(StoreError::Changed),
            Some(_) => {
                self.record("delete", key, &Props::new());
                entities.remove(key);
                Ok(())
            }
        }
    }

    async fn batch(&self, partition: &str, writes: &[Write]) -> Result<Vec<Etag>, StoreError> {
        let mut entities = self.entities.lock().unwrap();
        let key = |row: &str| Key { partition: partition.to_string(), row: row.to_string() };
        // All or none: every write is checked before any lands.
        for write in writes {
            match (write, entities.get(&key(write.row()))) {
                (Write::Insert { .. }, Some(_)) => return Err(StoreError::Conflict),
                (Write::Replace { .. }, None) => return Err(StoreError::NotFound),
                (Write::Replace { etag, .. }, Some((_, current))) if current != etag => {
                    return Err(StoreError::Changed)
                }
                _ => {}
            }
        }
        let mut etags = Vec::with_capacity(writes.len());
        for write in writes {
            let (op, props) = match write {
                Write::Insert { props, .. } => ("insert", props),
                Write::Replace { props, .. } => ("replace", props),
            };
            let etag = self.next_etag();
            self.record(op, &key(write.row()), props);
            entities.insert(key(write.row()), (props.clone(), etag.clone()));
            etags.push(etag);
        }
        self.batches.lock().unwrap().push(writes.len());
        if self.landed_ambiguously() {
            return Err(match writes.first() {
                Some(Write::Replace { .. }) => StoreError::Changed,
                _ => StoreError::Conflict,
            });
        }
        Ok(etags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(n: i64) -> Props {
        json!({ "N": n }).as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn a_batch_lands_every_write_or_none() {
        let table = MemoryTable::default();
        let key = |row: &str| Key { partition: "p".into(), row: row.into() };
        let a = table.insert(&key("a"), props(1)).await.unwrap();
        let clash =
            [Write::Insert { row: "b".into(), props: props(2) }, Write::Insert { row: "a".into(), props: props(3) }];
        assert_eq!(table.batch("p", &clash).await.unwrap_err(), StoreError::Conflict);
        assert!(table.get(&key("b")).await.unwrap().is_none(), "nothing of a refused batch lands");
        let stale = [Write::Replace { row: "a".into(), props: props(4), etag: Etag("W/\"0\"".into()) }];
        assert_eq!(table.batch("p", &stale).await.unwrap_err(), StoreError::Changed);
        let held = [
            Write::Insert { row: "b".into(), props: props(2) },
            Write::Replace { row: "a".into(), props: props(4), etag: a },
        ];
        let etags = table.batch("p", &held).await.unwrap();
        assert_eq!(table.get(&key("a")).await.unwrap().unwrap(), (props(4), etags[1].clone()));
        assert_eq!(table.get(&key("b")).await.unwrap().unwrap().0, props(2));
    }
}
