//! Integration tests: the real `handler` binary started the way the Functions host starts it (stand-in host),
//! against a real Azurite table service and the Halo/ContraForce fakes on loopback.

mod cf_webhook;
mod check;
mod durable;
mod fake_vault;
mod foundation;
mod halo_webhook;
mod hostile;
mod import_links;
mod keyvault;
mod managed_identity;
mod outage;
mod pacing;
mod package;
mod reconcile;
mod routing;
mod soak;
mod status_page;
mod store;
mod support;
mod tls;
mod trust;
