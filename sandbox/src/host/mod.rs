//! `StandInHost`: a stand-in for the Azure Functions host running a custom handler
//! (docs/functions-host.md: HTTP forwarding, Startup and restarts, Queue triggers in the stand-in host).
//!
//! It loads `host.json` and `*/function.json`, spawns the handler the way the host does
//! (free port, `FUNCTIONS_*` variables, readiness probe on `GET /` every 25 ms), captures its
//! stdout/stderr as the host logs them, and:
//!
//! - **HTTP functions**: routes `/{routePrefix}/{route}` case-insensitively, enforces function keys (401 with an
//!   empty body), and forwards the request as the host rebuilds it (query rebuilt, content headers other than
//!   Content-Type/Length dropped, a chunked body arrives empty, host headers added). Only forwarding is supported:
//!   an HTTP function that would get the envelope is answered 500.
//! - **Queue triggers**: polls each queue (Get Messages, adaptive interval up to `maxPollingInterval`), sends the
//!   invocation envelope to `POST /<function>`, deletes the message after a 2xx JSON answer, else makes it visible
//!   again after `visibilityTimeout`, or moves it to `<queue>-poison` at `maxDequeueCount` (module `listener`).
//! - **Timer triggers**: never fire on their own; [`StandInHost::invoke`] and the admin API
//!   (`POST /admin/functions/<name>`, master key, answered 202) invoke them, and queue functions too.
//!
//! Every invocation is logged as the host logs it and recorded ([`StandInHost::invocations`]).

mod child;
mod config;
mod invoke;
mod listener;
mod proxy;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::server::{self, ServerHandle};

pub use config::{AuthLevel, FunctionInfo, MessageEncoding, QueueOverrides, QueueSettings, Trigger, TriggeredFunction};
pub use invoke::{Disposition, Invocation, InvocationReason, Outcome};

use child::ChildSlot;
use config::AppConfig;

/// The host version the stand-in claims (`X-Azure-Functions-HostVersion`, User-Agent).
pub const HOST_VERSION: &str = "4.1037.0";

/// The request body limit of the host (100 MB).
pub const MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;

/// The URL length limit of the host.
pub const MAX_URL_BYTES: usize = 4096;

/// Options for [`StandInHost::start`].
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Holds `host.json`, `*/function.json` and (unless `executable` is set) the handler.
    pub app_root: PathBuf,
    /// Overrides `customHandler.description.defaultExecutablePath` (relative paths are
    /// resolved against `app_root`).
    pub executable: Option<PathBuf>,
    /// Variables for the handler, merged over a cleared environment (PATH and HOME kept)
    /// unless `inherit_env` is set.
    pub env: Vec<(String, String)>,
    /// Start the handler with this process's whole environment underneath `env`.
    pub inherit_env: bool,
    /// Also load `Values` of `local.settings.json` (or `local.settings.json.example`) from the
    /// app root, underneath `env` (off by default so tests stay hermetic).
    pub load_local_settings: bool,
    /// Port for the host to listen on (127.0.0.1); `None` picks a free one.
    pub listen_port: Option<u16>,
    /// Enforce function keys (on by default; `func start` does not enforce them).
    pub enforce_keys: bool,
    /// The function key, accepted for every function.
    pub function_key: String,
    /// A host key, accepted for every `function`-level function.
    pub host_key: String,
    /// The master key, accepted everywhere and the only key for `admin` level.
    pub master_key: String,
    /// How long the handler may take to answer its first `GET /` (30 s).
    pub readiness_timeout: Duration,
    /// Overrides the forwarding timeout `min(functionTimeout, 230 s)` (for tests of the 502) and the timeout of an
    /// envelope invocation (`functionTimeout`).
    pub request_timeout: Option<Duration>,
    /// Poll the queues of queue-triggered functions (on by default).
    pub queue_triggers: bool,
    /// Overrides of host.json's `extensions.queues` (a short `visibility_timeout` and `max_polling_interval` for
    /// tests).
    pub queues: QueueOverrides,
    /// Also print every captured line (handler output and the host's own lines) as it arrives: stdout for
    /// Information, stderr otherwise (`sandbox host`).
    pub print_logs: bool,
}

