//! The run history: one record per delivery (a webhook, a queue-trigger attempt), what came of it and what it
//! cost, for the status page, `handler runs` and the housekeeping timer.
//!
//! Where they live: partition `run-<YYYYMMDDHH>` (the UTC hour it was received), row `<inverted ms>-<correlation
//! id>`, so that an hour's rows come newest first. Once an hour is over, its counts per outcome are summarized in
//! one row of partition `run-summary` (row `<YYYYMMDDHH>`), so the page's 24-hour chart reads at most two hours of
//! rows and one summary query, however many deliveries there were. Records older than `RUN_RETENTION_DAYS` are
//! deleted by the housekeeping timer.

use super::{Key, Range, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The partition of the hourly summaries.
pub const SUMMARY_PARTITION: &str = "run-summary";
/// An hour is summarized once it has been over for this long: a delivery that straddled its end has written its
/// record by then (a webhook is answered within 30 s, a queue attempt ends within its invocation timeout).
pub const SUMMARIZE_AFTER_MS: i64 = 15 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;
/// The largest millisecond timestamp a row key inverts (year 2286).
const MAX_MS: i64 = 9_999_999_999_999;

/// One delivery, as the run history keeps it. Nothing here is a secret, a token or a request body: `error` is the
/// bridge's own wording of the last failure.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RunRecord {
    /// When it was received (Unix milliseconds).
    #[serde(with = "crate::wire::unix_string")]
    pub received_ms: i64,
    /// The function that received it: `cf-webhook`, `halo-webhook`, `work-items`, `dead-letters`.
    pub function: String,
    /// What came of it: `created`, `updated`, `duplicate`, `test`, `ignored`, `processed`, `queued`, `retried`,
    /// `completed`, `dead-lettered`, `uncertain`, `rejected`, `unavailable`.
    pub outcome: String,
    /// The HTTP status it was answered with (webhooks; the envelope's status for the queue trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The incident reference (`cf|<source>|<incident id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
    /// The Halo client the incident was routed to, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_by: Option<String>,
    /// The durable work it was queued as, or is an attempt of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_id: Option<String>,
    /// The attempt (the queue's dequeue count; 1 for a webhook).
    pub attempts: u32,
    pub halo_calls: u64,
    pub cf_calls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The id of its log line (and of any error answer).
    pub correlation_id: String,
}

/// The UTC hour of a millisecond timestamp, `YYYYMMDDHH`.
pub fn hour_of(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}{:02}", at.year(), u8::from(at.month()), at.day(), at.hour())
}

/// A Unix millisecond time as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            let date = (t.year(), u8::from(t.month()), t.day());
            format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", date.0, date.1, date.2, t.hour(), t.minute(), t.second())
        })
        .unwrap_or_default()
}

fn partition_of(hour: &str) -> String {
    format!("run-{hour}")
}

/// A fresh correlation id: the id of one delivery's log line, run record and error answer.
pub fn correlation_id() -> String {
    format!("{:016x}", rand::Rng::gen::<u64>(&mut rand::thread_rng()))
}

impl RunRecord {
    /// The record with what its delivery's trace noted: the upstream calls and the routing.
    pub fn traced(self, trace: &crate::trace::Trace) -> RunRecord {
        let routed = trace.routed().cloned();
        RunRecord {
            client_id: routed.as_ref().map(|r| r.0),
            routed_by: routed.map(|r| r.1),
            halo_calls: trace.halo_calls(),
            cf_calls: trace.cf_calls(),
            ..self
        }
    }

    pub fn key(&self) -> Key {
        Key {
            partition: partition_of(&hour_of(self.received_ms)),
            row: format!("{:013}-{}", MAX_MS - self.received_ms.clamp(0, MAX_MS), self.correlation_id),
        }
    }

