//! `Table` on Azure Table Storage through the 0.21 `azure_data_tables` crate, with the two gaps closed here:
//! connection strings (the crate has no `from_connection_string`) and user-assigned managed identity (`identity`).

use super::connection::{endpoint, retry, transport, unanswered, Endpoint, CALL_TIMEOUT};
use super::{Etag, Key, Props, Range, StoreError, Table, Write};
use crate::config::StorageConfig;
use azure_core::error::ErrorKind;
use azure_core::StatusCode;
use azure_data_tables::clients::TableServiceClientBuilder;
use azure_data_tables::prelude::*;
use serde_json::Value;

pub struct AzureTable {
    client: TableClient,
}

impl AzureTable {
    pub fn new(
        config: &StorageConfig,
        http: &reqwest::Client,
        extra_ca_pem: Option<&[u8]>,
    ) -> azure_core::Result<Self> {
        let builder = match endpoint(&config.connection, http, |cs| cs.table_endpoint.map(str::to_string))? {
            Endpoint::Emulator => TableServiceClientBuilder::emulator(),
            Endpoint::At(location, credentials) => TableServiceClientBuilder::with_location(location, credentials),
        };
        let service = builder.retry(retry()).transport(transport(extra_ca_pem)?).build();
        Ok(AzureTable { client: service.table_client(config.table_name.clone()) })
    }

    /// Creates the table if it does not exist (an existing table is fine).
    pub(crate) async fn ensure_table(&self) -> Result<(), StoreError> {
        self.create_table().await.map(drop)
    }

    /// Creates the table; false when it existed.
    async fn create_table(&self) -> Result<bool, StoreError> {
        match within(self.client.create().into_future()).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every entity matching an OData filter, all pages read; a missing table holds nothing.
    async fn query(&self, filter: String) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        self.query_keyed(filter, "RowKey").await
    }

    /// The entities `filter` selects, each with the key property `key` ("RowKey" or "PartitionKey").
    async fn query_keyed(&self, filter: String, key: &str) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        let entities = read_pages(self.client.query().filter(filter), usize::MAX).await?;
        entities.into_iter().map(|e| keyed_with_etag(e, key)).collect()
    }

    fn entity(&self, key: &Key) -> EntityClient {
        self.client.partition_key_client(key.partition.clone()).entity_client(key.row.clone())
    }

    /// Runs an operation; if the table is missing (first start, or someone deleted it), creates it and retries.
    async fn with_table<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = azure_core::Result<T>>,
    {
        match within(op()).await {
            Err(StoreError::Unavailable(detail)) if detail.contains("TableNotFound") => {
                self.ensure_table().await?;
                within(op()).await
            }
            other => other,
        }
    }
}

/// A query's entities, page after page (the service may split even a tiny answer into pages: continuation
/// tokens) until there are `limit`; a missing table holds nothing.
async fn read_pages(
    query: azure_data_tables::operations::QueryEntityBuilder,
    limit: usize,
) -> Result<Vec<Props>, StoreError> {
    use futures::StreamExt;
    let entities = within(async move {
        let mut pages = query.into_stream::<Props>();
        let mut entities = Vec::new();
        while let Some(page) = pages.next().await {
            entities.extend(page?.entities);
            if entities.len() >= limit {
                break;
            }
        }
        Ok(entities)
    })
    .await;
    match entities {
        Ok(entities) => Ok(entities),
        Err(StoreError::Unavailable(detail)) if detail.contains("TableNotFound") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Maps the crate's errors to ours, with a hard time limit.
async fn within<T>(fut: impl std::future::Future<Output = azure_core::Result<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(StoreError::Unavailable("timed out".into())),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.kind() {
            ErrorKind::HttpResponse { status: StatusCode::Conflict, .. } => StoreError::Conflict,
            ErrorKind::HttpResponse { status: StatusCode::PreconditionFailed, .. } => StoreError::Changed,
            ErrorKind::HttpResponse { status: StatusCode::NotFound, error_code }
                if error_code.as_deref() != Some("TableNotFound") =>
            {
                StoreError::NotFound
            }
            ErrorKind::HttpResponse { status, error_code } => {
                StoreError::Unavailable(format!("{status} {}", error_code.as_deref().unwrap_or("")))
            }
            _ => StoreError::Unavailable(unanswered(&e)),
        }),
    }
}

/// Drops the keys and OData metadata the service adds, leaving the record's own properties.
fn own_properties(mut props: Props) -> Props {
    props.retain(|k, _| !matches!(k.as_str(), "PartitionKey" | "RowKey" | "Timestamp") && !k.contains("odata"));
    props
}

