//! Development and test kit for the ContraForce <-> HaloPSA bridge.
//!
//! Everything here is for tests and local demos only; the production `handler` binary never
//! depends on this crate.
//!
//! * [`halo::FakeHalo`] and [`cf::FakeCf`]: in-process fakes of the HaloPSA and ContraForce APIs
//!   that behave like the real services (see docs/halo-api.md) and record every request.
//! * [`faults::Faults`]: a fault injector shared by both fakes (statuses, delays, broken bodies).
//! * [`host::StandInHost`]: a stand-in Azure Functions host for custom handlers in forwarding mode.
//! * [`azurite::Azurite`]: starts the Azurite table emulator from `node_modules`.
//! * [`server`]: binds a warp filter on 127.0.0.1 with a shutdown handle.
//!
//! The fakes and the host run on their own small tokio runtimes, so they keep answering even
//! while a test blocks its own thread, and they can be created from sync or async code.

#![warn(missing_docs)]

pub mod azurite;
pub mod cf;
mod fake;
pub mod faults;
pub mod halo;
pub mod host;
pub mod proxy;
pub mod record;
pub mod server;

mod fakeio;
#[doc(hidden)]
pub mod util;

pub use record::Recorded;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 must succeed")
}
