//! Starts the Azurite table and queue emulators (npm `azurite@3.35.0`), each on a free port.
//!
//! The scripts are `$AZURITE_BIN` (the table script) or `<workspace root>/node_modules/.bin/azurite-table`, and
//! `azurite-queue` beside it (installed by `npm ci` in the workspace root). Output is drained on background
//! threads, so an instance may outlive the tokio runtime that started it.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The well-known development storage account name.
pub const ACCOUNT_NAME: &str = "devstoreaccount1";

/// The well-known development storage account key.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to print "successfully started".
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How many output lines are kept.
const MAX_LINES: usize = 5000;

/// Why Azurite could not be started. `Debug` prints the same readable message as `Display`,
/// so a test that returns this error shows the fix.
pub enum AzuriteError {
    /// The `azurite-table` script is missing.
    NotInstalled {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Spawning failed.
    Spawn(PathBuf, std::io::Error),
    /// It exited before it was ready.
    Exited {
        /// The exit status.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// It did not print "successfully started" in time.
    Timeout {
        /// What it printed.
        output: String,
    },
}

impl fmt::Display for AzuriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzuriteError::NotInstalled { path } => write!(
                f,
                "Azurite is not installed: {} does not exist. Fix: run `npm ci` in the workspace \
                 root (package.json pins azurite@3.35.0), or set AZURITE_BIN to an \
                 azurite-table script",
                path.display()
            ),
            AzuriteError::Spawn(path, e) => write!(f, "cannot run {}: {e}", path.display()),
            AzuriteError::Exited { status, output } => {
                write!(f, "Azurite exited before it was ready ({status}):\n{output}")
            }
            AzuriteError::Timeout { output } => {
                write!(f, "Azurite did not report \"successfully started\" within {START_TIMEOUT:?}:\n{output}")
            }
        }
    }
}

impl fmt::Debug for AzuriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for AzuriteError {}

/// A running Azurite table service and queue service. Dropping it kills both processes.
#[derive(Debug)]
pub struct Azurite {
    child: Option<Child>,
    queue_child: Option<Child>,
    script: PathBuf,
    port: u16,
    queue_port: u16,
    location: Option<PathBuf>,
    output: Arc<Mutex<Vec<String>>>,
    started: Arc<AtomicU64>,
}

/// An RFC 1123 date (`Sun, 23 Nov 2025 12:00:00 GMT`) for a request's `x-ms-date`, from Unix seconds.
pub fn x_ms_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::util::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The `Authorization` value `SharedKeyLite` for the Table service and the development account:
/// HMAC-SHA256(key, date + "\n" + canonicalized resource).
pub fn shared_key_lite(date: &str, canonical_resource: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).expect("the dev key is base64");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(format!("{date}\n{canonical_resource}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedKeyLite {ACCOUNT_NAME}:{signature}")
}

/// A development-account connection string for these endpoints.
pub fn connection_string(table_endpoint: &str, queue_endpoint: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};\
         TableEndpoint={table_endpoint};QueueEndpoint={queue_endpoint};"
    )
}

/// The queue service's script, beside the table service's.
fn queue_script(table_script: &Path) -> PathBuf {
    table_script.with_file_name("azurite-queue")
}

/// The workspace root: the parent of the sandbox crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where the `azurite-table` script is expected: `$AZURITE_BIN` or
/// `<workspace root>/node_modules/.bin/azurite-table`.
pub fn script_path() -> PathBuf {
    match std::env::var_os("AZURITE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("node_modules").join(".bin").join("azurite-table"),
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn drain<R: Read + Send + 'static>(reader: R, output: Arc<Mutex<Vec<String>>>, started: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    // The table service says "successfully started", the queue service "successfully listens".
                    if line.contains("successfully started") || line.contains("successfully listens") {
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                    out.push(line);
                    if out.len() > MAX_LINES {
                        let excess = out.len() - MAX_LINES;
                        out.drain(..excess);
                    }
                }
            }
        }
    });
}

impl Azurite {
    /// Starts an in-memory table service on a free port and waits until it is ready.
    pub async fn start() -> Result<Azurite, AzuriteError> {
        Azurite::launch(None).await
    }

    /// Starts a table service that persists to `dir` (so [`Azurite::stop`] and
    /// [`Azurite::start_again`] keep the data).
    pub async fn start_persistent(dir: impl AsRef<Path>) -> Result<Azurite, AzuriteError> {
        Azurite::launch(Some(dir.as_ref().to_path_buf())).await
    }