fn with_keys(key: &Key, props: &Props) -> Props {
    let mut entity = props.clone();
    entity.insert("PartitionKey".into(), Value::String(key.partition.clone()));
    entity.insert("RowKey".into(), Value::String(key.row.clone()));
    entity
}

/// `PartitionKey eq 'p' and (RowKey eq 'a' or RowKey eq 'b')`, quotes doubled as OData requires.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn scan_filter(row: &str, except: (&str, &str)) -> String {
    format!("RowKey eq {} and {} ne {}", quoted(row), except.0, quoted(except.1))
}

fn rows_filter(partition: &str, rows: &[&str]) -> String {
    let rows: Vec<String> = rows.iter().map(|r| format!("RowKey eq {}", quoted(r))).collect();
    format!("PartitionKey eq {} and ({})", quoted(partition), rows.join(" or "))
}

/// The OData filter of a `Range`.
fn range_filter(range: &Range) -> String {
    let (from, to) = &range.partitions;
    let mut parts = if from == to {
        vec![format!("PartitionKey eq {}", quoted(from))]
    } else {
        vec![format!("PartitionKey ge {}", quoted(from)), format!("PartitionKey le {}", quoted(to))]
    };
    if let Some(row) = &range.rows_from {
        parts.push(format!("RowKey ge {}", quoted(row)));
    }
    for (name, value) in &range.equal {
        match value {
            Value::String(text) => parts.push(format!("{name} eq {}", quoted(text))),
            other => parts.push(format!("{name} eq {other}")),
        }
    }
    parts.join(" and ")
}

/// A queried entity: its row key, own properties and ETag (queries carry it in `odata.etag`).
fn keyed_with_etag(mut entity: Props, key: &str) -> Result<(String, Props, Etag), StoreError> {
    let text = |entity: &mut Props, name: &str| match entity.remove(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(StoreError::Unavailable(format!("a queried entity has no {name}"))),
    };
    let row = text(&mut entity, key)?;
    let etag = text(&mut entity, "odata.etag")?;
    Ok((row, own_properties(entity), Etag(etag)))
}

fn if_match(etag: &Etag) -> IfMatchCondition {
    IfMatchCondition::Etag(etag.0.clone().into())
}

