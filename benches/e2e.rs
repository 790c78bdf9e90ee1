//! End to end: the release `handler` binary against Azurite and the zero-latency Halo/ContraForce fakes, on
//! loopback. What one event costs the handler process (CPU seconds per 1,000 events, memory), how fast it starts,
//! its latency and throughput at 1, 16 and 128 concurrent senders, the halo-webhook with 1/50/500 actions, and the
//! upstream calls per event (Halo and ContraForce counted by the fakes, Table Storage by a counting proxy).
//!
//! ```text
//! BENCH_QUICK=1 cargo bench --bench e2e     # quick mode, a couple of minutes
//! cargo bench --bench e2e                   # full mode
//! ```
//!
//! Knobs: `BENCH_ONLY=cold,outbound,halo,calls,host,baseline,musl,sizes` runs some sections;
//! `BENCH_HANDLER=<path>` measures another build of `handler` (e.g. an unstripped one for profiling);
//! `BENCH_HANDLER_ENV="K=V …"` adds settings to the handler's environment (e.g. `LOG_LEVEL=debug`);
//! `BENCH_HANDLER_LOGS=<dir>` keeps each handler's log lines in `<dir>/handler-<port>.log`;
//! `BENCH_PERF=<dir>` records `perf record` of the handler during each cf-webhook path's 16-sender run (call graphs
//! by DWARF unwinding; `BENCH_PERF_CALLGRAPH=fp` or another `--call-graph` mode overrides it);
//! `BENCH_ONLY=profile` (not part of the default run) sends `BENCH_PROFILE_N` (200) events of each path, one at a
//! time, to a fresh handler each, for a profiler given in `BENCH_WRAPPER` (e.g. `valgrind --tool=callgrind`:
//! counters are zeroed with `callgrind_control` before the measured events and dumped after them).
//! Results are printed and written to `target/bench/e2e-<quick|full>.md`. Under `cargo test` (no `--bench`
//! argument) this does nothing.

mod common;
mod e2e_support;

use common::{later_event, test_event, typical_event, typical_note_html, Endpoints};
use e2e_support::load::{drive, expect_status, median, percentile, Driven, Target};
use e2e_support::proc::{clk_tck, cpu_split, status_kb, Counted, PerfRecording, PerfStat, Proc};
use e2e_support::{baseline, mb, num, Report};
use sandbox::azurite::Azurite;
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{FakeHalo, HaloConfig, NewAction, NewTicket};
use sandbox::host::{HostOptions, StandInHost};
use sandbox::proxy::{reads_writes, CountingProxy, Counts};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LEVELS: [usize; 3] = [1, 16, 128];
/// Incidents created up front for the duplicate and later-event paths.
const POOL: usize = 64;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Event numbers of the warm-up (clear of the measured ones).
const WARM_OFFSET: usize = 10_000_000;

struct Plan {
    mode: &'static str,
    cold_spawns: usize,
    /// Events per concurrency level, by path.
    new_n: usize,
    dup_n: usize,
    test_n: usize,
    note_n: usize,
    /// (actions on the ticket, tickets measured, "nothing new" webhooks for the CPU figure).
    halo: [(usize, usize, usize); 3],
    calls_n: usize,
    host_n: usize,
    only: Option<Vec<String>>,
    perf_dir: Option<PathBuf>,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = matches!(std::env::var("BENCH_QUICK").as_deref(), Ok("1" | "true" | "yes"));
        let only = std::env::var("BENCH_ONLY")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
        let perf_dir = std::env::var_os("BENCH_PERF").filter(|s| !s.is_empty()).map(PathBuf::from);
        if quick {
            Plan {
                mode: "quick",
                cold_spawns: 20,
                new_n: 200,
                dup_n: 500,
                test_n: 1000,
                note_n: 200,
                halo: [(1, 10, 300), (50, 3, 300), (500, 1, 60)],
                calls_n: 30,
                host_n: 300,
                only,
                perf_dir,
            }
        } else {
            Plan {
                mode: "full",
                cold_spawns: 50,
                new_n: 1000,
                dup_n: 2000,
                test_n: 5000,
                note_n: 1000,
                halo: [(1, 30, 1000), (50, 5, 1000), (500, 3, 200)],
                calls_n: 100,
                host_n: 1000,
                only,
                perf_dir,
            }
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|s| s == section))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    New,
    Duplicate,
    Test,
    Note,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::New => "new incident",
            Kind::Duplicate => "duplicate event",
            Kind::Test => "test delivery",
            Kind::Note => "later event (note)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Duplicate => "duplicate",
            Kind::Test => "test",
            Kind::Note => "note",
        }
    }

    fn answer(self) -> &'static str {
        match self {
            Kind::New => "created",
            Kind::Duplicate => "duplicate",
            Kind::Test => "test",
            Kind::Note => "updated",
        }
    }
}

/// A run-unique tag for ids.
fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

struct Ctx {
    plan: Plan,
    exe: PathBuf,
    halo: FakeHalo,
    cf: FakeCf,
    azurite: Azurite,
    report: Report,
    /// Figures for the summary against the targets.
    summary: Vec<Vec<String>>,
}

