//! HaloPSA: the OAuth token, the API client, and the webhook payload.

pub mod client;
pub mod model;
pub mod text;
pub mod token;
pub mod webhook;
