//! Starts the Azurite table and queue emulators (npm `azurite@3.35.0`), each on a free port.
//!
//! The scripts are `$AZURITE_BIN` (else `<workspace root>/node_modules/.bin/azurite-table`, installed by `npm ci` in
//! the workspace root) and `$AZURITE_QUEUE_BIN` (else `azurite-queue` beside the table script). Output is drained on
//! background threads, so an instance may outlive the tokio runtime that started it.

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

/// How long an Azurite service may take to say that it listens.
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
    /// It did not say in time that it listens.
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
                 root (package.json pins azurite@3.35.0), or set AZURITE_BIN (AZURITE_QUEUE_BIN) to an \
                 azurite-table (azurite-queue) script",
                path.display()
            ),
            AzuriteError::Spawn(path, e) => write!(f, "cannot run {}: {e}", path.display()),
            AzuriteError::Exited { status, output } => {
                write!(f, "Azurite exited before it was ready ({status}):\n{output}")
            }
            AzuriteError::Timeout { output } => {
                write!(f, "Azurite did not report that it listens within {START_TIMEOUT:?}:\n{output}")
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

/// A running Azurite: its table and its queue service (two processes, each on its own free port). Dropping it
/// kills both.
#[derive(Debug)]
pub struct Azurite {
    table: Service,
    queue: Service,
    location: Option<PathBuf>,
    output: Arc<Mutex<Vec<String>>>,
}

/// Which Azurite service one process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Table,
    Queue,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::Queue => "queue",
        }
    }

    /// What the service prints once it listens.
    fn ready_marker(self) -> &'static str {
        match self {
            Kind::Table => "Table service successfully started",
            Kind::Queue => "Queue service successfully listens",
        }
    }
}

/// One Azurite process.
#[derive(Debug)]
struct Service {
    kind: Kind,
    script: PathBuf,
    port: u16,
    child: Option<Child>,
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

/// A development-account connection string for these endpoints (the queue endpoint is always named: the emulator
/// account has no public endpoint to fall back on).
pub fn connection_string(table_endpoint: &str, queue_endpoint: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};\
         TableEndpoint={table_endpoint};QueueEndpoint={queue_endpoint};"
    )
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

