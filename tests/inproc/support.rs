//! An app around the in-memory table and the two fakes.

use cf_halo_bridge::app::App;
use cf_halo_bridge::cf::event::{self, Incident};
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::domain::{unix_now, EventId, ExternalRef};
use cf_halo_bridge::secrets::Secrets;
use cf_halo_bridge::store::queue::MemoryQueue;
use cf_halo_bridge::store::{Claim, MemoryTable, Store};
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::halo::{FakeHalo, HaloConfig};
use serde_json::json;
use std::sync::Arc;

pub const DEFAULT_CLIENT: i64 = 1;
/// The time budget of one piece of work (the queue worker's).
pub const BUDGET: std::time::Duration = std::time::Duration::from_secs(25);

pub struct Rig {
    pub app: Arc<App>,
    pub table: Arc<MemoryTable>,
    pub store: Store,
    pub queue: Arc<MemoryQueue>,
    pub halo: FakeHalo,
    pub cf: FakeCf,
}

impl Rig {
    pub fn new() -> Rig {
        let halo = FakeHalo::start(HaloConfig::test());
        let cf = FakeCf::start(CfConfig::test());
        let h = halo.config();
        let c = cf.config();
        let env = Env::from_pairs([
            ("CF_WEBHOOK_SECRET", "inproc-cf-secret".to_string()),
            ("HALO_AUTH_URL", halo.auth_url()),
            ("HALO_API_BASE_URL", halo.api_url()),
            ("HALO_CLIENT_ID", h.client_id.clone()),
            ("HALO_CLIENT_SECRET", h.client_secret.clone()),
            ("HALO_DEFAULT_TICKETTYPE_ID", "29".to_string()),
            ("HALO_DEFAULT_CLIENT_ID", DEFAULT_CLIENT.to_string()),
            ("HALO_INTEGRATION_APPLICATION", h.app_name.clone()),
            ("HALO_INTEGRATION_AGENT_ID", h.agent_id.to_string()),
            ("HALO_WEBHOOK_SECRET", "inproc-halo-secret".to_string()),
            ("CF_API_BASE_URL", cf.base_url()),
            ("CF_SERVICE_ACCOUNT_CLIENT_ID", c.client_id.clone()),
            ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", c.client_secret.clone()),
            ("CF_WORKSPACE_ID", c.workspace_id.clone()),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true".to_string()),
            ("UPSTREAM_TIMEOUT_SECONDS", "2".to_string()),
        ]);
        let config = Config::from_env(&env).expect("the in-process configuration is valid");
        let table = Arc::new(MemoryTable::default());
        let store = Store::new(table.clone());
        let secrets = Secrets::new(&config.secrets, config.rotation_grace);
        let http = reqwest::Client::new();
        let queue = Arc::new(MemoryQueue::default());
        let app = Arc::new(App::with_parts(config, secrets, Some(store.clone()), Some(queue.clone()), http));
        Rig { app, table, store, queue, halo, cf }
    }

    pub fn tickets(&self) -> usize {
        self.halo.tickets().len()
    }
}

/// An `incident.created.v1` incident as the event parser builds it.
pub fn incident(id: &str, number: i64) -> Incident {
    let body = json!({"type": "incident.created.v1", "data": {
        "incidentId": id, "source": "sentinel", "incidentNumber": number, "title": "Impossible travel",
        "severity": "High", "accountId": "acc-1", "accountName": "Contoso"}});
    event::parse(&serde_json::to_vec(&body).unwrap()).expect("a valid incident").incident
}

pub fn event(id: &str) -> EventId {
    EventId::parse(id).unwrap()
}

pub fn reference(id: &str) -> ExternalRef {
    ExternalRef::new("sentinel", id).unwrap()
}

/// A claim another request took long enough ago to be stale (its holder crashed).
pub fn stale_claim() -> Claim {
    Claim { owner: "crashed-request".into(), since: unix_now() - 3_600 }
}

/// A claim another request holds right now.
pub fn live_claim() -> Claim {
    Claim { owner: "live-request".into(), since: unix_now() }
}

/// A ticket the bridge created for a new incident.
pub async fn ticketed(rig: &Rig, id: &str) -> cf_halo_bridge::domain::TicketId {
    rig.app
        .cf_webhook(BUDGET)
        .unwrap()
        .deliver(&event("e1"), "delivery-e1", &incident(id, 1))
        .await
        .unwrap()
        .ticket_id()
}