impl HostOptions {
    /// Defaults for an app root.
    pub fn new(app_root: impl Into<PathBuf>) -> HostOptions {
        HostOptions { app_root: app_root.into(), ..HostOptions::default() }
    }

    /// Sets the handler executable.
    pub fn executable(mut self, path: impl Into<PathBuf>) -> HostOptions {
        self.executable = Some(path.into());
        self
    }

    /// Adds one environment variable for the handler.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> HostOptions {
        self.env.push((name.into(), value.into()));
        self
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            app_root: PathBuf::from("."),
            executable: None,
            env: Vec::new(),
            inherit_env: false,
            load_local_settings: false,
            listen_port: None,
            enforce_keys: true,
            function_key: "test-function-key".into(),
            host_key: "test-host-key".into(),
            master_key: "test-master-key".into(),
            readiness_timeout: Duration::from_secs(30),
            request_timeout: None,
            queue_triggers: true,
            queues: QueueOverrides::default(),
            print_logs: false,
        }
    }
}

/// Why the stand-in host could not start or act. `Debug` prints the readable `Display`
/// message (with the handler's stderr tail), so `.unwrap()` failures are legible.
pub enum HostError {
    /// host.json / function.json problems.
    Config(String),
    /// An I/O error (binding, spawning).
    Io(String, std::io::Error),
    /// The handler exited before it became ready.
    HandlerExited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The handler did not answer `GET /` in time.
    ReadinessTimeout {
        /// The timeout that expired.
        after: Duration,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// No handler is running.
    NotRunning,
    /// No queue- or timer-triggered function has this name.
    NoSuchFunction(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Config(m) => write!(f, "stand-in host configuration: {m}"),
            HostError::Io(what, e) => write!(f, "stand-in host: {what}: {e}"),
            HostError::HandlerExited { status, stderr_tail } => {
                write!(f, "handler exited before it was ready ({status}); stderr tail:\n{stderr_tail}")
            }
            HostError::ReadinessTimeout { after, stderr_tail } => {
                write!(f, "handler did not answer GET / within {after:?}; stderr tail:\n{stderr_tail}")
            }
            HostError::NotRunning => write!(f, "no handler is running"),
            HostError::NoSuchFunction(name) => write!(f, "no queue- or timer-triggered function is named {name:?}"),
        }
    }
}

impl fmt::Debug for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Which stream a handler log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output (logged as Information).
    Stdout,
    /// Standard error (Warning if it contains "warn", else Error).
    Stderr,
    /// The host's own lines: invocations ("Executing 'Functions.x' …"), listener errors, poison moves.
    Host,
}

/// The level the real host would log a line at (WorkerProcess.cs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// A stdout line (and the host's informational lines).
    Information,
    /// A stderr line containing "warn" (case-insensitive).
    Warning,
    /// Any other stderr line (and a failed invocation).
    Error,
}

/// One line the handler printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Where it was printed.
    pub stream: LogStream,
    /// The level the host assigns.
    pub level: LogLevel,
    /// The text, without the line ending.
    pub text: String,
    /// Which handler process printed it (1 for the first, +1 per restart).
    pub generation: u64,
}

#[derive(Debug)]
pub(crate) enum Phase {
    Starting,
    Running,
    Restarting,
    Stopped,
    Exited(ExitStatus),
}

