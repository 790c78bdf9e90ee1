//! Spawning, probing, restarting and stopping the handler process (docs/functions-host.md, Startup and restarts).

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{HostError, LogLevel, LogLine, LogStream, Phase, Shared};
use crate::util::uuid_v4;

/// How often readiness is probed (DefaultHttpWorkerService: 25 ms).
const READY_POLL: Duration = Duration::from_millis(25);
/// How many stderr lines are kept for error messages.
const TAIL_LINES: usize = 40;

/// One spawned handler process.
#[derive(Debug)]
pub(crate) struct ChildSlot {
    pub generation: u64,
    pub pid: u32,
    pub port: u16,
    exit: watch::Receiver<Option<ExitStatus>>,
    expected: AtomicBool,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl ChildSlot {
    fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    fn tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the exit, up to `timeout`.
    async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut rx = self.exit.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(v)) => *v,
            _ => self.exited(),
        }
    }

    /// Lets the output readers drain what the process wrote before it died.
    async fn drain_readers(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut r = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            r.drain(..).collect()
        };
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(1), h).await;
        }
    }
}

/// Sends a signal with the `kill` command, unless the process is known to have exited.
async fn signal(slot: &ChildSlot, sig: &str) {
    if slot.exited().is_some() || slot.pid == 0 {
        return;
    }
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(slot.pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Synchronous SIGKILL for `Drop`.
pub(crate) fn kill_now(shared: &Shared) {
    let child = shared.state().child.take();
    if let Some(slot) = child {
        slot.expected.store(true, Ordering::SeqCst);
        if slot.exited().is_none() && slot.pid != 0 {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(slot.pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    stream: LogStream,
    shared: Arc<Shared>,
    generation: u64,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                let level = match stream {
                    LogStream::Stdout | LogStream::Host => LogLevel::Information,
                    LogStream::Stderr if text.to_ascii_lowercase().contains("warn") => LogLevel::Warning,
                    LogStream::Stderr => LogLevel::Error,
                };
                if let Some(tail) = &tail {
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    t.push_back(text.clone());
                    while t.len() > TAIL_LINES {
                        t.pop_front();
                    }
                }
                shared.capture(LogLine { stream, level, text, generation });
            }
        }
    }
}

/// Spawns one handler process with the host's environment.
async fn spawn_child(shared: &Arc<Shared>) -> Result<Arc<ChildSlot>, HostError> {
    let app = &shared.app;
    let port = crate::free_port();
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let worker_id = uuid_v4();
    let mut cmd = tokio::process::Command::new(&app.exe);
    cmd.args(&app.args)
        .current_dir(&app.working_dir)
        .env_clear()
        .envs(app.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
        .env("FUNCTIONS_HTTPWORKER_ID", &worker_id)
        .env("FUNCTIONS_APP_ROOT_PATH", &app.app_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| HostError::Io(format!("spawning the handler {}", app.exe.display()), e))?;
    let pid = child.id().unwrap_or(0);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, LogStream::Stdout, shared.clone(), generation, None)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, LogStream::Stderr, shared.clone(), generation, Some(tail.clone()))));
    }
    let (tx, rx) = watch::channel(None);
    let slot = Arc::new(ChildSlot {
        generation,
        pid,
        port,
        exit: rx,
        expected: AtomicBool::new(false),
        stderr_tail: tail,
        readers: Mutex::new(readers),
    });
    let monitor_slot = slot.clone();
    let monitor_shared = shared.clone();
    tokio::spawn(async move {
        let status = child.wait().await.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8));
        if !monitor_slot.expected.load(Ordering::SeqCst) {
            // Only an exit of the running handler is unexpected; one before it was ready is a failed start, which
            // the start itself reports (HostError::HandlerExited) or retries.
            let mut s = monitor_shared.state();
            let current = s.child.as_ref().is_some_and(|c| c.generation == monitor_slot.generation);
            if current && matches!(s.phase, Phase::Running) {
                s.phase = Phase::Exited(status);
                drop(s);
                monitor_shared.unexpected_exits.lock().unwrap_or_else(|e| e.into_inner()).push(status);
            }
        }
        let _ = tx.send(Some(status));
    });
    Ok(slot)
}