    /// The delivery's one log line (`request` for a webhook, `invocation` for a queue-trigger attempt), with the
    /// record's fields as its properties (docs/operations.md queries them); a warning when it failed.
    pub fn log(&self, line: &'static str) {
        macro_rules! run_line {
            ($level:ident) => {
                tracing::$level!(
                    route = self.function.as_str(),
                    status = self.status,
                    outcome = self.outcome.as_str(),
                    correlation_id = self.correlation_id.as_str(),
                    event_id = self.event_id.as_deref(),
                    reference = self.reference.as_deref(),
                    ticket_id = self.ticket_id,
                    client_id = self.client_id,
                    routed_by = self.routed_by.as_deref(),
                    work_id = self.work_id.as_deref(),
                    attempts = self.attempts,
                    halo_calls = self.halo_calls,
                    cf_calls = self.cf_calls,
                    duration_ms = self.duration_ms,
                    detail = self.error.as_deref(),
                    "{line}"
                )
            };
        }
        if self.status.is_some_and(|s| s >= 500) || matches!(self.outcome.as_str(), "dead-lettered" | "uncertain") {
            run_line!(warn);
        } else {
            run_line!(info);
        }
    }

    /// One line for a terminal (`handler runs`).
    pub fn line(&self) -> String {
        let mut line = format!("{}  {:<12} {:<13}", utc(self.received_ms), self.function, self.outcome);
        if let Some(r) = &self.reference {
            line.push_str(&format!(" {r}"));
        }
        if let Some(t) = self.ticket_id {
            line.push_str(&format!(" ticket #{t}"));
        }
        if let Some(c) = self.client_id {
            line.push_str(&format!(" client {c} ({})", self.routed_by.as_deref().unwrap_or("?")));
        }
        if let Some(w) = &self.work_id {
            line.push_str(&format!(" work {w}"));
        }
        line.push_str(&format!(
            "  halo {} cf {}  attempt {}  {} ms",
            self.halo_calls, self.cf_calls, self.attempts, self.duration_ms
        ));
        if let Some(e) = &self.error {
            line.push_str(&format!("  {e}"));
        }
        line
    }

    /// Whether the delivery failed or is waiting (the CLI's `--failed`).
    pub fn failed(&self) -> bool {
        matches!(self.outcome.as_str(), "dead-lettered" | "uncertain" | "retried" | "queued" | "unavailable")
    }
}

/// Which runs to list. Empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub function: Option<String>,
    pub outcome: Option<String>,
    pub reference: Option<String>,
    pub ticket_id: Option<i64>,
    pub work_id: Option<String>,
}

impl RunFilter {
    fn is_empty(&self) -> bool {
        self.function.is_none()
            && self.outcome.is_none()
            && self.reference.is_none()
            && self.ticket_id.is_none()
            && self.work_id.is_none()
    }

    fn equal(&self) -> Vec<(&'static str, Value)> {
        let mut equal = Vec::new();
        if let Some(f) = &self.function {
            equal.push(("Function", Value::from(f.as_str())));
        }
        if let Some(o) = &self.outcome {
            equal.push(("Outcome", Value::from(o.as_str())));
        }
        if let Some(r) = &self.reference {
            equal.push(("Reference", Value::from(r.as_str())));
        }
        if let Some(t) = self.ticket_id {
            equal.push(("TicketId", Value::from(t)));
        }
        if let Some(w) = &self.work_id {
            equal.push(("WorkId", Value::from(w.as_str())));
        }
        equal
    }
}

/// Counts per outcome in one hour.
pub type Counts = BTreeMap<String, u64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    /// The counts, as JSON (one property whatever the outcomes).
    counts: String,
}

impl Store {
    /// Records one delivery.
    pub async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        match self.insert(&run.key(), run).await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The newest runs received in `since_ms ..= now_ms` that `filter` selects, newest first, at most `limit`.
    /// Unfiltered, one query per hour from the newest, each reading no more than it needs; filtered, one query over
    /// the whole window (Table Storage filters; the window's hours come back oldest first and are re-sorted).
    pub async fn runs(
        &self,
        filter: &RunFilter,
        since_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut found: Vec<(Key, RunRecord)> = Vec::new();
        if filter.is_empty() {
            let mut hour_ms = now_ms;
            while hour_ms >= since_ms - HOUR_MS && found.len() < limit {
                let partition = partition_of(&hour_of(hour_ms));
                let range = Range { top: Some((limit - found.len()) as u32), ..Range::partition(&partition) };
                for (key, props) in self.table.range(&range).await? {
                    found.push((key, super::from_props(props)?));
                }
                hour_ms -= HOUR_MS;
            }
        } else {
            let range = Range {
                partitions: (partition_of(&hour_of(since_ms)), partition_of(&hour_of(now_ms))),
                equal: filter.equal(),
                ..Range::default()
            };
            for (key, props) in self.table.range(&range).await? {
                found.push((key, super::from_props(props)?));
            }
            // Newest hour first; within an hour the row keys already are newest first.
            found.sort_by(|a, b| b.0.partition.cmp(&a.0.partition).then(a.0.row.cmp(&b.0.row)));
        }
        let mut runs: Vec<RunRecord> =
            found.into_iter().map(|(_, run)| run).filter(|r| r.received_ms >= since_ms).collect();
        runs.truncate(limit);
        Ok(runs)
    }