/// Where the `azurite-queue` script is expected: `$AZURITE_QUEUE_BIN`, else beside the table script.
pub fn queue_script_path() -> PathBuf {
    match std::env::var_os("AZURITE_QUEUE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => script_path().with_file_name("azurite-queue"),
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

fn drain<R: Read + Send + 'static>(
    reader: R,
    output: Arc<Mutex<Vec<String>>>,
    started: Arc<AtomicU64>,
    marker: &'static str,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    if line.contains(marker) {
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

impl Service {
    fn new(kind: Kind, script: PathBuf) -> Service {
        Service { kind, script, port: crate::free_port(), child: None, started: Arc::new(AtomicU64::new(0)) }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT_NAME}", self.port)
    }

    /// Starts the process, retrying on a new port when another process took this one before Azurite bound it.
    async fn launch(&mut self, location: Option<&Path>, output: &Arc<Mutex<Vec<String>>>) -> Result<(), AzuriteError> {
        if !self.script.is_file() {
            return Err(AzuriteError::NotInstalled { path: self.script.clone() });
        }
        let mut attempt = 1;
        loop {
            match self.spawn_and_wait(location, output).await {
                Err(AzuriteError::Exited { output: printed, .. })
                    if attempt < crate::PORT_ATTEMPTS && crate::says_port_taken(&printed) =>
                {
                    attempt += 1;
                    self.port = crate::free_port();
                }
                other => return other,
            }
        }
    }

    async fn spawn_and_wait(
        &mut self,
        location: Option<&Path>,
        output: &Arc<Mutex<Vec<String>>>,
    ) -> Result<(), AzuriteError> {
        let kind = self.kind.name();
        let mut cmd = Command::new(&self.script);
        cmd.arg(format!("--{kind}Host")).arg("127.0.0.1").arg(format!("--{kind}Port")).arg(self.port.to_string());
        match location {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| AzuriteError::Spawn(dir.to_path_buf(), e))?;
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
        let mut child = cmd.spawn().map_err(|e| AzuriteError::Spawn(self.script.clone(), e))?;
        let started_before = self.started.load(Ordering::SeqCst);
        let printed_before = output.lock().unwrap_or_else(|e| e.into_inner()).len();
        let marker = self.kind.ready_marker();
        if let Some(out) = child.stdout.take() {
            drain(out, output.clone(), self.started.clone(), marker);
        }
        if let Some(err) = child.stderr.take() {
            drain(err, output.clone(), self.started.clone(), marker);
        }
        self.child = Some(child);
        let printed = || {
            let out = output.lock().unwrap_or_else(|e| e.into_inner());
            out[printed_before.min(out.len())..].join("\n")
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.started.load(Ordering::SeqCst) > started_before {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(AzuriteError::Exited { status, output: printed() });
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(AzuriteError::Timeout { output: printed() });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            send_signal(pid, sig);
        }
    }

    /// SIGINT (Azurite's only graceful-close signal, so a persistent instance saves its database), SIGKILL after
    /// 10 s.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), "CONT");
        send_signal(child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Azurite {
    /// Starts in-memory table and queue services on free ports and waits until both are ready.
    pub async fn start() -> Result<Azurite, AzuriteError> {
        Azurite::launch(None).await
    }

    /// Starts table and queue services that persist to `dir` (so [`Azurite::stop`] and
    /// [`Azurite::start_again`] keep the data).
    pub async fn start_persistent(dir: impl AsRef<Path>) -> Result<Azurite, AzuriteError> {
        Azurite::launch(Some(dir.as_ref().to_path_buf())).await
    }

    async fn launch(location: Option<PathBuf>) -> Result<Azurite, AzuriteError> {
        let mut az = Azurite {
            table: Service::new(Kind::Table, script_path()),
            queue: Service::new(Kind::Queue, queue_script_path()),
            location,
            output: Arc::new(Mutex::new(Vec::new())),
        };
        az.start_services().await?;
        Ok(az)
    }

    async fn start_services(&mut self) -> Result<(), AzuriteError> {
        let location = self.location.clone();
        self.table.launch(location.as_deref(), &self.output).await?;
        self.queue.launch(location.as_deref(), &self.output).await
    }

    /// The port of the table service.
    pub fn port(&self) -> u16 {
        self.table.port
    }

    /// The port of the queue service.
    pub fn queue_port(&self) -> u16 {
        self.queue.port
    }

    /// The table service's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.table.pid()
    }

    /// The queue service's process id, while running.
    pub fn queue_pid(&self) -> Option<u32> {
        self.queue.pid()
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1` of the table service.
    pub fn table_endpoint(&self) -> String {
        self.table.endpoint()
    }

    /// `http://127.0.0.1:QPORT/devstoreaccount1` of the queue service.
    pub fn queue_endpoint(&self) -> String {
        self.queue.endpoint()
    }

    /// The connection string with the well-known development key and both endpoints.
    pub fn connection_string(&self) -> String {
        connection_string(&self.table_endpoint(), &self.queue_endpoint())
    }

    /// A client for the queue service (to put messages for a queue trigger, or read a poison queue).
    pub fn queues(&self) -> crate::queues::QueueService {
        crate::queues::QueueService::from_connection_string(&self.connection_string())
            .expect("Azurite's connection string is usable")
    }

    /// Everything Azurite printed (both services, stdout and stderr interleaved; the last 5000 lines).
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Freezes both processes (SIGSTOP): connections hang, as with an unresponsive service.
    pub fn pause(&self) {
        self.table.signal("STOP");
        self.queue.signal("STOP");
    }

    /// Thaws paused processes (SIGCONT).
    pub fn resume(&self) {
        self.table.signal("CONT");
        self.queue.signal("CONT");
    }

    /// Stops both processes: SIGINT (Azurite's only graceful-close signal, so a persistent instance saves its
    /// database), SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        self.table.stop().await;
        self.queue.stop().await;
    }

    /// Starts both processes again on the same ports with the same storage (only a persistent instance keeps its
    /// data).
    pub async fn start_again(&mut self) -> Result<(), AzuriteError> {
        self.stop().await;
        let location = self.location.clone();
        self.table.spawn_and_wait(location.as_deref(), &self.output).await?;
        self.queue.spawn_and_wait(location.as_deref(), &self.output).await
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.table.kill();
        self.queue.kill();
    }
}
