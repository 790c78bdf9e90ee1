//! The application shared by every request: configuration, secrets, the store and the API clients, and the work
//! of each direction built from them.

use crate::availability::{Availability, Problem};
use crate::cf::client::CfClient;
use crate::config::Config;
use crate::directions::cf_webhook::CfWebhook;
use crate::directions::halo_webhook::HaloWebhook;
use crate::directions::reconcile::{Reconcile, RUN_BUDGET, STEP_BUDGET};
use crate::directions::{Context, Direction, CF_WEBHOOK, HALO_WEBHOOK};
use crate::domain::RefLocation;
use crate::halo::client::HaloClient;
use crate::secrets::Secrets;
use crate::store::claim::ClaimPolicy;
use crate::store::queue::{AzureQueue, WorkQueue};
use crate::store::runs::RunRecord;
use crate::store::{AzureTable, Store, Table};
use crate::upstream::Deadline;
use crate::work::Ledger;
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub config: Config,
    /// The run history's writer.
    pub runs: RunLog,
    /// The one HTTP client of upstream calls (Halo, ContraForce, the identity endpoint, Key Vault).
    pub http: reqwest::Client,
    pub secrets: Secrets,
    pub store: Option<Store>,
    /// The work ledger and queue (with the store and the work queue configured).
    pub ledger: Option<Ledger>,
    pub halo: Option<HaloClient>,
    pub cf: Option<CfClient>,
}

/// Writes each delivery's run record after its answer: a delivery never waits for its history (no Table round
/// trip on any answer). One writer task takes the records from a bounded queue and writes at most
/// `RUN_WRITERS` at a time, so a burst costs the table a bounded number of connections and the process a bounded
/// amount of memory; when the queue is full, the next delivery waits for room (back-pressure instead of growth).
/// At shutdown the queue is drained (`flush`).
pub struct RunLog {
    sender: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<RunRecord>>>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Run records waiting to be written, at most.
const RUN_QUEUE: usize = 2_048;
/// Run records written at the same time, at most.
const RUN_WRITERS: usize = 4;

impl RunLog {
    fn new(store: Option<Store>) -> RunLog {
        let (Some(store), Ok(runtime)) = (store, tokio::runtime::Handle::try_current()) else {
            return RunLog { sender: std::sync::Mutex::new(None), writer: std::sync::Mutex::new(None) };
        };
        let (sender, mut queue) = tokio::sync::mpsc::channel::<RunRecord>(RUN_QUEUE);
        let writer = runtime.spawn(async move {
            use futures::StreamExt;
            let mut batch = Vec::with_capacity(64);
            while queue.recv_many(&mut batch, 64).await > 0 {
                futures::stream::iter(batch.drain(..))
                    .for_each_concurrent(RUN_WRITERS, |run| {
                        let store = store.clone();
                        async move {
                            if let Err(e) = store.record_run(&run).await {
                                let id = run.correlation_id.as_str();
                                tracing::warn!(error = %e, correlation_id = id, "the run record could not be written");
                            }
                        }
                    })
                    .await;
            }
        });
        RunLog { sender: std::sync::Mutex::new(Some(sender)), writer: std::sync::Mutex::new(Some(writer)) }
    }

    /// Logs the delivery's line and queues its record (waiting only while the queue is full).
    pub async fn record(&self, run: RunRecord, line: &'static str) {
        run.log(line);
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(sender) = sender {
            let _ = sender.send(run).await;
        }
    }

