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

/// What starts a function the host invokes with the invocation envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `queueTrigger`: a message on `queue_name` of the storage account in the `connection` setting.
    Queue {
        /// The queue (`%VAR%` expanded).
        queue_name: String,
        /// The name of the setting that holds the connection string (default `AzureWebJobsStorage`).
        connection: String,
    },
    /// `timerTrigger`: an NCRONTAB `schedule` (fired only on demand by the stand-in).
    Timer {
        /// The schedule as written.
        schedule: String,
    },
}

/// A function invoked with the invocation envelope (a queue or timer trigger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggeredFunction {
    /// The folder name.
    pub name: String,
    /// The trigger binding's `name`: the key of its value in the envelope's `Data`.
    pub binding: String,
    /// The trigger.
    pub trigger: Trigger,
}

/// How a queue trigger reads message text (`extensions.queues.messageEncoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageEncoding {
    /// The text is base64 (the default).
    Base64,
    /// The text is used as it is.
    None,
}

/// The `extensions.queues` settings of host.json, with the host's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// Messages fetched per Get Messages (default 16, at most 32).
    pub batch_size: u32,
    /// Another batch is fetched when at most this many are in flight (default `batch_size / 2`).
    pub new_batch_threshold: u32,
    /// The longest wait between polls of an empty queue (default 1 min).
    pub max_polling_interval: Duration,
    /// How long a failed message stays invisible before its retry (default 0).
    pub visibility_timeout: Duration,
    /// Attempts before a message moves to `<queue>-poison` (default 5).
    pub max_dequeue_count: u32,
    /// How message text is read (default base64).
    pub message_encoding: MessageEncoding,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            batch_size: 16,
            new_batch_threshold: 8,
            max_polling_interval: Duration::from_secs(60),
            visibility_timeout: Duration::ZERO,
            max_dequeue_count: 5,
            message_encoding: MessageEncoding::Base64,
        }
    }
}

/// Test overrides of [`QueueSettings`] (unset fields keep host.json's value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueOverrides {
    /// Overrides `batchSize`.
    pub batch_size: Option<u32>,
    /// Overrides `newBatchThreshold`.
    pub new_batch_threshold: Option<u32>,
    /// Overrides `maxPollingInterval` (the stand-in accepts less than the host's 100 ms minimum).
    pub max_polling_interval: Option<Duration>,
    /// Overrides `visibilityTimeout`.
    pub visibility_timeout: Option<Duration>,
    /// Overrides `maxDequeueCount`.
    pub max_dequeue_count: Option<u32>,
    /// Overrides `messageEncoding`.
    pub message_encoding: Option<MessageEncoding>,
}

fn queue_settings(host: &Value, overrides: &QueueOverrides) -> Result<QueueSettings, HostError> {
    let q = host.pointer("/extensions/queues").cloned().unwrap_or(Value::Null);
    let count = |name: &str| -> Result<Option<u32>, HostError> {
        match q.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| cfg_err(format!("host.json: extensions.queues.{name} must be a whole number"))),
        }
    };
    let span = |name: &str| -> Result<Option<Duration>, HostError> {
        match q.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_timespan(s),
            // Functions 1.x wrote milliseconds.
            Some(Value::Number(n)) => Ok(n.as_u64().map(Duration::from_millis)),
            Some(_) => Err(cfg_err(format!("host.json: extensions.queues.{name} must be a TimeSpan"))),
        }
    };
    let defaults = QueueSettings::default();
    let batch_size = overrides.batch_size.or(count("batchSize")?).unwrap_or(defaults.batch_size).clamp(1, 32);
    let encoding = match q.get("messageEncoding").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
        None | Some("base64") => MessageEncoding::Base64,
        Some("none") => MessageEncoding::None,
        Some(other) => return Err(cfg_err(format!("host.json: unknown extensions.queues.messageEncoding {other:?}"))),
    };
    Ok(QueueSettings {
        batch_size,
        new_batch_threshold: overrides.new_batch_threshold.or(count("newBatchThreshold")?).unwrap_or(batch_size / 2),
        max_polling_interval: overrides
            .max_polling_interval
            .or(span("maxPollingInterval")?)
            .unwrap_or(defaults.max_polling_interval),
        visibility_timeout: overrides
            .visibility_timeout
            .or(span("visibilityTimeout")?)
            .unwrap_or(defaults.visibility_timeout),
        max_dequeue_count: overrides
            .max_dequeue_count
            .or(count("maxDequeueCount")?)
            .unwrap_or(defaults.max_dequeue_count)
            .max(1),
        message_encoding: overrides.message_encoding.unwrap_or(encoding),
    })
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
    /// How long an envelope invocation may take (`functionTimeout`, 30 min without one, or the override).
    pub function_timeout: Duration,
    pub functions: Vec<FunctionInfo>,
    pub triggered: Vec<TriggeredFunction>,
    pub queues: QueueSettings,
    pub env: Vec<(String, String)>,
    pub app_root: PathBuf,
}

/// Azure Load Balancer idle timeout: HTTP answers are capped at 230 s.
pub(crate) const LB_TIMEOUT: Duration = Duration::from_secs(230);