#[async_trait::async_trait]
impl Table for AzureTable {
    async fn get(&self, key: &Key) -> Result<Option<(Props, Etag)>, StoreError> {
        // A read never creates the table: a missing table holds nothing.
        let entity = self.entity(key);
        match within(entity.get::<Props>().into_future()).await {
            Ok(found) => Ok(Some((own_properties(found.entity), Etag(found.etag.to_string())))),
            Err(StoreError::NotFound) => Ok(None),
            Err(StoreError::Unavailable(detail)) if detail.contains("TableNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_rows(&self, partition: &str, rows: &[&str]) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        self.query(rows_filter(partition, rows)).await
    }

    async fn rows(&self, partition: &str) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        self.query(format!("PartitionKey eq {}", quoted(partition))).await
    }

    async fn scan(&self, row: &str, except: (&str, &str)) -> Result<Vec<(String, Props, Etag)>, StoreError> {
        self.query_keyed(scan_filter(row, except), "PartitionKey").await
    }

    async fn range(&self, range: &Range) -> Result<Vec<(Key, Props)>, StoreError> {
        let mut query = self.client.query().filter(range_filter(range));
        if !range.select.is_empty() {
            let mut select = vec!["PartitionKey", "RowKey"];
            select.extend(range.select.iter().copied());
            query = query.select(select.join(","));
        }
        if let Some(top) = range.top {
            query = query.top(Top::new(top.min(1000)));
        }
        let limit = range.top.map_or(usize::MAX, |n| n as usize);
        let entities = read_pages(query, limit).await?;
        let mut found = Vec::with_capacity(entities.len().min(limit));
        for mut entity in entities.into_iter().take(limit) {
            let mut text = |name: &str| match entity.remove(name) {
                Some(Value::String(s)) => Ok(s),
                _ => Err(StoreError::Unavailable(format!("a queried entity has no {name}"))),
            };
            let key = Key { partition: text("PartitionKey")?, row: text("RowKey")? };
            found.push((key, own_properties(entity)));
        }
        Ok(found)
    }

    async fn insert(&self, key: &Key, props: Props) -> Result<Etag, StoreError> {
        let entity = with_keys(key, &props);
        let inserted = self
            .with_table(|| {
                let builder = self.client.insert::<_, Props>(&entity);
                async move { builder?.into_future().await }
            })
            .await?;
        Ok(Etag(inserted.etag.to_string()))
    }

    async fn replace(&self, key: &Key, props: Props, etag: &Etag) -> Result<Etag, StoreError> {
        let entity = with_keys(key, &props);
        let client = self.entity(key);
        let updated = self
            .with_table(|| {
                let builder = client.update(&entity, if_match(etag));
                async move { builder?.into_future().await }
            })
            .await?;
        Ok(Etag(updated.etag.to_string()))
    }

    async fn delete(&self, key: &Key, etag: &Etag) -> Result<(), StoreError> {
        let client = self.entity(key);
        self.with_table(|| client.delete().if_match(if_match(etag)).into_future()).await.map(drop)
    }

    async fn batch(&self, partition: &str, writes: &[Write]) -> Result<Vec<Etag>, StoreError> {
        let client = self.client.partition_key_client(partition.to_string());
        let build = || {
            let mut transaction = client.transaction();
            for write in writes {
                let key = Key { partition: partition.to_string(), row: write.row().to_string() };
                transaction = match write {
                    Write::Insert { props, .. } => transaction.insert(with_keys(&key, props))?,
                    Write::Replace { props, etag, .. } => {
                        transaction.update(key.row.clone(), with_keys(&key, props), Some(if_match(etag)))?
                    }
                };
            }
            azure_core::Result::Ok(transaction)
        };
        let send = || async {
            let answered = within(async { build()?.into_future().await }).await?;
            // The batch answers 202 as a whole; a write it refused answers in its own part (and nothing landed).
            let mut etags = Vec::with_capacity(writes.len());
            for part in &answered.operation_responses {
                match part.status_code {
                    status if status.is_success() => {
                        etags.push(Etag(part.etag.as_ref().map(ToString::to_string).unwrap_or_default()))
                    }
                    StatusCode::Conflict => return Err(StoreError::Conflict),
                    StatusCode::PreconditionFailed => return Err(StoreError::Changed),
                    StatusCode::NotFound => return Err(StoreError::NotFound),
                    status => return Err(StoreError::Unavailable(format!("{status} in a batch"))),
                }
            }
            if etags.len() != writes.len() {
                return Err(StoreError::Unavailable("a batch answered for fewer writes than it held".into()));
            }
            Ok(etags)
        };
        match send().await {
            // A part's 404 is a missing entity or a missing table: only a table just created is tried again.
            Err(StoreError::NotFound) if self.create_table().await? => send().await,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_filter_reads_one_partition_and_doubles_quotes() {
        assert_eq!(
            rows_filter("inc-ab", &["incident", "evt-'x"]),
            "PartitionKey eq 'inc-ab' and (RowKey eq 'incident' or RowKey eq 'evt-''x')"
        );
    }

    #[test]
    fn the_scan_filter_reads_one_row_key_across_partitions_and_excludes_one_value() {
        assert_eq!(scan_filter("ticket", ("Close", "Closed")), "RowKey eq 'ticket' and Close ne 'Closed'");
    }

    #[test]
    fn the_range_filter_bounds_partitions_and_rows_and_compares_text_and_numbers() {
        let range = Range {
            partitions: ("run-2026120400".into(), "run-2026120423".into()),
            rows_from: Some("0".into()),
            equal: vec![("Outcome", Value::from("dead-let'tered")), ("TicketId", Value::from(1001))],
            ..Range::default()
        };
        assert_eq!(
            range_filter(&range),
            "PartitionKey ge 'run-2026120400' and PartitionKey le 'run-2026120423' and RowKey ge '0' and Outcome eq \
             'dead-let''tered' and TicketId eq 1001"
        );
        assert_eq!(range_filter(&Range::partition("p")), "PartitionKey eq 'p'");
    }

    #[test]
    fn a_queried_entity_gives_its_row_etag_and_own_properties() {
        let entity: Props = serde_json::from_str(
            r#"{"odata.etag":"W/\"1\"","PartitionKey":"p","RowKey":"r","Timestamp":"t","State":"Created"}"#,
        )
        .unwrap();
        let (row, props, etag) = keyed_with_etag(entity, "RowKey").unwrap();
        assert_eq!((row.as_str(), etag.0.as_str()), ("r", "W/\"1\""));
        assert_eq!(props.keys().collect::<Vec<_>>(), ["State"]);
        let no_etag: Props = serde_json::from_str(r#"{"RowKey":"r"}"#).unwrap();
        assert!(matches!(keyed_with_etag(no_etag, "RowKey"), Err(StoreError::Unavailable(_))));
    }
}