impl Ctx {
    fn env_with_storage(&self, storage: String) -> Vec<(String, String)> {
        let mut env = Endpoints::of_fakes(&self.halo, &self.cf, storage).env();
        // A table of its own for every handler started: Azurite answers a query by scanning the whole table (Azure
        // reads one partition), so a table grown by earlier sections would slow the later ones.
        env.push(("STATE_TABLE_NAME".into(), unique("bench").replace('-', "x")));
        env.push(("RECONCILE_SCHEDULE".into(), "0 */5 * * * *".into()));
        // Throughput, not Halo's budget, is measured here (`cargo bench --bench burst` measures the budget).
        env.push(("HALO_RATE_LIMIT".into(), "10000".into()));
        env
    }

    fn env(&self) -> Vec<(String, String)> {
        self.env_with_storage(self.azurite.connection_string())
    }
}

fn main() {
    if baseline::serve_if_asked() {
        return;
    }
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("e2e: nothing to do outside `cargo bench --bench e2e` (BENCH_QUICK=1 for the quick mode)");
        return;
    }
    let plan = Plan::from_env();
    let exe = std::env::var_os("BENCH_HANDLER")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_handler")));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let azurite = runtime.block_on(Azurite::start()).expect("Azurite (run `npm ci` first)");
    if let Some(pid) = azurite.pid() {
        let _ = AZURITE_PID.set(pid);
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        exe,
        halo: FakeHalo::start(HaloConfig::test()),
        cf: FakeCf::start(CfConfig::test()),
        azurite,
        report: Report::default(),
        summary: Vec::new(),
        plan,
    };
    ctx.report.line(&format!(
        "e2e bench, {} mode; handler: {}; CPU from perf task-clock when perf attaches (clock ticks at {} Hz as a cross-check)",
        ctx.plan.mode,
        ctx.exe.display(),
        clk_tck()
    ));
    machine(&mut ctx.report);

    let mut timings = Vec::new();
    let mut timed = |name: &str, ctx: &mut Ctx, f: &dyn Fn(&mut Ctx)| {
        if ctx.plan.wants(name) {
            let t = Instant::now();
            f(ctx);
            timings.push(format!("{name} {:.0} s", t.elapsed().as_secs_f64()));
        }
    };
    timed("sizes", &mut ctx, &|ctx| sizes(ctx));
    timed("cold", &mut ctx, &|ctx| {
        let exe = ctx.exe.clone();
        let env = ctx.env();
        cold_start(ctx, "handler (release)", &exe, &env, true);
    });
    timed("outbound", &mut ctx, &|ctx| runtime.block_on(outbound(ctx)));
    timed("halo", &mut ctx, &|ctx| runtime.block_on(halo_webhook(ctx)));
    timed("calls", &mut ctx, &|ctx| runtime.block_on(calls(ctx)));
    timed("host", &mut ctx, &|ctx| runtime.block_on(through_host(ctx)));
    timed("baseline", &mut ctx, &|ctx| runtime.block_on(baseline_server(ctx)));
    timed("musl", &mut ctx, &|ctx| runtime.block_on(musl(ctx)));
    if ctx.plan.only.as_ref().is_some_and(|o| o.iter().any(|s| s == "profile")) {
        runtime.block_on(profile(&mut ctx));
    }

    ctx.report.section("Summary against the targets");
    let rows = std::mem::take(&mut ctx.summary);
    ctx.report.table(&["Target", "Measured", "Limit", "Result"], &rows);
    ctx.report.line(&format!("Sections: {}; total {:.0} s.", timings.join(", "), started.elapsed().as_secs_f64()));
    let dir = common::target_dir().join("bench");
    let _ = std::fs::create_dir_all(&dir);
    let out = dir.join(format!("e2e-{}.md", ctx.plan.mode));
    if std::fs::write(&out, &ctx.report.md).is_ok() {
        println!("\nwritten to {}", out.display());
    }
}

fn pass(ok: bool) -> String {
    if ok { "pass" } else { "**miss**" }.into()
}

fn machine(report: &mut Report) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("?");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    report.line(&format!("Machine: {cpus} CPUs ({model}), {} GB RAM, {rustc}", mem_kb / 1024 / 1024));
}

fn sizes(ctx: &mut Ctx) {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    let root = common::repo_root();
    let musl = common::target_dir().join("x86_64-unknown-linux-musl/release/handler");
    let zip = root.join("dist/app.zip");
    ctx.report.section("Sizes");
    let mut rows = Vec::new();
    for (what, path) in [
        ("handler (release, glibc)", ctx.exe.clone()),
        ("handler (musl, packaged)", musl),
        ("dist/app.zip", zip.clone()),
    ] {
        match len(&path) {
            Some(n) => rows.push(vec![what.to_string(), format!("{:.2} MB", n as f64 / 1e6), format!("{n} bytes")]),
            None => rows.push(vec![what.to_string(), "absent".into(), String::new()]),
        }
    }
    ctx.report.table(&["File", "Size", "Bytes"], &rows);
    if let Some(n) = len(&zip) {
        ctx.summary.push(vec![
            "package (dist/app.zip)".into(),
            format!("{:.2} MB", n as f64 / 1e6),
            "< 10 MB".into(),
            pass(n < 10_000_000),
        ]);
    } else if let Some(n) = len(&ctx.exe) {
        ctx.summary.push(vec![
            "binary (no package built)".into(),
            format!("{:.2} MB", n as f64 / 1e6),
            "< 10 MB".into(),
            pass(n < 10_000_000),
        ]);
    }
}

