//! Loading `host.json` and `*/function.json` (docs/functions-host.md, host.json) and the
//! route templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{HostError, HostOptions};

/// The authorization level of an HTTP-triggered function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthLevel {
    /// No key needed.
    Anonymous,
    /// A function key or a host key (master included).
    Function,
    /// Only the master key.
    Admin,
}

/// What the stand-in knows about one discovered function.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// The folder name.
    pub name: String,
    /// The route template (defaults to the folder name).
    pub route: String,
    /// Allowed methods, lower-case; `None` allows all.
    pub methods: Option<Vec<String>>,
    /// The authorization level (default `function`).
    pub auth_level: AuthLevel,
    /// `true` when the function has exactly one `httpTrigger` input and one `http` output,
    /// i.e. the host forwards the request instead of sending a JSON envelope.
    pub in_and_out: bool,
    pub(crate) template: Vec<Segment>,
}

impl FunctionInfo {
    /// Whether `method` is allowed.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

/// The parsed application: the handler to run and the functions to route.
#[derive(Clone, Debug)]
pub(crate) struct AppConfig {
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub working_dir: PathBuf,
    pub forwarding: bool,
    pub proxying: bool,
    pub route_prefix: Vec<String>,
    pub route_prefix_raw: String,
    pub request_timeout: Duration,
    pub functions: Vec<FunctionInfo>,
    pub queue_triggers: Vec<QueueTrigger>,
    pub queue_settings: QueueSettings,
    pub env: Vec<(String, String)>,
    pub app_root: PathBuf,
}

/// A queue-triggered function.
#[derive(Clone, Debug)]
pub(crate) struct QueueTrigger {
    pub function: String,
    /// The trigger binding's name: the key of the message in the envelope's `Data`.
    pub binding: String,
    pub queue: String,
    /// The app setting holding the storage connection string.
    pub connection: String,
}

/// host.json's `extensions.queues` (defaults as the host's; docs/durable-work.md cites them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// Messages fetched at once (1–32; default 16).
    pub batch_size: u8,
    /// Dequeues after which a failing message goes to the poison queue (default 5).
    pub max_dequeue_count: u64,
    /// How long a failed message stays invisible (default 0).
    pub visibility_timeout: Duration,
    /// The longest wait between polls of an empty queue (default 1 min).
    pub max_polling_interval: Duration,
    /// How long a message being processed stays invisible (the host holds it 10 min, renewing).
    pub processing_visibility: Duration,
    /// `messageEncoding` is `base64` (the default), not `none`.
    pub base64: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            batch_size: 16,
            max_dequeue_count: 5,
            visibility_timeout: Duration::ZERO,
            max_polling_interval: Duration::from_secs(60),
            processing_visibility: Duration::from_secs(600),
            base64: true,
        }
    }
}

fn queue_settings(host: &Value) -> Result<QueueSettings, HostError> {
    let mut s = QueueSettings::default();
    let Some(q) = host.pointer("/extensions/queues") else { return Ok(s) };
    let span = |name: &str| -> Result<Option<Duration>, HostError> {
        match q.get(name).and_then(Value::as_str) {
            Some(text) => parse_timespan(text),
            None => Ok(None),
        }
    };
    if let Some(n) = q.get("batchSize").and_then(Value::as_u64) {
        s.batch_size = n.clamp(1, 32) as u8;
    }
    if let Some(n) = q.get("maxDequeueCount").and_then(Value::as_u64) {
        s.max_dequeue_count = n.max(1);
    }
    if let Some(d) = span("visibilityTimeout")? {
        s.visibility_timeout = d;
    }
    if let Some(d) = span("maxPollingInterval")? {
        s.max_polling_interval = d;
    }
    if let Some(encoding) = q.get("messageEncoding").and_then(Value::as_str) {
        s.base64 = !encoding.eq_ignore_ascii_case("none");
    }
    Ok(s)
}

/// Azure Load Balancer idle timeout: HTTP answers are capped at 230 s.
pub(crate) const LB_TIMEOUT: Duration = Duration::from_secs(230);

fn cfg_err(msg: impl Into<String>) -> HostError {
    HostError::Config(msg.into())
}

