//! ContraForce ↔ HaloPSA bridge: an Azure Functions custom handler. `docs/architecture.md` is the map.
//!
//! Layers, lowest first; a module imports only from layers below its own (and its own submodules), checked by
//! `tests/infra/test_layers.py`:
//! 1. `domain`, `wire`, `availability`, `settings`: values and vocabulary, no I/O.
//! 2. `secrets`. 3. `config` (every setting read and validated once, one file per area).
//! 4. `upstream` (HTTP calls, their failures), `identity` (managed identity tokens), `telemetry`.
//! 5. `cf`, `halo`, `store` (with `store::claim`, the one claim protocol), `keyvault`: one domain each.
//! 6. `work`: durable work (the work ledger and queue, dead letters, replay).
//! 7. `directions`: each direction's exactly-once work, and the `Direction` list.
//! 8. `app`: the clients and the store, and each direction's work built from them.
//! 9. `routes`, `check`, `import_links`. 10. `startup`. 11. `cli`: the edges.

pub mod app;
pub mod availability;
pub mod cf;
pub mod check;
pub mod cli;
pub mod config;
pub mod directions;
pub mod domain;
pub mod halo;
pub mod identity;
pub mod import_links;
pub mod keyvault;
pub mod routes;
pub mod secrets;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod upstream;
pub mod wire;
pub mod work;