#[derive(Debug)]
pub(crate) struct HostState {
    pub phase: Phase,
    pub child: Option<Arc<ChildSlot>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub app: AppConfig,
    pub opts: HostOptions,
    pub state: Mutex<HostState>,
    pub logs: Mutex<Vec<LogLine>>,
    pub generation: AtomicU64,
    pub unexpected_exits: Mutex<Vec<ExitStatus>>,
    pub ops: tokio::sync::Mutex<()>,
    pub invocations: Mutex<Vec<Invocation>>,
    /// Set once the host stops: listeners stop fetching.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Envelope invocations (and their message's disposition) under way.
    pub in_flight: AtomicUsize,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn logs(&self) -> MutexGuard<'_, Vec<LogLine>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn invocations(&self) -> MutexGuard<'_, Vec<Invocation>> {
        self.invocations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Captures one line (and prints it with `print_logs`).
    pub(crate) fn capture(&self, line: LogLine) {
        if self.opts.print_logs {
            use std::io::Write as _;
            let text = match line.stream {
                LogStream::Host => format!("[host] {}", line.text),
                _ => line.text.clone(),
            };
            let _ = match line.level {
                LogLevel::Information => writeln!(std::io::stdout(), "{text}"),
                _ => writeln!(std::io::stderr(), "{text}"),
            };
        }
        self.logs().push(line);
    }

    /// Captures one of the host's own lines.
    pub(crate) fn host_log(&self, level: LogLevel, text: impl Into<String>) {
        let generation = self.generation.load(Ordering::SeqCst);
        self.capture(LogLine { stream: LogStream::Host, level, text: text.into(), generation });
    }

    /// The port of the running handler.
    pub(crate) fn handler_port(&self) -> Option<u16> {
        let s = self.state();
        match (&s.phase, &s.child) {
            (Phase::Running, Some(c)) => Some(c.port),
            _ => None,
        }
    }

    /// The port of the handler once it is ready: while it starts or restarts this waits, as the host holds an
    /// invocation until its worker is ready again (`WorkerFunctionInvoker`,
    /// `DelayUntilFunctionDispatcherInitializedOrShutdown`), so a restart costs a queue message no dequeue; `None`
    /// once the handler is stopped or has exited.
    pub(crate) async fn ready_handler_port(&self) -> Option<u16> {
        loop {
            {
                let s = self.state();
                match (&s.phase, &s.child) {
                    (Phase::Running, Some(c)) => return Some(c.port),
                    (Phase::Starting | Phase::Restarting, _) => {}
                    _ => return None,
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn stop_listeners(&self) {
        self.stopping.send_replace(true);
    }
}

/// The stand-in Functions host. Dropping it kills the handler and stops listening.
#[derive(Debug)]
pub struct StandInHost {
    shared: Arc<Shared>,
    server: Option<ServerHandle>,
    runtime: Option<Runtime>,
}

impl StandInHost {
    /// Loads the app, starts listening, spawns the handler and waits until it is ready.
    pub async fn start(options: HostOptions) -> Result<StandInHost, HostError> {
        let app = config::load(&options)?;
        let runtime = server::own_runtime("host").map_err(|e| HostError::Io("building a runtime".into(), e))?;
        let shared = Arc::new(Shared {
            app,
            opts: options.clone(),
            state: Mutex::new(HostState { phase: Phase::Starting, child: None }),
            logs: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            unexpected_exits: Mutex::new(Vec::new()),
            ops: tokio::sync::Mutex::new(()),
            invocations: Mutex::new(Vec::new()),
            stopping: tokio::sync::watch::channel(false).0,
            in_flight: AtomicUsize::new(0),
        });
        let filter = proxy::filter(shared.clone());
        let server = server::spawn_on(runtime.handle(), filter, options.listen_port)
            .map_err(|e| HostError::Io("binding the host port".into(), e))?;
        let host = StandInHost { shared: shared.clone(), server: Some(server), runtime: Some(runtime) };
        host.run(async move {
            child::start_handler(&shared).await?;
            // As the host does, the listeners start once the worker is ready.
            if shared.opts.queue_triggers {
                listener::start(&shared);
            }
            Ok(())
        })
        .await?;
        Ok(host)
    }

    /// Runs a future on the host's own runtime and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, HostError>> + Send + 'static,
    ) -> Result<T, HostError> {
        let rt = self.runtime.as_ref().expect("runtime lives as long as the host");
        match rt.spawn(fut).await {
            Ok(r) => r,
            Err(e) => Err(HostError::Io("host task failed".into(), std::io::Error::other(e.to_string()))),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.as_ref().map(ServerHandle::url).unwrap_or_default()
    }

    /// The port the host listens on.
    pub fn port(&self) -> u16 {
        self.server.as_ref().map(ServerHandle::port).unwrap_or(0)
    }

    /// `url() + "/" + routePrefix + "/" + route` of the named function (the name is used as
    /// the route when no such function exists).
    pub fn function_url(&self, name: &str) -> String {
        let route = self
            .shared
            .app
            .functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.route.clone())
            .unwrap_or_else(|| name.to_string());
        let prefix = &self.shared.app.route_prefix_raw;
        if prefix.is_empty() {
            format!("{}/{route}", self.url())
        } else {
            format!("{}/{prefix}/{route}", self.url())
        }
    }

    /// The function key (accepted for every function).
    pub fn function_key(&self) -> &str {
        &self.shared.opts.function_key
    }

    /// The host key.
    pub fn host_key(&self) -> &str {
        &self.shared.opts.host_key
    }

    /// The master key.
    pub fn master_key(&self) -> &str {
        &self.shared.opts.master_key
    }

    /// The discovered HTTP functions.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        self.shared.app.functions.clone()
    }

    /// The discovered queue- and timer-triggered functions.
    pub fn triggered_functions(&self) -> Vec<TriggeredFunction> {
        self.shared.app.triggered.clone()
    }

    /// The queue settings in effect (host.json's `extensions.queues` with the overrides).
    pub fn queue_settings(&self) -> QueueSettings {
        self.shared.app.queues.clone()
    }

    /// Every envelope invocation finished so far (with what became of its queue message), in order of completion.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.shared.invocations().clone()
    }

    /// Waits until the finished invocations satisfy `pred`; returns whether they did within `timeout`.
    pub async fn wait_for_invocations(&self, pred: impl Fn(&[Invocation]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.shared.invocations()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Invokes a queue- or timer-triggered function once, as the admin API does (`Data.<binding>` is `input` for
    /// a queue function, the timer's schedule status for a timer), and waits for the answer.
    pub async fn invoke(&self, name: &str, input: &str) -> Result<Invocation, HostError> {
        let shared = self.shared.clone();
        let (name, input) = (name.to_string(), input.to_string());
        self.run(async move {
            let function = invoke::find(&shared, &name).ok_or(HostError::NoSuchFunction(name))?;
            Ok(invoke::by_host_api(&shared, &function, &input).await)
        })
        .await
    }

    /// The handler executable that is run.
    pub fn executable(&self) -> PathBuf {
        self.shared.app.exe.clone()
    }

    /// Every line the handler printed so far (all generations), in arrival order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.shared.logs().clone()
    }

    /// Waits until a captured line satisfies `pred`; returns whether one did within `timeout`.
    pub async fn wait_for_log(&self, pred: impl Fn(&LogLine) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.logs().iter().any(&pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pid of the running handler.
    pub fn handler_pid(&self) -> Option<u32> {
        let s = self.shared.state();
        match s.phase {
            Phase::Running => s.child.as_ref().map(|c| c.pid),
            _ => None,
        }
    }

    /// The port the running handler listens on.
    pub fn handler_port(&self) -> Option<u16> {
        self.shared.handler_port()
    }

    /// The exit status of the current handler if it died without being asked to (requests get
    /// 503 then; the stand-in does not restart it on its own).
    pub fn handler_exited(&self) -> Option<ExitStatus> {
        match self.shared.state().phase {
            Phase::Exited(status) => Some(status),
            _ => None,
        }
    }

    /// Exit statuses of handlers that died without being asked to (a test should fail).
    pub fn unexpected_exits(&self) -> Vec<ExitStatus> {
        self.shared.unexpected_exits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// SIGKILLs the handler, spawns a new one on a new port and waits until it is ready.
    /// Requests arriving meanwhile get 503 from the host.
    pub async fn restart_handler(&self) -> Result<(), HostError> {
        let shared = self.shared.clone();
        self.run(async move { child::restart(&shared).await }).await
    }

    /// SIGTERMs the handler and waits for it to exit (SIGKILL after 30 s). Requests get 503
    /// afterwards. Panics if no handler is running.
    pub async fn stop_handler_gracefully(&self) -> ExitStatus {
        let shared = self.shared.clone();
        self.run(async move { child::stop(&shared, Duration::from_secs(30)).await })
            .await
            .expect("sandbox: stop_handler_gracefully needs a running handler")
    }

    /// Stops fetching queue messages, lets the invocations under way finish (30 s at most), stops the handler
    /// (SIGTERM, SIGKILL after 5 s), then the listener.
    pub async fn shutdown(mut self) {
        self.shared.stop_listeners();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let shared = self.shared.clone();
        let _ = self.run(async move { child::stop(&shared, Duration::from_secs(5)).await }).await;
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
        }
    }
}

impl Drop for StandInHost {
    fn drop(&mut self) {
        self.shared.stop_listeners();
        child::kill_now(&self.shared);
        self.server.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