    /// Counts per outcome for each hour of `hours` (oldest first) ending with `now_ms`'s hour. A finished hour is
    /// read from its summary, written the first time it is needed; the others are counted from their rows.
    pub async fn run_counts(&self, hours: usize, now_ms: i64) -> Result<Vec<(String, Counts)>, StoreError> {
        let wanted: Vec<(String, i64)> = (0..hours as i64)
            .rev()
            .map(|back| {
                let at = now_ms - back * HOUR_MS;
                (hour_of(at), at.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS)
            })
            .collect();
        let first = wanted.first().map(|(h, _)| h.clone()).unwrap_or_default();
        let range = Range { rows_from: Some(first), ..Range::partition(SUMMARY_PARTITION) };
        let mut summaries: BTreeMap<String, Counts> = BTreeMap::new();
        for (key, props) in self.table.range(&range).await? {
            let summary: Summary = super::from_props(props)?;
            summaries.insert(key.row, serde_json::from_str(&summary.counts).unwrap_or_default());
        }
        let mut out = Vec::with_capacity(wanted.len());
        for (hour, ends_ms) in wanted {
            if let Some(counts) = summaries.remove(&hour) {
                out.push((hour, counts));
                continue;
            }
            let counts = self.count_hour(&hour).await?;
            if now_ms - ends_ms >= SUMMARIZE_AFTER_MS {
                self.write_summary(&hour, &counts).await?;
            }
            out.push((hour, counts));
        }
        Ok(out)
    }

    async fn count_hour(&self, hour: &str) -> Result<Counts, StoreError> {
        let range = Range { select: vec!["Outcome"], ..Range::partition(&partition_of(hour)) };
        let mut counts = Counts::new();
        for (_, props) in self.table.range(&range).await? {
            let outcome = props.get("Outcome").and_then(Value::as_str).unwrap_or("unknown").to_string();
            *counts.entry(outcome).or_default() += 1;
        }
        Ok(counts)
    }

