//! Start-up: build the app, say which directions are on, serve until SIGTERM/SIGINT, finishing requests in flight.

use crate::app::App;
use crate::config::Config;
use crate::directions;
use crate::keyvault::KeyVaultSecrets;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// A start that cannot go on (the message names the cause).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

fn announce(app: &App) {
    for direction in directions::ALL {
        match app.off(direction) {
            None => tracing::info!(direction = direction.name(), "direction is on"),
            Some(off) => {
                let problems = off.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                tracing::warn!(
                    direction = off.direction,
                    problems,
                    "direction is off: it answers 503 until configured"
                );
            }
        }
    }
}

/// Serves the bridge on 127.0.0.1:`config.port` until a shutdown signal.
pub async fn run(config: Config) -> Result<(), StartupError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
    let key_vault = config.key_vault.clone();
    let app = Arc::new(App::new(config).map_err(StartupError::Setup)?);
    if let Some(kv) = key_vault {
        let reader = KeyVaultSecrets::new(&kv, &app.config, app.secrets.clone(), app.http.clone())
            .map_err(StartupError::Setup)?;
        let read = reader.refresh_once().await;
        tracing::info!(vault = %kv.vault_uri, read, refresh_seconds = kv.refresh.as_secs(), "secrets read from Key Vault");
        reader.spawn_refresh();
    }
    announce(&app);
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "listening");
    warp::serve(crate::routes::routes(app.clone())).incoming(listener).graceful(shutdown_signal()).run().await;
    // The run records of the last answers are still being written: wait for them (bounded).
    if tokio::time::timeout(std::time::Duration::from_secs(10), app.runs.flush()).await.is_err() {
        tracing::warn!("stopping with run records unwritten");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing requests in flight"),
    }
}