    async fn launch(location: Option<PathBuf>) -> Result<Azurite, AzuriteError> {
        let script = script_path();
        if !script.is_file() {
            return Err(AzuriteError::NotInstalled { path: script });
        }
        if !queue_script(&script).is_file() {
            return Err(AzuriteError::NotInstalled { path: queue_script(&script) });
        }
        let mut az = Azurite {
            child: None,
            queue_child: None,
            script,
            port: crate::free_port(),
            queue_port: crate::free_port(),
            location,
            output: Arc::new(Mutex::new(Vec::new())),
            started: Arc::new(AtomicU64::new(0)),
        };
        // Another process may take the port before Azurite binds it: then a new port.
        let mut attempt = 1;
        loop {
            match az.spawn_and_wait().await {
                Err(AzuriteError::Exited { output, .. })
                    if attempt < crate::PORT_ATTEMPTS && crate::says_port_taken(&output) =>
                {
                    attempt += 1;
                    az.kill();
                    az.port = crate::free_port();
                    az.queue_port = crate::free_port();
                    az.output.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(az),
            }
        }
    }

    /// Starts one service's process (`service` is `table` or `queue`), its output drained.
    fn spawn(&self, script: &Path, service: &str, port: u16) -> Result<Child, AzuriteError> {
        let mut cmd = Command::new(script);
        cmd.arg(format!("--{service}Host")).arg("127.0.0.1").arg(format!("--{service}Port")).arg(port.to_string());
        match &self.location {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| AzuriteError::Spawn(dir.clone(), e))?;
                cmd.arg("--location").arg(dir).current_dir(dir);
            }
            None => {
                cmd.arg("--inMemoryPersistence").current_dir(std::env::temp_dir());
            }
        }
        cmd.arg("--disableTelemetry")
            .arg("--skipApiVersionCheck")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| AzuriteError::Spawn(script.to_path_buf(), e))?;
        if let Some(out) = child.stdout.take() {
            drain(out, self.output.clone(), self.started.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, self.output.clone(), self.started.clone());
        }
        Ok(child)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), AzuriteError> {
        let started_before = self.started.load(Ordering::SeqCst);
        self.child = Some(self.spawn(&self.script, "table", self.port)?);
        self.queue_child = Some(self.spawn(&queue_script(&self.script), "queue", self.queue_port)?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.started.load(Ordering::SeqCst) >= started_before + 2 {
                return Ok(());
            }
            let exited = [self.child.as_mut(), self.queue_child.as_mut()]
                .into_iter()
                .flatten()
                .find_map(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.kill();
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(AzuriteError::Exited { status, output: self.output().join("\n") });
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(AzuriteError::Timeout { output: self.output().join("\n") });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port of the table service.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn table_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT_NAME}", self.port)
    }

    /// The port of the queue service.
    pub fn queue_port(&self) -> u16 {
        self.queue_port
    }

    /// `http://127.0.0.1:QUEUE_PORT/devstoreaccount1`.
    pub fn queue_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT_NAME}", self.queue_port)
    }

    /// The connection string with the well-known development key (tables and queues).
    pub fn connection_string(&self) -> String {
        connection_string(&self.table_endpoint(), &self.queue_endpoint())
    }

    /// Everything Azurite printed (stdout and stderr interleaved; the last 5000 lines).
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        [self.child.as_ref(), self.queue_child.as_ref()].into_iter().flatten().map(Child::id)
    }

    /// Freezes both processes (SIGSTOP): connections hang, as with an unresponsive storage account.
    pub fn pause(&self) {
        self.pids().for_each(|pid| send_signal(pid, "STOP"));
    }

    /// Thaws paused processes (SIGCONT).
    pub fn resume(&self) {
        self.pids().for_each(|pid| send_signal(pid, "CONT"));
    }

    /// Stops the process: SIGINT (Azurite's only graceful-close signal, so a persistent
    /// instance saves its database), SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        for mut child in [self.child.take(), self.queue_child.take()].into_iter().flatten() {
            send_signal(child.id(), "CONT");
            send_signal(child.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }

    /// Starts the process again on the same port with the same storage (only a persistent
    /// instance keeps its data).
    pub async fn start_again(&mut self) -> Result<(), AzuriteError> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    fn kill(&mut self) {
        for mut child in [self.child.take(), self.queue_child.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}
