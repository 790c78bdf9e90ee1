//! The bridge's directions, each described once: its name (the Functions function, its route `/api/<name>`, its
//! settings area and its log field), the secrets it needs, and its exactly-once work. Startup, routes, `--check`
//! and the app iterate over `ALL`; adding a direction is one module here plus one entry.

pub mod cf_webhook;
mod context;
pub mod halo_webhook;
pub mod reconcile;

pub use context::Context;

use crate::secrets::SecretId;
use crate::settings::Area;
use std::time::Duration;

/// When work finds another delivery doing the same step (a claim held and not yet stale), how long it waits before
/// it is tried again: queued with this delay (no attempt spent), never counted as done, since the holder may have
/// died or may not see what this delivery saw.
pub(crate) const IN_FLIGHT_RETRY: Duration = Duration::from_secs(2);

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
