//! HaloPSA: the OAuth token, the API client, the ticket mapping, and the webhook payload.

pub mod client;
pub mod mapping;
pub mod model;
pub mod text;
pub mod token;
pub mod webhook;
