//! The application state shared by every request: configuration, secrets, the store and the API clients.

use crate::cf::client::CfClient;
use crate::config::{
    Availability, Config, InboundConfig, OutboundConfig, Problem, RefLocation, SecretId, TicketRefField,
};
use crate::halo::client::HaloClient;
use crate::inbound::TicketSync;
use crate::outbound::Delivery;
use crate::secrets::Secrets;
use crate::settings::Area;
use crate::store::{AzureTable, Store, Table};
use crate::upstream::{Deadline, REQUEST_BUDGET};
use rand::Rng;
use std::sync::Arc;

pub struct App {
    pub config: Config,
    /// The one HTTP client of upstream calls (Halo, ContraForce, the identity endpoint, Key Vault).
    pub http: reqwest::Client,
    pub secrets: Secrets,
    pub store: Option<Store>,
    pub halo: Option<HaloClient>,
    pub cf: Option<CfClient>,
}

/// A direction that cannot work, and why (every reason, for the 503 body and the startup log).
#[derive(Debug, Clone)]
pub struct DirectionOff {
    pub direction: &'static str,
    pub problems: Vec<Problem>,
}

/// What every piece of one request's work shares: the store, the Halo client, and the request's claim identity
/// and time budget.
pub struct Context<'a> {
    pub store: &'a Store,
    pub halo: &'a HaloClient,
    pub location: RefLocation,
    /// A claim older than this is taken over (its holder crashed or timed out).
    pub claim_ttl_secs: i64,
    /// After an uncertain create or note, how long the next attempt waits before looking for its result.
    pub settle_secs: i64,
    pub deadline: Deadline,
    /// Random token identifying this request's claims.
    pub owner: String,
}

/// What the outbound direction needs, all present.
pub struct OutboundParts<'a> {
    pub cfg: &'a OutboundConfig,
    pub store: &'a Store,
    pub halo: &'a HaloClient,
}

/// What the inbound direction needs, all present.
pub struct InboundParts<'a> {
    pub cfg: &'a InboundConfig,
    pub store: &'a Store,
    pub halo: &'a HaloClient,
    pub cf: &'a CfClient,
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
        Ok(Self::with_store(config, secrets, store, http))
    }

    /// Assembles the app around a given store (tests pass an in-memory one).
    pub fn with_store(config: Config, secrets: Secrets, store: Option<Store>, http: reqwest::Client) -> App {
        let timeout = config.upstream_timeout;
        let halo = config.halo.ready().map(|h| HaloClient::new(http.clone(), h, secrets.clone(), timeout));
        let cf = config.inbound.ready().map(|i| CfClient::new(http.clone(), i, secrets.clone(), timeout));
        App { config, http, secrets, store, halo, cf }
    }

    fn secret_problems(&self, ids: &[SecretId]) -> Vec<Problem> {
        ids.iter().filter_map(|id| self.secrets.current(*id).err()).collect()
    }

    fn off(&self, area: Area, direction: &'static str, secrets: &[SecretId]) -> Option<DirectionOff> {
        let mut problems = self.config.problems_of(area);
        problems.extend(self.secret_problems(secrets));
        (!problems.is_empty()).then_some(DirectionOff { direction, problems })
    }

    pub fn outbound(&self) -> Result<OutboundParts<'_>, DirectionOff> {
        if let Some(off) = self.off(Area::Outbound, "cf-webhook", &[SecretId::CfWebhook, SecretId::HaloClient]) {
            return Err(off);
        }
        match (self.config.outbound.ready(), &self.store, &self.halo) {
            (Some(cfg), Some(store), Some(halo)) => Ok(OutboundParts { cfg, store, halo }),
            _ => Err(DirectionOff { direction: "cf-webhook", problems: vec![Problem::Other("not configured".into())] }),
        }
    }

    pub fn inbound(&self) -> Result<InboundParts<'_>, DirectionOff> {
        let secrets = [SecretId::HaloWebhook, SecretId::HaloClient, SecretId::CfServiceAccount];
        if let Some(off) = self.off(Area::Inbound, "halo-webhook", &secrets) {
            return Err(off);
        }
        match (self.config.inbound.ready(), &self.store, &self.halo, &self.cf) {
            (Some(cfg), Some(store), Some(halo), Some(cf)) => Ok(InboundParts { cfg, store, halo, cf }),
            _ => {
                Err(DirectionOff { direction: "halo-webhook", problems: vec![Problem::Other("not configured".into())] })
            }
        }
    }

    /// A fresh context for one request's work, its budget starting now.
    fn context<'a>(&'a self, store: &'a Store, halo: &'a HaloClient) -> Context<'a> {
        Context {
            store,
            halo,
            location: self
                .config
                .halo
                .ready()
                .map(|h| h.reference)
                .unwrap_or(RefLocation::Field(TicketRefField::SupplierReference)),
            claim_ttl_secs: self.config.claim_ttl.as_secs() as i64,
            settle_secs: (3 * self.config.upstream_timeout.as_secs() as i64)
                .min(self.config.claim_ttl.as_secs() as i64),
            deadline: Deadline::after(REQUEST_BUDGET),
            owner: claim_owner(),
        }
    }

    /// The outbound work of one delivery, or why the direction is off.
    pub fn delivery(&self) -> Result<Delivery<'_>, DirectionOff> {
        let parts = self.outbound()?;
        Ok(Delivery { ctx: self.context(parts.store, parts.halo), cfg: parts.cfg })
    }

    /// The inbound work of one webhook, or why the direction is off.
    pub fn ticket_sync(&self) -> Result<TicketSync<'_>, DirectionOff> {
        let parts = self.inbound()?;
        Ok(TicketSync { ctx: self.context(parts.store, parts.halo), cf: parts.cf, cfg: parts.cfg })
    }
}

/// A random token naming one request's claims.
fn claim_owner() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}