    /// Writes what is queued and stops the writer (at shutdown).
    pub async fn flush(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

/// A direction that cannot work, and why (every reason, for the 503 body and the startup log).
#[derive(Debug, Clone)]
pub struct DirectionOff {
    pub direction: &'static str,
    pub problems: Vec<Problem>,
}

impl App {
    /// Builds the clients for whatever is configured; nothing is called yet.
    pub fn new(config: Config) -> Result<App, String> {
        let http = crate::upstream::http_client(config.extra_ca_pem.as_deref());
        let secrets = Secrets::new(&config.secrets, config.rotation_grace);
        let store = match &config.storage {
            Availability::Ready(storage) => {
                let table = AzureTable::new(storage, &http, config.extra_ca_pem.as_deref())
                    .map_err(|e| format!("state storage ({}): {e}", storage.source))?;
                Some(Store::new(Arc::new(table) as Arc<dyn Table>))
            }
            Availability::Off(_) => None,
        };
        let queue = match &config.work_queue {
            Availability::Ready(queue) => {
                let queue = AzureQueue::new(queue, &http, config.extra_ca_pem.as_deref())
                    .map_err(|e| format!("work queue ({}): {e}", crate::settings::WEBJOBS_STORAGE))?;
                Some(Arc::new(queue) as Arc<dyn WorkQueue>)
            }
            Availability::Off(_) => None,
        };
        Ok(Self::with_parts(config, secrets, store, queue, http))
    }

    /// Assembles the app around a given store and queue (tests pass in-memory ones).
    pub fn with_parts(
        config: Config,
        secrets: Secrets,
        store: Option<Store>,
        queue: Option<Arc<dyn WorkQueue>>,
        http: reqwest::Client,
    ) -> App {
        let timeout = config.upstream_timeout;
        let halo = config.halo.ready().map(|h| HaloClient::new(http.clone(), h, secrets.clone(), timeout));
        let cf = config.halo_webhook.ready().map(|i| CfClient::new(http.clone(), i, secrets.clone(), timeout));
        let ledger = store.clone().zip(queue).map(|(store, queue)| Ledger::new(store, queue));
        let runs = RunLog::new(store.clone());
        App { config, runs, http, secrets, store, ledger, halo, cf }
    }

    /// Why a direction cannot work now (its settings, the parts it uses, its secrets), or `None` when it can.
    pub fn off(&self, direction: &Direction) -> Option<DirectionOff> {
        let mut problems = self.config.problems_of(direction.area);
        problems.extend(direction.secrets.iter().filter_map(|id| self.secrets.current(*id).err()));
        (!problems.is_empty()).then_some(DirectionOff { direction: direction.name(), problems })
    }

    /// Settings and secrets are complete, yet a client is missing (cannot happen after `App::new`; kept a 503).
    fn unavailable(direction: &Direction) -> DirectionOff {
        DirectionOff { direction: direction.name(), problems: vec![Problem::Other("not configured".into())] }
    }

    /// A fresh context for one piece of work, its `budget` starting now.
    fn context<'a>(
        &'a self,
        store: &'a Store,
        ledger: &'a Ledger,
        halo: &'a HaloClient,
        budget: Duration,
    ) -> Context<'a> {
        let location = self.config.halo.ready().map(|h| h.reference).unwrap_or(RefLocation::SupplierReference);
        let ttl_secs = self.config.claim_ttl.as_secs() as i64;
        let policy =
            ClaimPolicy { ttl_secs, settle_secs: (3 * self.config.upstream_timeout.as_secs() as i64).min(ttl_secs) };
        Context::new(store, ledger, halo, location, policy, Deadline::after(budget))
    }

    /// The cf-webhook work of one delivery with `budget` to finish, or why the direction is off.
    pub fn cf_webhook(&self, budget: Duration) -> Result<CfWebhook<'_>, DirectionOff> {
        if let Some(off) = self.off(&CF_WEBHOOK) {
            return Err(off);
        }
        match (self.config.cf_webhook.ready(), &self.store, &self.ledger, &self.halo) {
            (Some(cfg), Some(store), Some(ledger), Some(halo)) => {
                Ok(CfWebhook::new(self.context(store, ledger, halo, budget), cfg))
            }
            _ => Err(Self::unavailable(&CF_WEBHOOK)),
        }
    }

    /// One reconcile run (the halo-webhook direction's backstop, with its parts and its run budget), or why the
    /// direction is off.
    pub fn reconcile(&self) -> Result<Reconcile<'_>, DirectionOff> {
        let sync = self.halo_webhook(RUN_BUDGET)?;
        let cfg =
            self.config.halo_webhook.ready().map(|c| c.reconcile).ok_or_else(|| Self::unavailable(&HALO_WEBHOOK))?;
        let step = Box::new(move || {
            self.halo_webhook(STEP_BUDGET).map_err(|off| format!("{} went off during the run", off.direction))
        });
        Ok(Reconcile::new(sync, step, cfg))
    }

    /// The halo-webhook work of one webhook with `budget` to finish, or why the direction is off.
    pub fn halo_webhook(&self, budget: Duration) -> Result<HaloWebhook<'_>, DirectionOff> {
        if let Some(off) = self.off(&HALO_WEBHOOK) {
            return Err(off);
        }
        match (self.config.halo_webhook.ready(), &self.store, &self.ledger, &self.halo, &self.cf) {
            (Some(cfg), Some(store), Some(ledger), Some(halo), Some(cf)) => {
                Ok(HaloWebhook::new(self.context(store, ledger, halo, budget), cf, cfg))
            }
            _ => Err(Self::unavailable(&HALO_WEBHOOK)),
        }
    }
}