fn read_json(path: &Path) -> Result<Value, HostError> {
    let text = std::fs::read_to_string(path).map_err(|e| cfg_err(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| cfg_err(format!("{} is not JSON: {e}", path.display())))
}

/// Parses `hh:mm:ss`, `d.hh:mm:ss` (and `-1` = unbounded → `None`).
pub(crate) fn parse_timespan(s: &str) -> Result<Option<Duration>, HostError> {
    let s = s.trim();
    if s == "-1" {
        return Ok(None);
    }
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if !d.contains(':') => {
            (d.parse::<u64>().map_err(|_| cfg_err(format!("bad functionTimeout {s:?}")))?, r)
        }
        _ => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return Err(cfg_err(format!("bad functionTimeout {s:?}")));
    }
    let num = |p: &str| p.parse::<f64>().map_err(|_| cfg_err(format!("bad functionTimeout {s:?}")));
    let secs = days as f64 * 86_400.0 + num(parts[0])? * 3600.0 + num(parts[1])? * 60.0 + num(parts[2])?;
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// Expands `%VAR%` from `env` (names compared case-insensitively); unknown names stay as is.
pub(crate) fn expand_vars(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) => {
                let name = &after[..end];
                let value = env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .or_else(|| env.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)));
                out.push_str(&rest[..start]);
                match value {
                    Some((_, v)) if !name.is_empty() => out.push_str(v),
                    _ => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    first_ok
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.eq_ignore_ascii_case("host")
}

/// Builds the child's environment: base (PATH/HOME or everything), then the example local
/// settings, then the options' variables.
fn child_env(opts: &HostOptions) -> Result<Vec<(String, String)>, HostError> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if opts.inherit_env {
        env.extend(std::env::vars());
    } else {
        for name in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(name) {
                env.insert(name.to_string(), v);
            }
        }
    }
    if opts.load_local_settings {
        let candidates = ["local.settings.json", "local.settings.json.example"];
        if let Some(path) = candidates.iter().map(|c| opts.app_root.join(c)).find(|p| p.is_file()) {
            let v = read_json(&path)?;
            if let Some(values) = v.get("Values").and_then(Value::as_object) {
                for (k, v) in values {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    env.insert(k.clone(), v);
                }
            }
        }
    }
    for (k, v) in &opts.env {
        env.insert(k.clone(), v.clone());
    }
    Ok(env.into_iter().collect())
}

/// Loads host.json and the functions.
pub(crate) fn load(opts: &HostOptions) -> Result<AppConfig, HostError> {
    let root = if opts.app_root.is_absolute() {
        opts.app_root.clone()
    } else {
        std::env::current_dir().map_err(|e| cfg_err(format!("no current dir: {e}")))?.join(&opts.app_root)
    };
    let host = read_json(&root.join("host.json"))?;
    if host.get("version").and_then(Value::as_str) != Some("2.0") {
        return Err(cfg_err("host.json: \"version\" must be \"2.0\""));
    }
    let ch = host.get("customHandler").ok_or_else(|| cfg_err("host.json has no customHandler section"))?;
    let desc = ch.get("description").cloned().unwrap_or(Value::Null);
    let env = child_env(opts)?;

    let exe = match &opts.executable {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => root.join(p),
        None => {
            let default = desc.get("defaultExecutablePath").and_then(Value::as_str).unwrap_or("").trim();
            if default.is_empty() {
                return Err(cfg_err("host.json: customHandler.description.defaultExecutablePath is empty"));
            }
            let p = PathBuf::from(default);
            if p.is_absolute() {
                p
            } else if root.join(&p).exists() {
                root.join(&p)
            } else {
                // Not under the app root: the host treats it as a command on PATH.
                p
            }
        }
    };
    let args: Vec<String> = desc
        .get("arguments")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|s| expand_vars(s, &env)).collect())
        .unwrap_or_default();
    let working_dir = match desc.get("workingDirectory").and_then(Value::as_str) {
        Some(w) if !w.trim().is_empty() => root.join(w),
        _ => root.clone(),
    };
    let flag = |name: &str| ch.get(name).and_then(Value::as_bool).unwrap_or(false);
    let route_prefix_raw = host
        .pointer("/extensions/http/routePrefix")
        .and_then(Value::as_str)
        .unwrap_or("api")
        .trim_matches('/')
        .to_string();
    let function_timeout = match host.get("functionTimeout").and_then(Value::as_str) {
        Some(s) => parse_timespan(s)?,
        None => None,
    };
    let request_timeout = opts.request_timeout.unwrap_or_else(|| match function_timeout {
        Some(t) => t.min(LB_TIMEOUT),
        None => LB_TIMEOUT,
    });

    let functions = discover(&root)?;
    let queue_triggers = discover_queue_triggers(&root)?;
    let queue_settings = queue_settings(&host)?;
    Ok(AppConfig {
        exe,
        args,
        working_dir,
        forwarding: flag("enableForwardingHttpRequest"),
        proxying: flag("enableProxyingHttpRequest"),
        route_prefix: route_prefix_raw.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        route_prefix_raw,
        request_timeout,
        functions,
        queue_triggers,
        queue_settings,
        env,
        app_root: root,
    })
}

