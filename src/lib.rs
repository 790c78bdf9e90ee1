//! ContraForce ↔ HaloPSA bridge: an Azure Functions custom handler.
//!
//! `main.rs` only starts [`startup::run`]. Domains: [`cf`] (webhook contract, signature, CF API client), [`halo`]
//! (token, client, ticket mapping), [`store`] (Table Storage state), [`config`] and [`settings`] (what we read),
//! [`outbound`] and [`inbound`] (the two directions' exactly-once logic), and [`routes`] (HTTP, errors → statuses).

pub mod app;
pub mod cf;
pub mod check;
pub mod config;
pub mod domain;
pub mod halo;
pub mod identity;
pub mod inbound;
pub mod keyvault;
pub mod outbound;
pub mod routes;
pub mod secrets;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod upstream;
