//! Development and test kit for the ContraForce <-> HaloPSA bridge.
//!
//! Everything here is for tests and local demos only; the production `handler` binary never
//! depends on this crate.
//!
//! * [`halo::FakeHalo`] and [`cf::FakeCf`]: in-process fakes of the HaloPSA and ContraForce APIs
//!   that behave like the real services (see docs/halo-api.md) and record every request.
//! * [`customers`]: the sandbox's customers, each with its own Halo client and ContraForce workspace.
//! * [`faults::Faults`]: a fault injector shared by both fakes (statuses, delays, broken bodies).
//! * [`host::StandInHost`]: a stand-in Azure Functions host for custom handlers: HTTP forwarding,
//!   queue triggers polled from Azurite, timer triggers fired on demand.
//! * [`azurite::Azurite`]: starts Azurite's table and queue emulators from `node_modules`.
//! * [`queues`]: a small Queue Storage client (feed a queue trigger, read a poison queue).
//! * [`server`]: binds a warp filter on 127.0.0.1 with a shutdown handle.
//! * [`tls`]: a certificate authority made in the test and a TLS proxy in front of any fake or Azurite.
//!
//! The fakes and the host run on their own small tokio runtimes, so they keep answering even
//! while a test blocks its own thread, and they can be created from sync or async code.

#![warn(missing_docs)]

pub mod azurite;
pub mod cf;
pub mod customers;
mod fake;
pub mod faults;
pub mod halo;
pub mod host;
pub mod proxy;
pub mod queues;
pub mod record;
pub mod server;
pub mod tls;

mod fakeio;
#[doc(hidden)]
pub mod util;

pub use record::Recorded;

/// Returns a TCP port on 127.0.0.1 that is free now, for a process started later to listen on, and that this
/// process has not handed out before.
///
/// The port comes from below the kernel's ephemeral range (Linux: `/proc/sys/net/ipv4/ip_local_port_range`), where
/// neither `bind(0)` nor the source port of an outgoing connection is ever taken, so it stays free until the child
/// binds it even while other tests connect and listen all around. Where that range is unknown, it is what `bind(0)`
/// gives. Whoever starts the child still retries with a new port if another process took it meanwhile (the stand-in
/// host and the Azurite launcher do).
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    if let Some(first_ephemeral) = ephemeral_range_start().filter(|p| *p > LOW_PORTS_FROM + 1_000) {
        let mut rng = rand::thread_rng();
        for _ in 0..1_000 {
            let port = rng.gen_range(LOW_PORTS_FROM..first_ephemeral);
            if !handed_out.contains(&port) && free(port) {
                handed_out.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("binding 127.0.0.1:0 must succeed");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The lowest port [`free_port`] hands out below the ephemeral range (clear of the usual service ports).
const LOW_PORTS_FROM: u16 = 20_000;

/// The first port of the kernel's ephemeral range, where it says (Linux).
fn ephemeral_range_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Whether a child's output says that its port was taken (Rust's and Node's wording of EADDRINUSE).
pub(crate) fn says_port_taken(output: &str) -> bool {
    output.to_ascii_lowercase().contains("address already in use")
}

/// How many ports a launcher tries when the child's port keeps being taken before it binds it.
pub(crate) const PORT_ATTEMPTS: usize = 5;
