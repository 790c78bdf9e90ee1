//! The README's first command from a clean checkout: `scripts/run-local` builds and starts everything, the two demo
//! commands go through the real bridge (sandbox Halo → ticket; agent note and close → ContraForce comment and close),
//! and a Ctrl-C stops every process it started.
//!
//! The checkout is a copy of the repository's files (`git ls-files --cached --others --exclude-standard`, with
//! their modification times, so cargo reuses this workspace's build in `CARGO_TARGET_DIR`) in a temporary directory.

use serde_json::Value;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The bridge may have to be built first (a cold build on a small machine takes minutes).
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const NOTE_TEXT: &str = "Called the user: travel confirmed, closing.";
const REFERENCE: &str = "cf|sentinel|sentinel-incident-id-or-guid";
const INCIDENT_ID: &str = "sentinel-incident-id-or-guid";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// This workspace's target directory (`CARGO_TARGET_DIR` when set), absolute.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// Copies what a clone would hold (tracked files plus untracked files that are not ignored), keeping modes, symlinks
/// and modification times.
fn copy_checkout(from: &Path, to: &Path) -> usize {
    let output = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(from)
        .output()
        .expect("git runs (the test copies the repository's files with `git ls-files`)");
    assert!(output.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut copied = 0;
    for name in output.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let relative = Path::new(std::str::from_utf8(name).expect("UTF-8 file names"));
        let source = from.join(relative);
        let Ok(meta) = fs::symlink_metadata(&source) else { continue }; // tracked but deleted in the work tree
        let dest = to.join(relative);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source).unwrap(), &dest).unwrap();
        } else if meta.is_file() {
            fs::copy(&source, &dest).unwrap();
            let file = fs::OpenOptions::new().write(true).open(&dest).unwrap();
            file.set_modified(meta.modified().unwrap()).unwrap();
        } else {
            continue;
        }
        copied += 1;
    }
    copied
}

fn distinct_free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0u16; N];
    let mut i = 0;
    while i < N {
        let p = sandbox::free_port();
        if !ports[..i].contains(&p) {
            ports[i] = p;
            i += 1;
        }
    }
    ports
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Live processes of a process group (from /proc; zombies count as gone).
fn group_members(pgid: u32) -> Vec<String> {
    let mut members = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return members };
    for entry in entries.flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses, so split after the last ')'.
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            members.push(format!("{} {}", entry.file_name().to_string_lossy(), cmdline.trim()));
        }
    }
    members
}

/// `scripts/run-local` in its own process group. Dropping it kills the whole group (also on a failed assertion) and
/// prints what run-local and its children logged when the test is failing.
struct RunLocal {
    child: Child,
    pgid: u32,
    dir: PathBuf,
}

impl RunLocal {
    fn output(&self) -> String {
        let mut text = String::new();
        let _ = fs::File::open(self.dir.join("run-local.out")).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// run-local's output and the end of every child's log, for failure messages.
    fn context(&self) -> String {
        let mut text = format!("--- run-local output ---\n{}", self.output());
        for log in ["handler", "sandbox", "azurite", "azurite-queue"] {
            let path = self.dir.join(".local/logs").join(format!("{log}.log"));
            if let Ok(content) = fs::read_to_string(&path) {
                let lines: Vec<&str> = content.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                text.push_str(&format!("\n--- .local/logs/{log}.log (end) ---\n{tail}"));
            }
        }
        text
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on run-local")
    }
}

impl Drop for RunLocal {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.context());
        }
        signal_group(self.pgid, "KILL");
        let _ = self.child.wait();
    }
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::Client::builder().no_proxy().build().unwrap().get(url).send().await;
    let response = response.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

