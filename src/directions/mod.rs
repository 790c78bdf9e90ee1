//! The bridge's directions, each described once: its name (the Functions function, its route `/api/<name>`, its
//! settings area and its log field), the secrets it needs, and its exactly-once work. Startup, routes, `--check`
//! and the app iterate over `ALL`; adding a direction is one module here plus one entry.

pub mod cf_webhook;
mod context;
pub mod halo_webhook;

pub use context::Context;

use crate::secrets::SecretId;
use crate::settings::Area;

/// One direction of the bridge.
#[derive(Debug, PartialEq, Eq)]
pub struct Direction {
    pub area: Area,
    /// The secrets without which it answers 503.
    pub secrets: &'static [SecretId],
}

impl Direction {
    /// The one name of the direction: function, route segment, settings area and log field.
    pub fn name(&self) -> &'static str {
        self.area.name()
    }
}

/// ContraForce → Halo: a signed `incident.created.v1` webhook becomes exactly one Halo ticket.
pub(crate) const CF_WEBHOOK: Direction =
    Direction { area: Area::CfWebhook, secrets: &[SecretId::CfWebhook, SecretId::HaloClient] };

/// Halo → ContraForce: a ticket webhook becomes ContraForce comments and a close, each exactly once.
pub(crate) const HALO_WEBHOOK: Direction = Direction {
    area: Area::HaloWebhook,
    secrets: &[SecretId::HaloWebhook, SecretId::HaloClient, SecretId::CfServiceAccount],
};

pub(crate) const ALL: [&Direction; 2] = [&CF_WEBHOOK, &HALO_WEBHOOK];