/// Spawn → first answer on `GET /`, many times; resident memory 200 ms after the start.
fn cold_start(ctx: &mut Ctx, label: &str, exe: &Path, env: &[(String, String)], is_handler: bool) -> (f64, u64) {
    let n = ctx.plan.cold_spawns;
    // One unmeasured start warms the page cache.
    let mut warm = Proc::spawn(exe, env);
    warm.wait_ready(READY_TIMEOUT);
    drop(warm);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..n {
        let mut p = Proc::spawn(exe, env);
        times.push(p.wait_ready(READY_TIMEOUT).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
        rss.push(p.rss_kb() as f64);
        drop(p);
        std::thread::sleep(Duration::from_millis(30));
    }
    times.sort_by(f64::total_cmp);
    let (p50, p90) = (percentile(&times, 0.5), percentile(&times, 0.9));
    let rest = median(&rss) as u64;
    ctx.report.section(&format!("Cold start: {label}"));
    ctx.report.table(
        &["Spawns", "median ms", "p90 ms", "min ms", "max ms", "VmRSS at rest (median)"],
        &[vec![
            n.to_string(),
            num(p50),
            num(p90),
            num(times[0]),
            num(times[times.len() - 1]),
            format!("{} MB", mb(rest)),
        ]],
    );
    if is_handler {
        ctx.summary.push(vec![
            "cold start (spawn → first GET / answer), median".into(),
            format!("{} ms (p90 {})", num(p50), num(p90)),
            "< 20 ms".into(),
            pass(p50 < 20.0),
        ]);
        ctx.summary.push(vec![
            "resident at rest after start".into(),
            format!("{} MB", mb(rest)),
            "< 15 MB".into(),
            pass(rest < 15 * 1024),
        ]);
    }
    (p50, rest)
}

/// Azurite's process, whose CPU is shown beside the handler's: on this machine it shares the two cores.
static AZURITE_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

struct Level {
    driven: Driven,
    /// Azurite's CPU ticks over the level (it serves every Table call of the handler).
    azurite_ticks: u64,
    cpu_ticks: u64,
    sys_ticks: u64,
    /// The handler's CPU seconds over the level: perf's task-clock when perf can attach, else clock ticks.
    cpu_s: f64,
    rss_kb: u64,
}

impl Level {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu_s / self.driven.n as f64 * 1000.0
    }

    fn azurite_per_1000(&self) -> f64 {
        self.azurite_ticks as f64 / clk_tck() / self.driven.n as f64 * 1000.0
    }
}

/// `n` requests at `concurrency`, with the handler's CPU (user and sys) and resident memory around them.
async fn measure<F, Fut>(pid: u32, n: usize, concurrency: usize, request: F) -> Level
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let clock = PerfStat::cpu_clock(pid);
    let azurite_ticks = || AZURITE_PID.get().map_or(0, |&p| e2e_support::proc::cpu_ticks(p));
    let a0 = azurite_ticks();
    let (u0, s0) = cpu_split(pid);
    let driven = drive(n, concurrency, request).await;
    let (u1, s1) = cpu_split(pid);
    let azurite_ticks = azurite_ticks() - a0;
    let cpu_ticks = u1 + s1 - u0 - s0;
    let task_clock_ms = clock.map(|c| c.stop().task_clock_ms).filter(|ms| *ms > 0.0);
    let cpu_s = task_clock_ms.map_or(cpu_ticks as f64 / clk_tck(), |ms| ms / 1000.0);
    Level { driven, azurite_ticks, cpu_ticks, sys_ticks: s1 - s0, cpu_s, rss_kb: status_kb(pid, "VmRSS") }
}

/// An extra, unmeasured run of `n` requests with 16 senders under `perf stat`: kernel crossings per request.
async fn kernel_crossings<F, Fut>(pid: u32, n: usize, request: F) -> Option<Counted>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let stat = PerfStat::start(pid)?;
    let d = drive(n, 16, request).await;
    let c = stat.stop();
    let per = |v: f64| v / d.n as f64;
    (c.syscalls > 0.0).then(|| Counted {
        syscalls: per(c.syscalls),
        context_switches: per(c.context_switches),
        page_faults: per(c.page_faults),
        task_clock_ms: per(c.task_clock_ms),
    })
}

fn crossings(c: Option<Counted>) -> String {
    c.map_or("n/a".into(), |c| format!("{} / {} / {}", num(c.syscalls), num(c.context_switches), num(c.page_faults)))
}

struct PathRun {
    levels: Vec<Level>,
    /// Syscalls, context switches and page faults per event (perf stat over an extra run with 16 senders).
    counted: Option<Counted>,
    rest_kb: u64,
    after_kb: u64,
    hwm_kb: u64,
    tokens: usize,
    halo_api: usize,
    events: usize,
}

/// The request for event `g` of a path.
fn request_for(kind: Kind, tag: &str, g: usize, pool: &[Vec<u8>], test_body: &[u8]) -> (String, Vec<u8>) {
    match kind {
        Kind::New => {
            let body = typical_event(&format!("{tag}-inc-{g}"), g as i64 + 1);
            (format!("{tag}-evt-{g}"), serde_json::to_vec(&body).unwrap())
        }
        Kind::Duplicate => (format!("{tag}-pool-evt-{}", g % pool.len()), pool[g % pool.len()].clone()),
        Kind::Note => (format!("{tag}-note-evt-{g}"), later_event(&pool[g % pool.len()], g)),
        Kind::Test => (format!("{tag}-test-evt-{g}"), test_body.to_vec()),
    }
}