/// The enabled functions whose trigger is a `queueTrigger`.
fn discover_queue_triggers(root: &Path) -> Result<Vec<QueueTrigger>, HostError> {
    let mut triggers = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| cfg_err(format!("cannot list {}: {e}", root.display())))?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join("function.json").is_file()).collect();
    dirs.sort();
    for dir in dirs {
        let function = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let fj = read_json(&dir.join("function.json"))?;
        if fj.get("disabled").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let bindings = fj.get("bindings").and_then(Value::as_array).cloned().unwrap_or_default();
        let text = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(b) = bindings.iter().find(|b| text(b, "type").is_some_and(|t| t.eq_ignore_ascii_case("queueTrigger")))
        else {
            continue;
        };
        let (Some(binding), Some(queue)) = (text(b, "name"), text(b, "queueName")) else {
            return Err(cfg_err(format!("function {function}: a queueTrigger needs name and queueName")));
        };
        let connection = text(b, "connection").unwrap_or_else(|| "AzureWebJobsStorage".into());
        triggers.push(QueueTrigger { function, binding, queue, connection });
    }
    Ok(triggers)
}

fn discover(root: &Path) -> Result<Vec<FunctionInfo>, HostError> {
    let entries = std::fs::read_dir(root).map_err(|e| cfg_err(format!("cannot list {}: {e}", root.display())))?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join("function.json").is_file()).collect();
    dirs.sort();
    let mut functions: Vec<FunctionInfo> = Vec::new();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !valid_function_name(&name) {
            return Err(cfg_err(format!("invalid function name {name:?}")));
        }
        let fj = read_json(&dir.join("function.json"))?;
        if fj.get("disabled").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let bindings = fj.get("bindings").and_then(Value::as_array).cloned().unwrap_or_default();
        let is = |b: &Value, ty: &str, dir: &str| {
            b.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(ty))
                && b.get("direction").and_then(Value::as_str).is_some_and(|d| d.eq_ignore_ascii_case(dir))
        };
        let Some(trigger) = bindings.iter().find(|b| is(b, "httpTrigger", "in")) else {
            continue; // not HTTP-triggered: nothing to route
        };
        let dir_of = |b: &Value| b.get("direction").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let inputs = bindings.iter().filter(|b| dir_of(b) == "in").count();
        let outputs: Vec<&Value> = bindings.iter().filter(|b| dir_of(b) == "out").collect();
        let in_and_out = inputs == 1 && outputs.len() == 1 && is(outputs[0], "http", "out");

        let route = trigger
            .get("route")
            .and_then(Value::as_str)
            .map(|r| r.trim_matches('/').to_string())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| name.clone());
        let lower = route.to_ascii_lowercase();
        if lower.starts_with("admin") || lower.starts_with("runtime") {
            return Err(cfg_err(format!("function {name}: routes starting with 'admin' or 'runtime' are reserved")));
        }
        let methods = trigger.get("methods").and_then(Value::as_array).and_then(|a| {
            let ms: Vec<String> = a.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect();
            (!ms.is_empty()).then_some(ms)
        });
        let auth_level = match trigger.get("authLevel").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref()
        {
            None | Some("function") => AuthLevel::Function,
            Some("anonymous") => AuthLevel::Anonymous,
            Some("admin") => AuthLevel::Admin,
            Some(other) => return Err(cfg_err(format!("function {name}: unknown authLevel {other:?}"))),
        };
        let template = parse_template(&route).map_err(|e| cfg_err(format!("function {name}: {e}")))?;
        let info = FunctionInfo { name: name.clone(), route, methods, auth_level, in_and_out, template };
        for other in &functions {
            if shape(&other.template) == shape(&info.template) && methods_overlap(other, &info) {
                return Err(cfg_err(format!("functions {} and {} have conflicting routes", other.name, info.name)));
            }
        }
        functions.push(info);
    }
    Ok(functions)
}

fn methods_overlap(a: &FunctionInfo, b: &FunctionInfo) -> bool {
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
        _ => true,
    }
}

fn shape(t: &[Segment]) -> Vec<String> {
    t.iter()
        .map(|s| match s {
            Segment::Literal(l) => l.to_ascii_lowercase(),
            Segment::Param { catch_all: true, .. } => "{*}".into(),
            Segment::Param { .. } => "{}".into(),
        })
        .collect()
}

/// A route-parameter constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Constraint {
    Int,
    Long,
    Alpha,
    Bool,
    Guid,
}

/// One segment of a route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Param { name: String, optional: bool, catch_all: bool, constraint: Option<Constraint> },
}