struct Demo {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn run_demo(dir: &Path, script: &str, args: &[&str], env: &[(&str, String)]) -> Demo {
    let mut command = tokio::process::Command::new(dir.join("scripts").join(script));
    command.args(args).current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| is_setting(n) || is_set_by_cargo_for_tests(n)) {
            command.env_remove(&name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(DEMO_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {DEMO_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{script} could not run: {e}"));
    Demo {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Variables cargo sets for a test process. Build scripts track some of them (ring's `rerun-if-env-changed` names
/// CARGO_MANIFEST_DIR and CARGO_PKG_NAME), so the nested `cargo build` must not see them: it would rebuild those
/// dependencies, and the next ordinary build would rebuild them back.
fn is_set_by_cargo_for_tests(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// Settings from the developer's environment would switch run-local away from the sandbox: none reach it.
fn is_setting(name: &str) -> bool {
    const PREFIXES: [&str; 8] =
        ["CF_", "HALO_", "AzureWebJobs", "StateStorage", "KEY_VAULT_", "SANDBOX_", "FUNCTIONS_", "BRIDGE_"];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || [
            "STATE_TABLE_NAME",
            "AZURITE_PORT",
            "AZURITE_BIN",
            "AZURITE_QUEUE_PORT",
            "AZURITE_QUEUE_BIN",
            "LOG_LEVEL",
            "AZURE_CLIENT_ID",
        ]
        .contains(&name)
}

/// How run-local's signals are set up when it starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// As from a terminal: SIGINT at its default, whatever the test runner inherited.
    Terminal,
    /// As a background (`&`) or `nohup` launch: SIGINT ignored, inherited by everything it starts.
    SigintIgnored,
}

/// The ports one run-local uses: bridge, Azurite's tables and queues, sandbox Halo, sandbox ContraForce.
struct Ports {
    bridge: u16,
    azurite: u16,
    azurite_queue: u16,
    halo: u16,
    cf: u16,
}

impl Ports {
    fn all(&self) -> [u16; 5] {
        [self.bridge, self.azurite, self.azurite_queue, self.halo, self.cf]
    }
}

/// Starts `scripts/run-local` of the checkout in `dir`, in its own process group, and waits until the bridge
/// answers and the banner is printed.
async fn launch(dir: &Path, how: Launch) -> (RunLocal, Ports) {
    let [bridge, azurite, azurite_queue, halo, cf] = distinct_free_ports::<5>();
    let ports = Ports { bridge, azurite, azurite_queue, halo, cf };
    let signals = match how {
        Launch::Terminal => "--default-signal=INT",
        Launch::SigintIgnored => "--ignore-signal=INT",
    };
    let mut command = Command::new("env");
    command.arg(signals).arg(dir.join("scripts/run-local")).current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| is_setting(n) || is_set_by_cargo_for_tests(n)) {
            command.env_remove(&name);
        }
    }
    command
        .env("BRIDGE_PORT", bridge.to_string())
        .env("AZURITE_PORT", azurite.to_string())
        .env("AZURITE_QUEUE_PORT", azurite_queue.to_string())
        .env("SANDBOX_HALO_PORT", halo.to_string())
        .env("SANDBOX_CF_PORT", cf.to_string())
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never");
    let azurite_bin = repo_root().join("node_modules/.bin/azurite-table");
    if azurite_bin.is_file() {
        command.env("AZURITE_BIN", &azurite_bin);
    }
    let out = fs::File::create(dir.join("run-local.out")).unwrap();
    command.stdout(out.try_clone().unwrap()).stderr(out);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().expect("scripts/run-local starts");
    let pgid = child.id();
    let mut run = RunLocal { child, pgid, dir: dir.to_path_buf() };

    let bridge_url = format!("http://127.0.0.1:{bridge}");
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = run.exited() {
            panic!("scripts/run-local exited ({status}) before the bridge was ready");
        }
        if let Ok(r) = http.get(format!("{bridge_url}/")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the bridge did not answer GET / within {READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The banner comes right after the bridge is ready.
    let banner_deadline = Instant::now() + Duration::from_secs(60);
    while !run.output().contains("Press Ctrl-C to stop everything.") {
        assert!(Instant::now() < banner_deadline, "run-local never said it was ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (run, ports)
}

/// Sends `signal` (to the whole group, as a terminal's Ctrl-C does, or to run-local alone, as `kill PID` does) and
/// asserts that run-local ends with status 0 and leaves no process and no listening port behind.
async fn assert_stops(mut run: RunLocal, ports: &Ports, signal: &str, whole_group: bool) {
    let pgid = run.pgid;
    if whole_group {
        signal_group(pgid, signal);
    } else {
        let _ = Command::new("kill").args(["-s", signal, &pgid.to_string()]).status();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = run.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "scripts/run-local did not stop within {STOP_TIMEOUT:?} of SIG{signal}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "run-local ends with status 0 after SIG{signal}, not {status}");
    assert!(run.output().contains("Stopped."), "run-local does not say it stopped");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = group_members(pgid);
        let open: Vec<u16> = ports.all().into_iter().filter(|p| listening(*p)).collect();
        if left.is_empty() && open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after run-local stopped, processes are left {left:?} and ports still listen {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!run.dir.join(".local/run-local.env").exists(), "run-local removes .local/run-local.env when it stops");
}

/// A clean checkout (the tracked files, not `target/` or `node_modules/`) in a temporary directory.
fn clean_checkout() -> (tempfile::TempDir, PathBuf) {
    let checkout = tempfile::Builder::new().prefix("cf-halo-bridge-local-run-").tempdir().unwrap();
    let dir = checkout.path().to_path_buf();
    let copied = copy_checkout(&repo_root(), &dir);
    assert!(dir.join("scripts/run-local").is_file(), "scripts/run-local is not among the {copied} copied files");
    (checkout, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_local_from_a_clean_checkout_runs_both_demos_and_stops_everything_on_ctrl_c() {
    let started = Instant::now();
    let (_checkout, dir) = clean_checkout();
    // 1. It builds, starts everything and the bridge answers its readiness probe.
    let (run, ports) = launch(&dir, Launch::Terminal).await;
    let (azurite_port, halo_port, cf_port) = (ports.azurite, ports.halo, ports.cf);
    let bridge = format!("http://127.0.0.1:{}", ports.bridge);
    let halo = format!("http://127.0.0.1:{halo_port}");
    let cf = format!("http://127.0.0.1:{cf_port}");
    let ready_after = started.elapsed();
    let banner = run.output();
    for expected in [
        format!("{bridge}/api/cf-webhook"),
        format!("{bridge}/api/halo-webhook"),
        format!("{halo}/_sandbox/tickets"),
        format!("{cf}/_sandbox/incidents"),
        format!("http://127.0.0.1:{azurite_port}/devstoreaccount1"),
        format!("http://127.0.0.1:{}/devstoreaccount1", ports.azurite_queue),
        "scripts/demo-incident".to_string(),
        "scripts/demo-halo-note".to_string(),
        "scripts/demo-halo-outage".to_string(),
        "scripts/demo-routing".to_string(),
        format!("{bridge}/api/status"),
        "handler --check".to_string(),
        ".local/logs/".to_string(),
    ] {
        assert!(banner.contains(&expected), "the banner does not mention {expected}");
    }

    // 2. The incident demo: the sample incident, signed, becomes a Halo ticket.
    let demo_env = [("CARGO_TARGET_DIR", target_dir().display().to_string())];
    let demo = run_demo(&dir, "demo-incident", &["--bridge-url", &bridge, "--halo-url", &halo], &demo_env).await;
    assert!(demo.status.success(), "demo-incident failed ({}):\n{}\n{}", demo.status, demo.stdout, demo.stderr);
    let created = demo
        .stdout
        .lines()
        .find(|l| {
            l.starts_with("ContraForce incident #1234 'Impossible travel' → Halo ticket #") && l.contains("created")
        })
        .unwrap_or_else(|| panic!("demo-incident does not say the ticket was created:\n{}", demo.stdout));
    assert!(created.contains("(sandbox Halo)"), "{created}");
    assert!(demo.stdout.contains("[CF #1234] Impossible travel"), "no summary:\n{}", demo.stdout);
    assert!(demo.stdout.contains(REFERENCE), "no reference:\n{}", demo.stdout);

    // 3. The Halo demo: an agent's note and the close reach ContraForce.
    let demo =
        run_demo(&dir, "demo-halo-note", &["--bridge-url", &bridge, "--halo-url", &halo, "--cf-url", &cf], &demo_env)
            .await;
    assert!(demo.status.success(), "demo-halo-note failed ({}):\n{}\n{}", demo.status, demo.stdout, demo.stderr);
    assert!(
        demo.stdout.contains("The bridge: 1 note forwarded, incident closed"),
        "demo-halo-note does not say the note was forwarded and the incident closed:\n{}",
        demo.stdout
    );
    let reached = demo
        .stdout
        .split_once("What reached the sandbox ContraForce")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("demo-halo-note does not say what reached ContraForce:\n{}", demo.stdout));
    assert!(reached.contains(NOTE_TEXT), "the comment is not shown:\n{}", demo.stdout);
    assert!(reached.contains("close      status Closed"), "the close is not shown:\n{}", demo.stdout);

    // 4. A lasting Halo outage: an incident sent meanwhile is queued, and the queue trigger completes it once
    //    Halo is back (host.json's visibilityTimeout is the pause between attempts).
    let outage_args = ["--seconds", "20", "--watch", "150", "--expect", "1", "--halo-url", &halo];
    let outage = run_demo(&dir, "demo-halo-outage", &outage_args, &demo_env);
    let during = async {
        let api = format!("{halo}/api/Tickets/1");
        let give_up = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&api).await.map(|r| r.status().as_u16()).unwrap_or(0) != 503 {
            assert!(Instant::now() < give_up, "the sandbox Halo never went down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        run_demo(&dir, "demo-incident", &["--bridge-url", &bridge, "--halo-url", &halo, "--new-incident"], &demo_env)
            .await
    };
    let (outage, queued) = tokio::join!(outage, during);
    assert!(queued.status.success(), "demo-incident during the outage failed:\n{}\n{}", queued.stdout, queued.stderr);
    assert!(
        queued.stdout.contains("→ queued"),
        "the incident sent during the outage was not queued:\n{}",
        queued.stdout
    );
    assert!(outage.status.success(), "demo-halo-outage failed:\n{}\n{}", outage.stdout, outage.stderr);
    assert!(outage.stdout.contains("after Halo came back"), "no queued ticket arrived:\n{}", outage.stdout);

    // 5. Customer routing: an incident of each sandbox customer lands on its own client (by the map, with its
    //    site; by its name; by default), and a close as a false positive reaches the mapped customer's workspace.
    let routing =
        run_demo(&dir, "demo-routing", &["--bridge-url", &bridge, "--halo-url", &halo, "--cf-url", &cf], &demo_env)
            .await;
    assert!(
        routing.status.success(),
        "demo-routing failed ({}):\n{}\n{}",
        routing.status,
        routing.stdout,
        routing.stderr
    );
    let clients = get_json(&format!("{halo}/_sandbox/clients")).await;
    let client_id = |name: &str| {
        clients.as_array().unwrap().iter().find(|c| c["name"] == name).and_then(|c| c["id"].as_i64()).unwrap()
    };
    let tickets = get_json(&format!("{halo}/_sandbox/tickets")).await;
    let routed: Vec<(Option<i64>, Option<i64>)> = tickets.as_array().unwrap()[tickets.as_array().unwrap().len() - 3..]
        .iter()
        .map(|t| (t["client_id"].as_i64(), t["site_id"].as_i64()))
        .collect();
    let northwind_site = clients.as_array().unwrap().iter().find(|c| c["name"] == "Northwind Traders").unwrap()
        ["sites"][0]["id"]
        .as_i64();
    assert_eq!(
        routed,
        [
            (Some(client_id("Northwind Traders")), northwind_site),
            (Some(client_id("Fabrikam Inc")), None),
            (Some(1), None)
        ],
        "the three customers' tickets, by map (with its site), by name and by default:\n{}",
        routing.stdout
    );
    let landed = routing.stdout.lines().filter(|l| l.trim_start().starts_with("✓ landed on Halo client")).count();
    assert_eq!(landed, 3, "the demo says where each incident landed:\n{}", routing.stdout);
    for why in ["HALO_CLIENT_MAP names its account", "one Halo client has its name", "the default (triage) client"] {
        assert!(routing.stdout.contains(why), "the demo does not say {why:?}:\n{}", routing.stdout);
    }
    let incidents = get_json(&format!("{cf}/_sandbox/incidents")).await;
    let fp: Vec<Value> = incidents
        .as_object()
        .unwrap()
        .values()
        .flat_map(|i| i["status_changes"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["classification"] == "FalsePositive")
        .collect();
    assert_eq!(fp.len(), 1, "one close as FalsePositive: {incidents:#}");
    assert_eq!(fp[0]["classificationReason"], "IncorrectAlertLogic");
    assert_eq!(fp[0]["workspace_id"], sandbox::customers::NORTHWIND.workspace_id.unwrap(), "in Northwind's workspace");
    let comment = fp[0]["comment"].as_str().unwrap_or_default();
    assert!(
        comment.contains("Resolved - False Positive") && comment.contains("Closing note: Checked with Northwind"),
        "{comment}"
    );

    // The demos show up on the status page (signed in with the dev key run-local printed).
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let page = reqwest::Client::new()
            .get(format!("{bridge}/api/status"))
            .header("accept", "application/json")
            .header("x-status-key", "local-status-page-key")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let page: Value = page.json().await.unwrap();
        // demo-incident's ticket and demo-routing's three (the outage's is `completed` by the queue trigger).
        if page["totals"]["created"].as_u64() == Some(4) {
            break;
        }
        assert!(Instant::now() < give_up, "the demos' tickets are not on the status page: {page:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 6. The sandbox's own state agrees.
    let tickets = get_json(&format!("{halo}/_sandbox/tickets")).await;
    let linked: Vec<&Value> =
        tickets.as_array().unwrap().iter().filter(|t| t["supplier_reference"] == REFERENCE).collect();
    assert_eq!(linked.len(), 1, "one ticket carries {REFERENCE}: {tickets:#}");
    assert_eq!(linked[0]["hasbeenclosed"], true, "the demo closed the ticket: {:#}", linked[0]);
    let incidents = get_json(&format!("{cf}/_sandbox/incidents")).await;
    let incident = &incidents[INCIDENT_ID];
    let comments = incident["comments"].as_array().cloned().unwrap_or_default();
    assert!(
        comments.iter().any(|c| c["content"].as_str().is_some_and(|t| t.contains(NOTE_TEXT))),
        "a comment on {INCIDENT_ID} carries the note: {incidents:#}"
    );
    let closes = incident["status_changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(closes.len(), 1, "one close: {incidents:#}");
    assert_eq!(closes[0]["status"], "Closed");
    let demos_after = started.elapsed();

    // 7. Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it) stops everything.
    assert_stops(run, &ports, "INT", true).await;
    eprintln!(
        "local_run: ready after {:.1} s, demos done after {:.1} s, stopped after {:.1} s",
        ready_after.as_secs_f64(),
        demos_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Launched in the background or with `nohup`, SIGINT is ignored by run-local and everything it starts, and a
/// terminal's Ctrl-C cannot reach it: SIGTERM (`kill PID`, what a service manager sends) still stops it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_local_launched_with_sigint_ignored_stops_everything_on_sigterm() {
    let (_checkout, dir) = clean_checkout();
    let (run, ports) = launch(&dir, Launch::SigintIgnored).await;
    assert_stops(run, &ports, "TERM", false).await;
}