async fn send_kind(target: &Target, kind: Kind, event_id: String, body: Vec<u8>) -> Result<(), String> {
    // Test deliveries carry only the body flag (the route then parses the body to find it: the costlier case).
    let answer = target.cf(&event_id, &body, false).await?;
    expect_status(&answer, kind.answer())
}

/// Creates the pool's incidents (their first event ids are `{tag}-pool-evt-{k}`).
async fn seed_pool(target: &Target, tag: &str) -> Vec<Vec<u8>> {
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|k| serde_json::to_vec(&typical_event(&format!("{tag}-pool-{k}"), 90_000 + k as i64)).unwrap())
        .collect();
    let seeded = drive(POOL, 8, |k| send_kind(target, Kind::New, format!("{tag}-pool-evt-{k}"), pool[k].clone())).await;
    assert_eq!(seeded.failures, 0, "seeding failed: {:?}", seeded.first_failure);
    pool
}

/// One cf-webhook path in a fresh handler process: warm-up, then `n` events at each concurrency level.
async fn run_path(ctx: &Ctx, exe: &Path, kind: Kind, n: usize, levels: &[usize]) -> PathRun {
    let mut p = Proc::spawn(exe, &ctx.env());
    p.wait_ready(READY_TIMEOUT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest_kb = p.rss_kb();
    let tokens0 = ctx.halo.token_requests();
    let target = Target::new(&p.url("/api"), None);
    let tag = unique(kind.slug());
    let test_body = serde_json::to_vec(&test_event()).unwrap();
    let pool = seed_pool(&target, &tag).await;
    // Warm-up of the path itself (connection pools, allocator).
    let warm = drive(20, 4, |i| {
        let (id, body) = request_for(kind, &tag, WARM_OFFSET + i, &pool, &test_body);
        send_kind(&target, kind, id, body)
    })
    .await;
    assert_eq!(warm.failures, 0, "{}: warm-up failed: {:?}", kind.name(), warm.first_failure);
    let halo0 = ctx.halo.count("*", "/api/");
    let mut out = Vec::new();
    for (li, &c) in levels.iter().enumerate() {
        let perf = match (&ctx.plan.perf_dir, c) {
            // The packaged build's profiles get their own names rather than overwriting the measured build's.
            (Some(dir), 16) => {
                let build = if exe == ctx.exe.as_path() { "" } else { "musl-" };
                Some(PerfRecording::start(p.pid, &dir.join(format!("{build}{}.data", kind.slug()))))
            }
            _ => None,
        };
        let level = measure(p.pid, n, c, |i| {
            let (id, body) = request_for(kind, &tag, li * n + i, &pool, &test_body);
            send_kind(&target, kind, id, body)
        })
        .await;
        if let Some(perf) = perf {
            perf.stop();
        }
        out.push(level);
    }
    let halo_api = ctx.halo.count("*", "/api/") - halo0;
    let measured = n * levels.len();
    // An extra, unmeasured run with `perf stat` attached: what each event costs in kernel crossings.
    let counted = kernel_crossings(p.pid, n.min(1000), |i| {
        let (id, body) = request_for(kind, &tag, measured + i, &pool, &test_body);
        send_kind(&target, kind, id, body)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    PathRun {
        levels: out,
        rest_kb,
        after_kb: p.rss_kb(),
        hwm_kb: p.hwm_kb(),
        tokens: ctx.halo.token_requests() - tokens0,
        halo_api,
        events: POOL + 20 + measured + counted.map_or(0, |_| n.min(1000)),
        counted,
    }
}

fn level_rows(label: &str, run: &PathRun) -> Vec<Vec<String>> {
    run.levels.iter().map(|l| level_row(label, l)).collect()
}

fn level_row(label: &str, l: &Level) -> Vec<String> {
    let d = &l.driven;
    vec![
        label.to_string(),
        d.concurrency.to_string(),
        d.n.to_string(),
        num(d.rps()),
        num(d.p(0.5)),
        num(d.p(0.99)),
        format!(
            "{} ({} ticks, {}% sys)",
            num(l.cpu_per_1000()),
            l.cpu_ticks,
            (l.sys_ticks * 100).checked_div(l.cpu_ticks).unwrap_or(0)
        ),
        format!("{} ({} ticks)", num(l.azurite_per_1000()), l.azurite_ticks),
        mb(l.rss_kb),
        if d.failures == 0 {
            "0".into()
        } else {
            format!("{} ({})", d.failures, d.first_failure.clone().unwrap_or_default())
        },
    ]
}

const LEVEL_HEADERS: [&str; 10] = [
    "Path",
    "Senders",
    "Events",
    "Events/s",
    "p50 ms",
    "p99 ms",
    "CPU s / 1,000 events",
    "Azurite CPU s / 1,000",
    "VmRSS after MB",
    "Failures",
];

async fn outbound(ctx: &mut Ctx) {
    let exe = ctx.exe.clone();
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    let mut worst_hwm = 0;
    for kind in [Kind::New, Kind::Duplicate, Kind::Test, Kind::Note] {
        let n = match kind {
            Kind::New => ctx.plan.new_n,
            Kind::Duplicate => ctx.plan.dup_n,
            Kind::Test => ctx.plan.test_n,
            Kind::Note => ctx.plan.note_n,
        };
        let run = run_path(ctx, &exe, kind, n, &LEVELS).await;
        rows.extend(level_rows(kind.name(), &run));
        let total_s: f64 = run.levels.iter().map(|l| l.cpu_s).sum();
        let total_n: usize = run.levels.iter().map(|l| l.driven.n).sum();
        let cpu = total_s / total_n as f64 * 1000.0;
        worst_hwm = worst_hwm.max(run.hwm_kb);
        memory.push(vec![
            kind.name().to_string(),
            mb(run.rest_kb),
            mb(run.after_kb),
            mb(run.hwm_kb),
            num(cpu),
            format!("{} for {} events", run.tokens, run.events),
            num(run.halo_api as f64 / total_n as f64),
            crossings(run.counted),
        ]);
        ctx.summary.push(vec![
            format!("CPU per 1,000 events: {}", kind.name()),
            format!("{} s", num(cpu)),
            "≤ 0.2 s".into(),
            pass(cpu <= 0.2),
        ]);
        if kind == Kind::New {
            ctx.summary.push(vec![
                "Halo tokens for the new-incident process".into(),
                format!("{} for {} events", run.tokens, run.events),
                "1 per hour".into(),
                pass(run.tokens == 1),
            ]);
        }
    }
    ctx.report.section("cf-webhook paths, handler spawned directly (no host in between)");
    ctx.report.line("Each path runs in a fresh handler process: start, 64 incidents created, 20 warm-up events, then the events at 1, 16 and 128 concurrent senders. CPU = the handler process's CPU time (user + kernel, all threads) over that level: perf task-clock, with the /proc clock ticks beside it as a cross-check. Each handler has a table of its own.");
    ctx.report.line("");
    ctx.report.table(&LEVEL_HEADERS, &rows);
    ctx.report.table(
        &[
            "Path",
            "VmRSS at rest MB",
            "VmRSS after traffic MB",
            "VmHWM MB (peak, incl. 128 senders)",
            "CPU s / 1,000 (all levels)",
            "Halo token calls",
            "Halo API calls / event (levels)",
            "syscalls / context switches / page faults per event",
        ],
        &memory,
    );
    ctx.summary.push(vec![
        "peak resident (VmHWM) with 128 senders, worst path".into(),
        format!("{} MB", mb(worst_hwm)),
        "< 30 MB".into(),
        pass(worst_hwm < 30 * 1024),
    ]);
}

/// Creates a ticket through the bridge and gives it `actions` human notes; returns its id.
async fn ticket_with_actions(ctx: &Ctx, target: &Target, tag: &str, k: usize, actions: usize) -> i64 {
    let body = serde_json::to_vec(&typical_event(&format!("{tag}-{k}"), 70_000 + k as i64)).unwrap();
    let answer = target.cf(&format!("{tag}-evt-{k}"), &body, false).await.expect("ticket created");
    let ticket = answer["ticketId"].as_i64().expect("ticketId");
    for i in 0..actions {
        ctx.halo.add_action(ticket, NewAction::human("Sam Agent", 2, &typical_note_html(i), false));
    }
    ticket
}

async fn halo_webhook(ctx: &mut Ctx) {
    let mut p = Proc::spawn(&ctx.exe, &ctx.env());
    p.wait_ready(READY_TIMEOUT);
    let target = Target::new(&p.url("/api"), None);
    let tag = unique("halo");
    let mut rows = Vec::new();
    let mut idle_rows = Vec::new();
    let mut worst_cpu: f64 = 0.0;
    for (size, reps, idle_n) in ctx.plan.halo {
        let mut tickets = Vec::new();
        for k in 0..reps {
            tickets.push(ticket_with_actions(ctx, &target, &format!("{tag}-{size}"), k, size).await);
        }
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let t0 = p.cpu_ticks();
        for &ticket in &tickets {
            let t = Instant::now();
            let a = target.halo(ticket).await.expect("first halo webhook");
            first.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(a["actionsForwarded"].as_u64(), Some(size as u64), "{a}");
        }
        let first_ticks = p.cpu_ticks() - t0;
        for &ticket in &tickets {
            let t = Instant::now();
            let a = target.halo(ticket).await.expect("second halo webhook");
            second.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(a["actionsForwarded"].as_u64(), Some(0), "{a}");
        }
        let idle_request = |i: usize| {
            let target = &target;
            let ticket = tickets[i % tickets.len()];
            async move {
                let a = target.halo(ticket).await?;
                expect_status(&a, "processed")
            }
        };
        let idle = measure(p.pid, idle_n, 16, idle_request).await;
        let counted = kernel_crossings(p.pid, idle_n.min(500), idle_request).await;
        let forwarded = size * reps;
        let cpu_first = first_ticks as f64 / clk_tck();
        rows.push(vec![
            size.to_string(),
            reps.to_string(),
            num(median(&first)),
            num(median(&first) / size as f64),
            format!("{} ({} ticks)", num(cpu_first / forwarded as f64 * 1000.0), first_ticks),
            num(median(&second)),
        ]);
        worst_cpu = worst_cpu.max(idle.cpu_per_1000());
        let mut row = level_row(&size.to_string(), &idle);
        row.push(crossings(counted));
        idle_rows.push(row);
    }
    ctx.report.section("halo-webhook: a ticket with 1, 50 and 500 new public actions");
    ctx.report.line("First webhook: forwards every action (one ContraForce comment each, in order). Second webhook: nothing new. Sequential, one sender.");
    ctx.report.line("");
    ctx.report.table(
        &[
            "Actions",
            "Tickets",
            "1st webhook median ms",
            "ms per forwarded action",
            "CPU s / 1,000 forwarded actions",
            "2nd webhook (nothing new) median ms",
        ],
        &rows,
    );
    ctx.report.line("Repeated webhooks with nothing new (the common case: every ticket update), 16 senders:");
    ctx.report.line("");
    let mut headers = LEVEL_HEADERS.to_vec();
    headers[0] = "Actions on ticket";
    headers[2] = "Webhooks";
    headers[6] = "CPU s / 1,000 webhooks";
    headers.push("syscalls / context switches / page faults per webhook");
    ctx.report.table(&headers, &idle_rows);
    ctx.summary.push(vec![
        "CPU per 1,000 halo-webhooks with nothing new, worst size".into(),
        format!("{} s", num(worst_cpu)),
        "≤ 0.2 s".into(),
        pass(worst_cpu <= 0.2),
    ]);
    ctx.report.line(&format!("Handler VmHWM after this section: {} MB", mb(p.hwm_kb())));
}

/// Upstream calls observed between two points.
struct Snap {
    table: Counts,
    tokens: usize,
    halo_post_tickets: usize,
    halo_post_actions: usize,
    halo_get: usize,
    halo_all: usize,
    cf_all: usize,
}

fn snap(ctx: &Ctx, proxy: &CountingProxy) -> Snap {
    Snap {
        table: proxy.counts(),
        tokens: ctx.halo.token_requests(),
        halo_post_tickets: ctx.halo.count("POST", "/api/Tickets"),
        halo_post_actions: ctx.halo.count("POST", "/api/Actions"),
        halo_get: ctx.halo.count("GET", "/api/"),
        halo_all: ctx.halo.count("*", "/api/"),
        cf_all: ctx.cf.count("*", "/workspaces"),
    }
}

fn calls_row(what: &str, n: usize, a: &Snap, b: &Snap) -> Vec<String> {
    let per = |x: usize| num(x as f64 / n as f64);
    let (reads, writes) = reads_writes(&a.table, &b.table);
    vec![
        what.to_string(),
        n.to_string(),
        format!("{} in total", b.tokens - a.tokens),
        per(b.halo_all - a.halo_all),
        format!(
            "{} / {} / {}",
            per(b.halo_post_tickets - a.halo_post_tickets),
            per(b.halo_post_actions - a.halo_post_actions),
            per(b.halo_get - a.halo_get)
        ),
        per(b.cf_all - a.cf_all),
        num(reads as f64 / n as f64),
        num(writes as f64 / n as f64),
    ]
}

async fn calls(ctx: &mut Ctx) {
    let proxy = CountingProxy::start(format!("http://127.0.0.1:{}", ctx.azurite.port())).await;
    let env = ctx.env_with_storage(proxy.connection_string(&ctx.azurite.queue_endpoint()));
    let mut p = Proc::spawn(&ctx.exe, &env);
    p.wait_ready(READY_TIMEOUT);
    let target = Target::new(&p.url("/api"), None);
    let tag = unique("calls");
    let k = ctx.plan.calls_n;
    let mut rows = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..k)
        .map(|i| serde_json::to_vec(&typical_event(&format!("{tag}-inc-{i}"), 50_000 + i as i64)).unwrap())
        .collect();
    let test_body = serde_json::to_vec(&test_event()).unwrap();

    let a = snap(ctx, &proxy);
    let first = serde_json::to_vec(&typical_event(&format!("{tag}-first"), 49_999)).unwrap();
    send_kind(&target, Kind::New, format!("{tag}-first-evt"), first).await.expect("first event");
    let b = snap(ctx, &proxy);
    rows.push(calls_row("first event after start (new incident)", 1, &a, &b));

    let mut measure = |what: &str, n: usize, a: &Snap, b: &Snap| rows.push(calls_row(what, n, a, b));
    let a = snap(ctx, &proxy);
    for (i, body) in bodies.iter().enumerate() {
        send_kind(&target, Kind::New, format!("{tag}-evt-{i}"), body.clone()).await.expect("new incident");
    }
    let b = snap(ctx, &proxy);
    measure(Kind::New.name(), k, &a, &b);
    let a = snap(ctx, &proxy);
    for (i, body) in bodies.iter().enumerate() {
        send_kind(&target, Kind::Duplicate, format!("{tag}-evt-{i}"), body.clone()).await.expect("duplicate");
    }
    let b = snap(ctx, &proxy);
    measure(Kind::Duplicate.name(), k, &a, &b);
    let a = snap(ctx, &proxy);
    for (i, body) in bodies.iter().enumerate() {
        send_kind(&target, Kind::Note, format!("{tag}-later-evt-{i}"), later_event(body, i))
            .await
            .expect("later event");
    }
    let b = snap(ctx, &proxy);
    measure(Kind::Note.name(), k, &a, &b);
    let a = snap(ctx, &proxy);
    for i in 0..k {
        send_kind(&target, Kind::Test, format!("{tag}-test-{i}"), test_body.clone()).await.expect("test");
    }
    let b = snap(ctx, &proxy);
    measure(Kind::Test.name(), k, &a, &b);

    // halo-webhook: tickets made (and their 50 notes added) outside the counted windows.
    let reps = 5;
    let mut tickets = Vec::new();
    for r in 0..reps {
        tickets.push(ticket_with_actions(ctx, &target, &format!("{tag}-halo"), r, 50).await);
    }
    let a = snap(ctx, &proxy);
    for &t in &tickets {
        let answer = target.halo(t).await.expect("halo webhook");
        assert_eq!(answer["actionsForwarded"].as_u64(), Some(50), "{answer}");
    }
    let b = snap(ctx, &proxy);
    rows.push(calls_row("halo-webhook forwarding 50 actions (per webhook)", reps, &a, &b));
    rows.push(calls_row("   the same, per forwarded action", reps * 50, &a, &b));
    let a = snap(ctx, &proxy);
    for &t in &tickets {
        target.halo(t).await.expect("halo webhook");
    }
    let b = snap(ctx, &proxy);
    rows.push(calls_row("halo-webhook with nothing new (50 actions on the ticket)", reps, &a, &b));
    let unlinked: Vec<i64> = (0..reps)
        .map(|r| {
            ctx.halo.create_ticket_direct(NewTicket { summary: format!("{tag} unlinked {r}"), ..Default::default() })
        })
        .collect();
    let a = snap(ctx, &proxy);
    for &t in &unlinked {
        let answer = target.halo(t).await.expect("halo webhook");
        assert_eq!(answer["status"], "ignored", "{answer}");
    }
    let b = snap(ctx, &proxy);
    rows.push(calls_row("halo-webhook for a ticket the bridge did not create or import", reps, &a, &b));

    // A create Halo answers 503 (surely not processed): the delivery is recorded and queued, answered `queued`.
    let queued: Vec<Vec<u8>> = (0..reps)
        .map(|i| serde_json::to_vec(&typical_event(&format!("{tag}-queued-{i}"), 60_000 + i as i64)).unwrap())
        .collect();
    ctx.halo.faults().push(Rule::always("POST", "/api/Tickets", Fault::status(503)));
    let a = snap(ctx, &proxy);
    for (i, body) in queued.iter().enumerate() {
        let answer = target.cf(&format!("{tag}-queued-evt-{i}"), body, false).await.expect("queued");
        assert_eq!(answer["status"], "queued", "{answer}");
    }
    let b = snap(ctx, &proxy);
    ctx.halo.faults().clear();
    rows.push(calls_row("new incident while Halo answers 503 (queued)", reps, &a, &b));

    ctx.report.section("Upstream calls per event (sequential; Halo/ContraForce counted by the fakes, Table Storage by a counting proxy)");
    ctx.report.table(
        &[
            "Event",
            "Events",
            "Halo token calls",
            "Halo API calls / event",
            "POST Tickets / POST Actions / GET",
            "ContraForce calls / event",
            "Table reads (GET) / event",
            "Table writes / event",
        ],
        &rows,
    );
    let dup = rows.iter().find(|r| r[0] == Kind::Duplicate.name()).cloned().unwrap_or_default();
    let new = rows.iter().find(|r| r[0] == Kind::New.name()).cloned().unwrap_or_default();
    if dup.len() == 8 && new.len() == 8 {
        let dup_reads: f64 = dup[6].parse().unwrap_or(f64::NAN);
        let dup_halo: f64 = dup[3].parse().unwrap_or(f64::NAN);
        let new_halo: f64 = new[3].parse().unwrap_or(f64::NAN);
        ctx.summary.push(vec![
            "duplicate: Table reads / Halo calls per event".into(),
            format!("{} / {}", dup[6], dup[3]),
            "≤ 1 / 0".into(),
            pass(dup_reads <= 1.0 && dup_halo == 0.0),
        ]);
        ctx.summary.push(vec![
            "new incident: Halo API calls per event".into(),
            new[3].clone(),
            "1".into(),
            pass(new_halo == 1.0),
        ]);
    }
    ctx.report.line(&format!("Handler VmHWM after this section: {} MB", mb(p.hwm_kb())));
}

async fn through_host(ctx: &mut Ctx) {
    let mut options = HostOptions::new(common::repo_root()).executable(&ctx.exe);
    options.env = ctx.env();
    let host = StandInHost::start(options).await.expect("the handler starts under the stand-in host");
    let pid = host.handler_pid().expect("handler running");
    let target = Target::new(&format!("{}/api", host.url()), Some(host.function_key().to_string()));
    let tag = unique("host");
    let test_body = serde_json::to_vec(&test_event()).unwrap();
    let pool = seed_pool(&target, &tag).await;
    let mut rows = Vec::new();
    for kind in [Kind::New, Kind::Test] {
        let n = ctx.plan.host_n;
        let level = measure(pid, n, 16, |i| {
            let (id, body) = request_for(kind, &tag, i, &pool, &test_body);
            send_kind(&target, kind, id, body)
        })
        .await;
        rows.push(level_row(kind.name(), &level));
    }
    ctx.report
        .section("Through the stand-in Functions host (function keys, request rebuilt and forwarded), 16 senders");
    ctx.report.line(
        "Latency includes the stand-in host's proxy, which runs inside the bench process; CPU is the handler's own.",
    );
    ctx.report.line("");
    ctx.report.table(&LEVEL_HEADERS, &rows);
    drop(host);
}

async fn baseline_server(ctx: &mut Ctx) {
    let exe = std::env::current_exe().expect("this bench's path");
    let env = vec![(baseline::ENV.to_string(), "1".to_string())];
    let (start_ms, rest_kb) = cold_start(ctx, "baseline (bare warp: HMAC + JSON parse)", &exe, &env, false);
    let mut p = Proc::spawn(&exe, &env);
    p.wait_ready(READY_TIMEOUT);
    let target = Target::new(&p.url("/api"), None);
    let test_body = serde_json::to_vec(&test_event()).unwrap();
    let n = ctx.plan.test_n;
    let warm = drive(100, 4, |i| send_kind(&target, Kind::Test, format!("warm-{i}"), test_body.clone())).await;
    assert_eq!(warm.failures, 0, "{:?}", warm.first_failure);
    let mut rows = Vec::new();
    for c in LEVELS {
        let level =
            measure(p.pid, n, c, |i| send_kind(&target, Kind::Test, format!("b-{c}-{i}"), test_body.clone())).await;
        rows.push(level_row("baseline", &level));
    }
    let counted =
        kernel_crossings(p.pid, n.min(1000), |i| send_kind(&target, Kind::Test, format!("k-{i}"), test_body.clone()))
            .await;
    ctx.report.section("Baseline load: bare warp server, signed 2 KB event → verify + parse → 200");
    ctx.report.table(&LEVEL_HEADERS, &rows);
    ctx.report.line(&format!(
        "Baseline: cold start {} ms, VmRSS at rest {} MB, VmHWM {} MB; syscalls / context switches / page faults per \
         request: {}.",
        num(start_ms),
        mb(rest_kb),
        mb(p.hwm_kb()),
        crossings(counted)
    ));
}

/// The packaged (musl, static) build, if `scripts/package` has built it: start, memory and two paths' CPU.
async fn musl(ctx: &mut Ctx) {
    let exe = common::target_dir().join("x86_64-unknown-linux-musl/release/handler");
    if !exe.is_file() {
        ctx.report.section("Packaged musl build");
        ctx.report.line("the musl build (<target>/x86_64-unknown-linux-musl/release/handler) is absent (run scripts/package): skipped.");
        return;
    }
    let env = ctx.env();
    cold_start(ctx, "handler (musl, as packaged)", &exe, &env, false);
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for (kind, n) in [(Kind::New, ctx.plan.new_n), (Kind::Duplicate, ctx.plan.dup_n), (Kind::Test, ctx.plan.test_n)] {
        let run = run_path(ctx, &exe, kind, n, &[16]).await;
        rows.extend(level_rows(kind.name(), &run));
        memory.push(vec![kind.name().to_string(), mb(run.rest_kb), mb(run.after_kb), mb(run.hwm_kb)]);
    }
    ctx.report.section("Packaged musl build, 16 senders (the binary that ships in dist/app.zip)");
    ctx.report.table(&LEVEL_HEADERS, &rows);
    ctx.report.table(&["Path", "VmRSS at rest MB", "VmRSS after MB", "VmHWM MB"], &memory);
}

/// Runs `callgrind_control <flag> <pid>` when the handler runs under callgrind (no-op otherwise).
fn callgrind_control(flag: &str, pid: u32) {
    if std::env::var("BENCH_WRAPPER").is_ok_and(|w| w.contains("callgrind")) {
        let _ = std::process::Command::new("callgrind_control")
            .arg(flag)
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// One fresh handler per path, `BENCH_PROFILE_N` events one at a time: for `BENCH_WRAPPER` profilers.
async fn profile(ctx: &mut Ctx) {
    let n: usize = std::env::var("BENCH_PROFILE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let slow = Duration::from_secs(120);
    ctx.report.section(&format!("Profile run: {n} events per path, one at a time"));
    for kind in [Kind::New, Kind::Duplicate, Kind::Test, Kind::Note] {
        let mut p = Proc::spawn(&ctx.exe, &ctx.env());
        p.wait_ready(slow);
        let target = Target::new(&p.url("/api"), None);
        let tag = unique(&format!("profile-{}", kind.slug()));
        let test_body = serde_json::to_vec(&test_event()).unwrap();
        let pool = seed_pool(&target, &tag).await;
        let warm = drive(5, 1, |i| {
            let (id, body) = request_for(kind, &tag, WARM_OFFSET + i, &pool, &test_body);
            send_kind(&target, kind, id, body)
        })
        .await;
        assert_eq!(warm.failures, 0, "{:?}", warm.first_failure);
        callgrind_control("-z", p.pid);
        let level = measure(p.pid, n, 1, |i| {
            let (id, body) = request_for(kind, &tag, i, &pool, &test_body);
            send_kind(&target, kind, id, body)
        })
        .await;
        callgrind_control("-d", p.pid);
        let line = format!(
            "{}: handler pid {}, {} events, {} failures, CPU {} s / 1,000",
            kind.name(),
            p.pid,
            n,
            level.driven.failures,
            num(level.cpu_per_1000())
        );
        ctx.report.line(&line);
    }
    // The halo-webhook with nothing new (50 actions on the ticket).
    let mut p = Proc::spawn(&ctx.exe, &ctx.env());
    p.wait_ready(slow);
    let target = Target::new(&p.url("/api"), None);
    let ticket = ticket_with_actions(ctx, &target, &unique("profile-halo"), 0, 50).await;
    target.halo(ticket).await.expect("first halo webhook");
    callgrind_control("-z", p.pid);
    let level = measure(p.pid, n, 1, |_| {
        let target = &target;
        async move { expect_status(&target.halo(ticket).await?, "processed") }
    })
    .await;
    callgrind_control("-d", p.pid);
    let line = format!(
        "halo-webhook, nothing new (50 actions): handler pid {}, {} webhooks, {} failures, CPU {} s / 1,000",
        p.pid,
        n,
        level.driven.failures,
        num(level.cpu_per_1000())
    );
    ctx.report.line(&line);
}
