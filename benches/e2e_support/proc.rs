//! A handler process started the way the Functions host starts it (cleared environment, settings, a free
//! `FUNCTIONS_CUSTOMHANDLER_PORT`), a precise readiness probe, and what /proc says about it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process (all its threads, live and exited), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let (user, sys) = cpu_split(pid);
    user + sys
}

/// (utime, stime) of a process, in clock ticks.
pub fn cpu_split(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3 (state); utime is 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (get(11), get(12))
}

/// A `kB` field of /proc/<pid>/status (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One `GET /` over a fresh connection; any HTTP answer counts (as for the host's readiness probe).
pub fn probe(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 9];
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf.starts_with(b"HTTP/1.")
}

/// The handler's stdout (its log lines): discarded, or kept in `$BENCH_HANDLER_LOGS/handler-<port>.log`.
fn log_file(port: u16) -> Stdio {
    match std::env::var_os("BENCH_HANDLER_LOGS").filter(|d| !d.is_empty()) {
        Some(dir) => {
            File::create(Path::new(&dir).join(format!("handler-{port}.log"))).map_or(Stdio::null(), Stdio::from)
        }
        None => Stdio::null(),
    }
}

/// A spawned process listening on 127.0.0.1:`port`. Dropping it kills it.
pub struct Proc {
    child: Child,
    pub pid: u32,
    pub port: u16,
    spawned_at: Instant,
    stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `exe` with exactly `env` (plus the port variables the host sets, and `BENCH_HANDLER_ENV`); stdout
    /// (the request log lines) goes to /dev/null, stderr to a file shown if the start fails.
    pub fn spawn(exe: &Path, env: &[(String, String)]) -> Proc {
        let port = sandbox::free_port();
        let stderr_path = std::env::temp_dir().join(format!("bench-e2e-{}-{port}.stderr", std::process::id()));
        let stderr = File::create(&stderr_path).expect("a temp file for stderr");
        // `BENCH_WRAPPER="valgrind --tool=callgrind"` runs the binary under a tool (the pid stays the binary's).
        let wrapper = std::env::var("BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // `BENCH_HANDLER_ENV="TOKIO_WORKER_THREADS=1 …"` adds settings (experiments without rebuilding).
        let extra = std::env::var("BENCH_HANDLER_ENV").unwrap_or_default();
        let extra: Vec<(&str, &str)> = extra.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
        let spawned_at = Instant::now();
        let child = command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(log_file(port))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        Proc { pid: child.id(), child, port, spawned_at, stderr_path }
    }

    /// Time from spawn to the first answer on `GET /`, probing every 200 µs.
    pub fn wait_ready(&mut self, timeout: Duration) -> Duration {
        loop {
            if probe(self.port) {
                return self.spawned_at.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                panic!("the process exited before it was ready ({status}):\n{stderr}");
            }
            if self.spawned_at.elapsed() > timeout {
                panic!("the process did not answer GET / within {timeout:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid)
    }

    pub fn rss_kb(&self) -> u64 {
        status_kb(self.pid, "VmRSS")
    }

    pub fn hwm_kb(&self) -> u64 {
        status_kb(self.pid, "VmHWM")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Sends a signal with the `kill` command.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `perf record` attached to a process while a level runs (for `BENCH_PERF=<dir>`).
pub struct PerfRecording {
    child: Option<Child>,
}

impl PerfRecording {
    pub fn start(pid: u32, out: &Path) -> PerfRecording {
        // DWARF unwinding: release builds have no frame pointers (`BENCH_PERF_CALLGRAPH` overrides, e.g. `fp`).
        let callgraph = std::env::var("BENCH_PERF_CALLGRAPH").unwrap_or_else(|_| "dwarf,16384".into());
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "--call-graph", &callgraph, "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        // Give perf a moment to attach.
        std::thread::sleep(Duration::from_millis(300));
        PerfRecording { child }
    }

    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            let _ = child.wait();
        }
    }
}

/// `perf stat` counting syscalls, context switches and page faults of a process (all threads) while it runs.
pub struct PerfStat {
    child: Option<Child>,
    out: PathBuf,
}

/// What `perf stat` counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub syscalls: f64,
    pub context_switches: f64,
    pub page_faults: f64,
    /// CPU time of all the process's threads, user and kernel, in milliseconds (precise, unlike clock ticks).
    pub task_clock_ms: f64,
}

impl PerfStat {
    /// Syscalls, context switches and page faults. `None` when perf is not installed or cannot attach.
    pub fn start(pid: u32) -> Option<PerfStat> {
        Self::start_events(pid, "raw_syscalls:sys_enter,context-switches,page-faults")
    }

    /// CPU time only (`task-clock`: cheap to count, so it does not slow what it measures).
    pub fn cpu_clock(pid: u32) -> Option<PerfStat> {
        Self::start_events(pid, "task-clock")
    }

    fn start_events(pid: u32, events: &str) -> Option<PerfStat> {
        let out = std::env::temp_dir().join(format!("bench-e2e-perfstat-{}-{pid}.csv", std::process::id()));
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", events, "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(300));
        Some(PerfStat { child: Some(child), out })
    }

    pub fn stop(mut self) -> Counted {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            let _ = child.wait();
        }
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        let mut counted = Counted::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            match *event {
                "raw_syscalls:sys_enter" => counted.syscalls = value,
                "context-switches" => counted.context_switches = value,
                "page-faults" => counted.page_faults = value,
                "task-clock" => counted.task_clock_ms = value,
                _ => {}
            }
        }
        counted
    }
}