    async fn write_summary(&self, hour: &str, counts: &Counts) -> Result<(), StoreError> {
        let key = Key { partition: SUMMARY_PARTITION.into(), row: hour.to_string() };
        let summary = Summary { counts: serde_json::to_string(counts).unwrap_or_default() };
        match self.insert(&key, &summary).await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Housekeeping: summarizes the finished hours of the last day that have none yet, and deletes the runs and
    /// summaries of hours before `now_ms - keep_ms`, at most `max_deletes` entities per call (the timer comes
    /// back). Returns the number deleted.
    pub async fn tidy_runs(&self, now_ms: i64, keep_ms: i64, max_deletes: usize) -> Result<usize, StoreError> {
        self.run_counts(24, now_ms).await?;
        let cutoff = hour_of(now_ms - keep_ms);
        let old_runs = Range {
            partitions: (partition_of("0"), partition_of(&cutoff)),
            select: vec!["Outcome"],
            top: Some(max_deletes as u32),
            ..Range::default()
        };
        let summaries = Range { select: vec!["Counts"], ..Range::partition(SUMMARY_PARTITION) };
        let mut expired: Vec<Key> = self.table.range(&old_runs).await?.into_iter().map(|(key, _)| key).collect();
        expired.retain(|key| key.partition != partition_of(&cutoff));
        expired.extend(self.table.range(&summaries).await?.into_iter().map(|(key, _)| key).filter(|k| k.row < cutoff));
        expired.truncate(max_deletes);
        for key in &expired {
            self.delete(key, &super::Etag("*".into())).await?;
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryTable;
    use std::sync::Arc;

    const H: i64 = HOUR_MS;
    /// 2026-12-04T10:00:00Z.
    const T0: i64 = 1_796_378_400_000;

    fn run(ms: i64, outcome: &str, n: u32) -> RunRecord {
        RunRecord {
            received_ms: ms,
            function: "cf-webhook".into(),
            outcome: outcome.into(),
            reference: Some(format!("cf|s|{}", n % 3)),
            ticket_id: Some(1000 + (n % 3) as i64),
            attempts: 1,
            correlation_id: format!("{n:016x}"),
            ..RunRecord::default()
        }
    }

    #[test]
    fn hours_and_keys_sort_as_the_page_reads_them() {
        assert_eq!(hour_of(T0), "2026120410");
        assert_eq!(hour_of(T0 + H - 1), "2026120410");
        let (a, b) = (run(T0 + 5, "created", 1).key(), run(T0 + 9, "created", 2).key());
        assert_eq!(a.partition, "run-2026120410");
        assert!(b.row < a.row, "the newer row sorts first");
    }

    #[tokio::test]
    async fn runs_come_newest_first_filtered_and_counted_per_hour_with_finished_hours_summarized_once() {
        let table = Arc::new(MemoryTable::default());
        let store = Store::new(table.clone());
        for n in 0..30u32 {
            let outcome = if n % 10 == 0 { "dead-lettered" } else { "created" };
            store.record_run(&run(T0 - 2 * H + (n as i64) * 6 * 60 * 1000, outcome, n)).await.unwrap();
        }
        let now = T0 + H - 1;
        let newest = store.runs(&RunFilter::default(), now - 24 * H, now, 5).await.unwrap();
        assert_eq!(newest.len(), 5);
        assert!(newest.windows(2).all(|w| w[0].received_ms > w[1].received_ms), "newest first across hours");
        assert_eq!(newest[0].correlation_id, format!("{:016x}", 29));

        let failed = RunFilter { outcome: Some("dead-lettered".into()), ..RunFilter::default() };
        let dead = store.runs(&failed, now - 24 * H, now, 50).await.unwrap();
        assert_eq!(
            dead.iter().map(|r| r.correlation_id.as_str()).collect::<Vec<_>>(),
            [format!("{:016x}", 20), format!("{:016x}", 10), format!("{:016x}", 0)]
        );
        let of_ticket = RunFilter { ticket_id: Some(1001), ..RunFilter::default() };
        assert_eq!(store.runs(&of_ticket, now - 24 * H, now, 50).await.unwrap().len(), 10);

        let counts = store.run_counts(3, now).await.unwrap();
        let total = |c: &Counts| c.values().sum::<u64>();
        assert_eq!(counts.iter().map(|(_, c)| total(c)).collect::<Vec<_>>(), [10, 10, 10]);
        assert_eq!(counts[0].1["dead-lettered"], 1);
        // The two finished hours were summarized; the current one was not.
        let summaries = store.rows::<Summary>(SUMMARY_PARTITION).await.unwrap();
        assert_eq!(summaries.iter().map(|(row, _)| row.as_str()).collect::<Vec<_>>(), ["2026120408", "2026120409"]);
        // A second render reads the summaries: the same counts.
        assert_eq!(store.run_counts(3, now).await.unwrap(), counts);
    }

    #[tokio::test]
    async fn tidying_deletes_what_is_past_retention_and_keeps_the_rest() {
        let store = Store::new(Arc::new(MemoryTable::default()));
        for n in 0..6u32 {
            store.record_run(&run(T0 - (n as i64) * 24 * H, "created", n)).await.unwrap();
        }
        let now = T0 + 1;
        let deleted = store.tidy_runs(now, 3 * 24 * H, 100).await.unwrap();
        assert_eq!(deleted, 2, "the runs of 4 and 5 days ago (3 days ago is the cutoff's hour, kept)");
        let left = store.runs(&RunFilter::default(), now - 10 * 24 * H, now, 50).await.unwrap();
        assert_eq!(left.len(), 4);
    }
}
