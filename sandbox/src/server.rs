//! Binds a warp filter on `127.0.0.1:<port or 0>` and hands back the bound address plus a
//! shutdown handle. Dropping the handle stops the server.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::{Filter, Rejection, Reply};

/// A running warp server. Drop it to stop the server at once; call [`ServerHandle::shutdown`]
/// to stop accepting and wait for in-flight requests.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    runtime: Option<Runtime>,
}

impl ServerHandle {
    /// The bound socket address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: closes the listener and waits until open requests have been answered.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            // Never blocks, so it is safe inside async code.
            rt.shutdown_background();
        } else if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn bind_std(port: Option<u16>) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port.unwrap_or(0)))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn start_on<F>(
    handle: &tokio::runtime::Handle,
    filter: F,
    std_listener: std::net::TcpListener,
) -> io::Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<()>)>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let addr = std_listener.local_addr()?;
    let listener = {
        let _guard = handle.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = handle.spawn(async move {
        warp::serve(filter)
            .incoming(listener)
            .graceful(async move {
                let _ = rx.await;
            })
            .run()
            .await;
    });
    Ok((addr, tx, task))
}

/// Serves `filter` on the *current* tokio runtime at `127.0.0.1:<port or 0>`.
pub async fn bind<F>(filter: F, port: Option<u16>) -> io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind_std(port)?;
    let handle = tokio::runtime::Handle::current();
    let (addr, tx, task) = start_on(&handle, filter, listener)?;
    Ok(ServerHandle { addr, shutdown: Some(tx), task: Some(task), runtime: None })
}

/// Serves `filter` on a dedicated small runtime (its own thread) at `127.0.0.1:<port or 0>`.
/// Works from sync and async code; the server keeps answering while the caller blocks.
pub fn spawn<F>(filter: F, port: Option<u16>, name: &str) -> io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind_std(port)?;
    let runtime = own_runtime(name)?;
    let (addr, tx, task) = start_on(runtime.handle(), filter, listener)?;
    Ok(ServerHandle { addr, shutdown: Some(tx), task: Some(task), runtime: Some(runtime) })
}

/// Serves `filter` on the runtime behind `handle` (the handle does not own that runtime).
pub(crate) fn spawn_on<F>(handle: &tokio::runtime::Handle, filter: F, port: Option<u16>) -> io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind_std(port)?;
    let (addr, tx, task) = start_on(handle, filter, listener)?;
    Ok(ServerHandle { addr, shutdown: Some(tx), task: Some(task), runtime: None })
}

/// A one-worker multi-thread runtime with all drivers, used by the fakes and the host.
pub(crate) fn own_runtime(name: &str) -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("sandbox-{name}"))
        .enable_all()
        .build()
}