/// Parses an ASP.NET Core style template: literals, `{name}`, `{name?}`, `{*rest}`,
/// `{id:int}`, `{x:alpha?}`.
pub(crate) fn parse_template(route: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if part.starts_with('{') && part.ends_with('}') && part.len() >= 3 {
            let mut inner = &part[1..part.len() - 1];
            let catch_all = inner.starts_with('*');
            if catch_all {
                inner = inner.trim_start_matches('*');
                if i + 1 != parts.len() {
                    return Err(format!("catch-all must be last in {route:?}"));
                }
            }
            let optional = inner.ends_with('?');
            inner = inner.trim_end_matches('?');
            let (name, constraint) = match inner.split_once(':') {
                Some((n, c)) => {
                    let c = match c.to_ascii_lowercase().as_str() {
                        "int" => Constraint::Int,
                        "long" => Constraint::Long,
                        "alpha" => Constraint::Alpha,
                        "bool" => Constraint::Bool,
                        "guid" => Constraint::Guid,
                        other => return Err(format!("unsupported route constraint {other:?}")),
                    };
                    (n, Some(c))
                }
                None => (inner, None),
            };
            if name.is_empty() || name.contains(['{', '}']) {
                return Err(format!("bad route parameter {part:?}"));
            }
            if optional && i + 1 != parts.len() {
                return Err(format!("only the last parameter may be optional in {route:?}"));
            }
            out.push(Segment::Param { name: name.to_string(), optional, catch_all, constraint });
        } else if part.contains(['{', '}']) {
            return Err(format!("complex route segment {part:?} is not supported by the stand-in"));
        } else {
            out.push(Segment::Literal(part.to_string()));
        }
    }
    Ok(out)
}

fn constraint_ok(c: Option<Constraint>, v: &str) -> bool {
    match c {
        None => true,
        Some(Constraint::Int) => v.parse::<i32>().is_ok(),
        Some(Constraint::Long) => v.parse::<i64>().is_ok(),
        Some(Constraint::Alpha) => !v.is_empty() && v.chars().all(|c| c.is_ascii_alphabetic()),
        Some(Constraint::Bool) => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Some(Constraint::Guid) => {
            let h: String = v.trim_matches(['{', '}']).replace('-', "");
            h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit())
        }
    }
}

/// Matches decoded path segments (after the route prefix) against a template; returns the
/// route parameters.
pub(crate) fn match_template(t: &[Segment], segs: &[String]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut i = 0;
    for seg in t {
        match seg {
            Segment::Literal(l) => {
                if segs.get(i).is_none_or(|s| !s.eq_ignore_ascii_case(l)) {
                    return None;
                }
                i += 1;
            }
            Segment::Param { name, catch_all: true, .. } => {
                params.insert(name.clone(), segs[i.min(segs.len())..].join("/"));
                i = segs.len();
            }
            Segment::Param { name, optional, constraint, .. } => match segs.get(i) {
                Some(v) => {
                    if !constraint_ok(*constraint, v) {
                        return None;
                    }
                    params.insert(name.clone(), v.clone());
                    i += 1;
                }
                None if *optional => {}
                None => return None,
            },
        }
    }
    (i == segs.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn templates_match() {
        let t = parse_template("items/{id:int}/{rest?}").unwrap();
        assert!(match_template(&t, &segs("Items/5")).is_some());
        assert_eq!(match_template(&t, &segs("items/5/x")).unwrap()["rest"], "x");
        assert!(match_template(&t, &segs("items/x")).is_none());
        assert!(match_template(&t, &segs("items/5/x/y")).is_none());
        let t = parse_template("files/{*path}").unwrap();
        assert_eq!(match_template(&t, &segs("files/a/b/c")).unwrap()["path"], "a/b/c");
        let t = parse_template("cf-webhook").unwrap();
        assert!(match_template(&t, &segs("CF-WEBHOOK")).is_some());
        assert!(match_template(&t, &segs("cf-webhook/x")).is_none());
        let t = parse_template("{name:alpha}").unwrap();
        assert!(match_template(&t, &segs("abc")).is_some());
        assert!(match_template(&t, &segs("ab1")).is_none());
        assert!(parse_template("a{b}").is_err());
        assert!(parse_template("{x:regex(a)}").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("00:05:00").unwrap(), Some(Duration::from_secs(300)));
        assert_eq!(parse_timespan("1.00:00:01").unwrap(), Some(Duration::from_secs(86_401)));
        assert_eq!(parse_timespan("-1").unwrap(), None);
        assert!(parse_timespan("5 minutes").is_err());
    }

    #[test]
    fn expands_variables() {
        let env = vec![("PORT".to_string(), "7".to_string())];
        assert_eq!(expand_vars("--port=%PORT% %NOPE% 100%", &env), "--port=7 %NOPE% 100%");
    }

    #[test]
    fn function_names() {
        assert!(valid_function_name("cf-webhook"));
        assert!(valid_function_name("halo_webhook2"));
        assert!(!valid_function_name("2fast"));
        assert!(!valid_function_name("host"));
        assert!(!valid_function_name("a.b"));
    }
}