/// One readiness probe: any HTTP answer to `GET /` counts.
async fn probe(port: u16, timeout: Duration) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", format!("127.0.0.1:{port}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        sender.send_request(req).await.ok().map(|_| ())
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(())))
}

/// Probes every 25 ms until ready; fails early with the stderr tail if the child exits.
async fn wait_ready(shared: &Shared, slot: &ChildSlot) -> Result<(), HostError> {
    let timeout = shared.opts.readiness_timeout;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = slot.exited() {
            slot.drain_readers().await;
            return Err(HostError::HandlerExited { status, stderr_tail: slot.tail() });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if probe(slot.port, remaining.min(Duration::from_secs(5))).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            slot.expected.store(true, Ordering::SeqCst);
            signal(slot, "KILL").await;
            slot.wait_exit(Duration::from_secs(5)).await;
            slot.drain_readers().await;
            return Err(HostError::ReadinessTimeout { after: timeout, stderr_tail: slot.tail() });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Spawns a handler, waits until it is ready and makes it current. A handler that could not listen because another
/// process took its port in the meantime is started again on a new port, as the Functions host restarts a worker
/// that failed (each new worker process gets a new port).
async fn spawn_ready(shared: &Arc<Shared>) -> Result<(), HostError> {
    let mut attempt = 1;
    loop {
        match spawn_ready_once(shared).await {
            Err(HostError::HandlerExited { stderr_tail, .. })
                if attempt < crate::PORT_ATTEMPTS && crate::says_port_taken(&stderr_tail) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn spawn_ready_once(shared: &Arc<Shared>) -> Result<(), HostError> {
    let slot = spawn_child(shared).await?;
    {
        let mut s = shared.state();
        s.child = Some(slot.clone());
    }
    match wait_ready(shared, &slot).await {
        Ok(()) => {
            let mut s = shared.state();
            if let Some(status) = slot.exited() {
                s.phase = Phase::Exited(status);
                drop(s);
                return Err(HostError::HandlerExited { status, stderr_tail: slot.tail() });
            }
            s.phase = Phase::Running;
            Ok(())
        }
        Err(e) => {
            slot.expected.store(true, Ordering::SeqCst);
            let mut s = shared.state();
            s.phase = Phase::Stopped;
            s.child = None;
            Err(e)
        }
    }
}

/// First start.
pub(crate) async fn start_handler(shared: &Arc<Shared>) -> Result<(), HostError> {
    let _op = shared.ops.lock().await;
    spawn_ready(shared).await
}

/// SIGKILL the current handler (if any) and start a new one; 503 meanwhile.
pub(crate) async fn restart(shared: &Arc<Shared>) -> Result<(), HostError> {
    let _op = shared.ops.lock().await;
    let old = {
        let mut s = shared.state();
        s.phase = Phase::Restarting;
        s.child.take()
    };
    if let Some(old) = old {
        old.expected.store(true, Ordering::SeqCst);
        signal(&old, "KILL").await;
        old.wait_exit(Duration::from_secs(10)).await;
    }
    spawn_ready(shared).await
}

/// SIGTERM the current handler and wait (SIGKILL after `grace`).
pub(crate) async fn stop(shared: &Arc<Shared>, grace: Duration) -> Result<ExitStatus, HostError> {
    let _op = shared.ops.lock().await;
    let slot = {
        let mut s = shared.state();
        let slot = s.child.take();
        s.phase = Phase::Stopped;
        slot
    };
    let slot = slot.ok_or(HostError::NotRunning)?;
    slot.expected.store(true, Ordering::SeqCst);
    if let Some(status) = slot.exited() {
        return Ok(status);
    }
    signal(&slot, "TERM").await;
    if let Some(status) = slot.wait_exit(grace).await {
        slot.drain_readers().await;
        return Ok(status);
    }
    signal(&slot, "KILL").await;
    let status = slot.wait_exit(Duration::from_secs(10)).await.unwrap_or_else(|| ExitStatus::from_raw(9));
    slot.drain_readers().await;
    Ok(status)
}
