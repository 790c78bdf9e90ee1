//! ContraForce: the webhook contract (signature, event), and the API client used by the inbound direction.

pub mod client;
pub mod event;
pub mod signature;
