//! Logs: `tracing` to stdout, one line per event. The Functions host turns every stderr line into an Error, so
//! stderr is kept for a failed start only. Dependencies' logs are held at `warn` (their debug lines print URLs).

use tracing_subscriber::EnvFilter;

pub fn init(level: &str) {
    let filter = EnvFilter::try_new(format!(
        "{level},azure_core=warn,azure_data_tables=warn,azure_storage=warn,azure_identity=warn,\
         azure_storage_queues=warn,hyper=warn,hyper_util=warn,reqwest=warn,warp=warn,html5ever=error"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
