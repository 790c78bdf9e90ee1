//! The in-process tier: both directions' state machines driven directly (no binary, no host, no Azurite) against
//! the in-memory table and the loopback Halo/ContraForce fakes, one test per claim path: fresh, duplicate, stale
//! takeover, our own ambiguous write, concurrent racers and give-up. `cargo test --test inproc` runs in seconds;
//! the real-binary tests in `tests/it` stay the proof that the deployed shape works.

mod cf_webhook;
mod durable;
mod halo_webhook;
mod support;
