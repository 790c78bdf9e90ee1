//! What one delivery did, noted while it runs, for its run record and log line: the Halo and ContraForce calls
//! it made and the Halo client its incident was routed to. A delivery's work runs inside `Trace::scope`; code
//! deep in the clients and directions notes into the trace of the task it runs in (and into nothing outside one),
//! so no signature carries a counter through every layer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Default)]
pub struct Trace {
    halo_calls: AtomicU64,
    cf_calls: AtomicU64,
    routed: OnceLock<(i64, String)>,
}

tokio::task_local! {
    static TRACE: Arc<Trace>;
}

/// Which service a call went to.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Halo,
    Cf,
}

impl Trace {
    /// Runs `work` noting into `trace`.
    pub async fn scope<F: std::future::Future>(trace: Arc<Trace>, work: F) -> F::Output {
        TRACE.scope(trace, work).await
    }

    pub fn halo_calls(&self) -> u64 {
        self.halo_calls.load(Ordering::Relaxed)
    }

    pub fn cf_calls(&self) -> u64 {
        self.cf_calls.load(Ordering::Relaxed)
    }

    /// The Halo client the delivery's incident was routed to, and how (`map`, `name`, `default…`).
    pub fn routed(&self) -> Option<&(i64, String)> {
        self.routed.get()
    }
}

/// Notes one call to `service`.
pub fn count(service: Service) {
    let _ = TRACE.try_with(|trace| {
        let counter = match service {
            Service::Halo => &trace.halo_calls,
            Service::Cf => &trace.cf_calls,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

/// Notes the client an incident was routed to (the first note wins).
pub fn routed(client_id: i64, by: &str) {
    let _ = TRACE.try_with(|trace| trace.routed.set((client_id, by.to_string())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_reach_the_trace_of_their_task_and_nothing_outside_one() {
        count(Service::Halo); // outside any trace: nothing, no panic
        let trace = Arc::new(Trace::default());
        Trace::scope(trace.clone(), async {
            count(Service::Halo);
            count(Service::Halo);
            count(Service::Cf);
            routed(7, "map");
            routed(8, "name");
        })
        .await;
        assert_eq!((trace.halo_calls(), trace.cf_calls()), (2, 1));
        assert_eq!(trace.routed(), Some(&(7, "map".to_string())));
    }
}