/// The function timeout without a `functionTimeout` (the Flex Consumption default).
const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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

    let function_timeout = opts.request_timeout.unwrap_or_else(|| function_timeout.unwrap_or(DEFAULT_FUNCTION_TIMEOUT));
    let queues = queue_settings(&host, &opts.queues)?;
    let (functions, triggered) = discover(&root, &env)?;
    Ok(AppConfig {
        exe,
        args,
        working_dir,
        forwarding: flag("enableForwardingHttpRequest"),
        proxying: flag("enableProxyingHttpRequest"),
        route_prefix: route_prefix_raw.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        route_prefix_raw,
        request_timeout,
        function_timeout,
        functions,
        triggered,
        queues,
        env,
        app_root: root,
    })
}

/// The trigger of a non-HTTP function, if the stand-in runs it.
fn triggered(name: &str, trigger: &Value, env: &[(String, String)]) -> Result<Option<TriggeredFunction>, HostError> {
    let text = |key: &str| trigger.get(key).and_then(Value::as_str).map(str::trim).unwrap_or("").to_string();
    let binding = text("name");
    let kind = text("type").to_ascii_lowercase();
    let trigger = match kind.as_str() {
        "queuetrigger" => {
            let queue_name = expand_vars(&text("queueName"), env).to_ascii_lowercase();
            if queue_name.is_empty() {
                return Err(cfg_err(format!("function {name}: queueTrigger has no queueName")));
            }
            let connection = match text("connection") {
                c if c.is_empty() => "AzureWebJobsStorage".to_string(),
                c => c,
            };
            Trigger::Queue { queue_name, connection }
        }
        "timertrigger" => {
            // As the host does: a `%NAME%` schedule is an app setting, and one that resolves to nothing stops it.
            let schedule = expand_vars(&text("schedule"), env);
            if schedule.trim().is_empty() || schedule.contains('%') {
                return Err(cfg_err(format!(
                    "function {name}: the timer schedule {:?} does not resolve to a value",
                    text("schedule")
                )));
            }
            Trigger::Timer { schedule }
        }
        _ => return Ok(None),
    };
    if binding.is_empty() {
        return Err(cfg_err(format!("function {name}: the trigger binding has no name")));
    }
    Ok(Some(TriggeredFunction { name: name.to_string(), binding, trigger }))
}

/// `AzureWebJobs.<name>.Disabled` set to true disables a function (as `disabled` in function.json does).
fn disabled_by_setting(name: &str, env: &[(String, String)]) -> bool {
    let key = format!("AzureWebJobs.{name}.Disabled");
    env.iter().any(|(k, v)| k.eq_ignore_ascii_case(&key) && (v.eq_ignore_ascii_case("true") || v == "1"))
}

type Discovered = (Vec<FunctionInfo>, Vec<TriggeredFunction>);

fn discover(root: &Path, env: &[(String, String)]) -> Result<Discovered, HostError> {
    let entries = std::fs::read_dir(root).map_err(|e| cfg_err(format!("cannot list {}: {e}", root.display())))?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join("function.json").is_file()).collect();
    dirs.sort();
    let mut functions: Vec<FunctionInfo> = Vec::new();
    let mut triggered_functions: Vec<TriggeredFunction> = Vec::new();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !valid_function_name(&name) {
            return Err(cfg_err(format!("invalid function name {name:?}")));
        }
        let fj = read_json(&dir.join("function.json"))?;
        if fj.get("disabled").and_then(Value::as_bool) == Some(true) || disabled_by_setting(&name, env) {
            continue;
        }
        let bindings = fj.get("bindings").and_then(Value::as_array).cloned().unwrap_or_default();
        let is = |b: &Value, ty: &str, dir: &str| {
            b.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(ty))
                && b.get("direction").and_then(Value::as_str).is_some_and(|d| d.eq_ignore_ascii_case(dir))
        };
        let Some(trigger) = bindings.iter().find(|b| is(b, "httpTrigger", "in")) else {
            // Not HTTP-triggered: a queue or timer trigger the stand-in runs, or a trigger it ignores.
            let trigger = bindings.iter().find(|b| {
                b.get("type").and_then(Value::as_str).is_some_and(|t| t.to_ascii_lowercase().ends_with("trigger"))
            });
            if let Some(found) = trigger.map(|t| triggered(&name, t, env)).transpose()?.flatten() {
                triggered_functions.push(found);
            }
            continue;
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
    Ok((functions, triggered_functions))
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
    fn queue_settings_come_from_host_json_with_defaults_and_overrides() {
        let host: Value = serde_json::json!({"extensions": {"queues": {
            "maxPollingInterval": "00:00:10", "visibilityTimeout": "00:01:00", "batchSize": 4,
            "maxDequeueCount": 30, "messageEncoding": "none"}}});
        let s = queue_settings(&host, &QueueOverrides::default()).unwrap();
        assert_eq!(s.batch_size, 4);
        assert_eq!(s.new_batch_threshold, 2, "batchSize / 2 by default");
        assert_eq!(s.max_polling_interval, Duration::from_secs(10));
        assert_eq!(s.visibility_timeout, Duration::from_secs(60));
        assert_eq!(s.max_dequeue_count, 30);
        assert_eq!(s.message_encoding, MessageEncoding::None);
        let o = QueueOverrides { visibility_timeout: Some(Duration::from_secs(1)), ..QueueOverrides::default() };
        assert_eq!(queue_settings(&host, &o).unwrap().visibility_timeout, Duration::from_secs(1));
        assert_eq!(queue_settings(&Value::Null, &QueueOverrides::default()).unwrap(), QueueSettings::default());
        let bad = serde_json::json!({"extensions": {"queues": {"batchSize": "many"}}});
        assert!(queue_settings(&bad, &QueueOverrides::default()).is_err());
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
