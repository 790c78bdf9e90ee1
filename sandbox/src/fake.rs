//! What the Halo and ContraForce fakes share: their configuration, state behind a lock, the request log and the
//! fault switches, served on a small runtime of their own.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use warp::Filter;

use crate::fakeio::{capture, Incoming};
use crate::faults::Faults;
use crate::record::RequestLog;
use crate::server::{self, ServerHandle};

/// One fake's insides: `config` and `state` are its own, the log and the faults work the same in every fake.
#[derive(Debug)]
pub(crate) struct FakeCore<C, S> {
    pub config: C,
    state: Mutex<S>,
    pub log: RequestLog,
    pub faults: Faults,
}

impl<C, S> FakeCore<C, S> {
    /// The state, even after a panic in another request (a test's assertion must still see it).
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts a fake on 127.0.0.1 (`port` or a free one): every request is captured and handed to `dispatch`.
pub(crate) fn serve<C, S, D, Fut>(
    config: C,
    state: S,
    port: Option<u16>,
    name: &str,
    dispatch: D,
) -> io::Result<(Arc<FakeCore<C, S>>, ServerHandle)>
where
    C: Send + Sync + 'static,
    S: Send + 'static,
    D: Fn(Arc<FakeCore<C, S>>, Incoming) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = warp::reply::Response> + Send,
{
    let core =
        Arc::new(FakeCore { config, state: Mutex::new(state), log: RequestLog::default(), faults: Faults::new() });
    let shared = core.clone();
    let filter = capture().then(move |req: Incoming| dispatch.clone()(shared.clone(), req));
    let server = server::spawn(filter, port, name)?;
    Ok((core, server))
}
