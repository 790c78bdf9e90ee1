//! Fault injection shared by the fakes: status answers, delays, and broken responses.
//!
//! Rules match on an HTTP method (or any) and a path prefix, compared case-insensitively.
//! One-shot rules added with [`Faults::push`] are checked first, in the order they were pushed;
//! then rate rules added with [`Faults::set_rate`]. The first rule that fires decides.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The HTTP method type used by rules (the `http` crate's, shared with reqwest and warp).
pub use warp::http::Method;

/// What a fake does instead of (or around) answering normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (with `Retry-After` when given) WITHOUT applying the operation.
    Status {
        /// The HTTP status code to answer.
        code: u16,
        /// Seconds for the `Retry-After` header, if any.
        retry_after: Option<u64>,
    },
    /// Sleep, then handle the request normally.
    DelayBefore(Duration),
    /// Apply the operation, then sleep before answering (the client times out: ambiguous outcome).
    ApplyThenDelay(Duration),
    /// Apply the operation, then answer 200 with a body stream that breaks: the client gets
    /// the 200 status and headers, then an error while reading the body.
    ApplyThenBreak,
    /// Do not apply; the answer's body stream fails before anything is flushed, so the
    /// connection is cut and the client sees an incomplete message (a send error).
    Break,
}

impl Fault {
    /// Shorthand for `Fault::Status { code, retry_after: None }`.
    pub fn status(code: u16) -> Fault {
        Fault::Status { code, retry_after: None }
    }

    /// The key this fault is counted under in [`Faults::injected`]: `status`, `delay_before`,
    /// `apply_then_delay`, `apply_then_break` or `break`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::DelayBefore(_) => "delay_before",
            Fault::ApplyThenDelay(_) => "apply_then_delay",
            Fault::ApplyThenBreak => "apply_then_break",
            Fault::Break => "break",
        }
    }
}

/// Anything that names a method filter: `"POST"`, `"*"` (any), a [`Method`], or
/// `Option<Method>` (`None` = any).
pub trait MethodFilter {
    /// The method to match, `None` for any.
    fn method_filter(self) -> Option<Method>;
}

impl MethodFilter for &str {
    fn method_filter(self) -> Option<Method> {
        parse_method(self)
    }
}

impl MethodFilter for &String {
    fn method_filter(self) -> Option<Method> {
        parse_method(self)
    }
}

impl MethodFilter for Method {
    fn method_filter(self) -> Option<Method> {
        Some(self)
    }
}

impl MethodFilter for &Method {
    fn method_filter(self) -> Option<Method> {
        Some(self.clone())
    }
}

impl MethodFilter for Option<Method> {
    fn method_filter(self) -> Option<Method> {
        self
    }
}

/// A one-shot (or permanent) fault rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The method to match; `None` matches any method.
    pub method: Option<Method>,
    /// The path prefix to match, e.g. `/api/Tickets`, `/auth/token`, `/workspaces`.
    pub path_prefix: String,
    /// The fault to inject.
    pub fault: Fault,
    /// How many matching requests get the fault; `None` means every one, forever.
    pub times: Option<u64>,
}

impl Rule {
    /// A rule that fires once for `method` (e.g. `"POST"`, or `"*"` for any) and `path_prefix`.
    pub fn once(method: impl MethodFilter, path_prefix: &str, fault: Fault) -> Rule {
        Rule::times(method, path_prefix, fault, 1)
    }

    /// A rule that fires for the next `n` matching requests.
    pub fn times(method: impl MethodFilter, path_prefix: &str, fault: Fault, n: u64) -> Rule {
        Rule { method: method.method_filter(), path_prefix: path_prefix.to_string(), fault, times: Some(n) }
    }

    /// A rule that fires for every matching request until [`Faults::clear`].
    pub fn always(method: impl MethodFilter, path_prefix: &str, fault: Fault) -> Rule {
        Rule { method: method.method_filter(), path_prefix: path_prefix.to_string(), fault, times: None }
    }

    fn matches(&self, method: &Method, paths: &[&str]) -> bool {
        method_matches(self.method.as_ref(), method) && paths.iter().any(|p| prefix_matches(p, &self.path_prefix))
    }
}

/// Parses `"GET"`, `"post"` etc.; `"*"`, `""` and `"ANY"` mean any method.
pub fn parse_method(method: &str) -> Option<Method> {
    let m = method.trim();
    if m.is_empty() || m == "*" || m.eq_ignore_ascii_case("any") {
        None
    } else {
        Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()
    }
}

pub(crate) fn method_matches(rule: Option<&Method>, method: &Method) -> bool {
    rule.is_none_or(|m| m == method)
}

pub(crate) fn prefix_matches(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len() && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[derive(Debug)]
struct RateRule {
    method: Option<Method>,
    path_prefix: String,
    fault: Fault,
    probability: f64,
    rng: StdRng,
}

/// A modelled network and service latency: each request waits `mean` ± up to `jitter` (uniform) before it is
/// handled, as a call across a region would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// The average wait.
    pub mean: Duration,
    /// The most a wait differs from `mean`, either way.
    pub jitter: Duration,
}

impl Latency {
    /// One wait, drawn from `rng`.
    pub fn sample(&self, rng: &mut StdRng) -> Duration {
        let low = self.mean.saturating_sub(self.jitter);
        let high = self.mean + self.jitter;
        if high <= low {
            return low;
        }
        Duration::from_nanos(rng.gen_range(low.as_nanos() as u64..=high.as_nanos() as u64))
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    rates: Vec<RateRule>,
    latency: Option<(Latency, StdRng)>,
    /// The latency waits drawn so far, in all.
    waited: Duration,
    injected: BTreeMap<String, u64>,
}

/// The fault plan of one fake. Cheap to clone (an `Arc` inside); clones share the plan.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

/// The name the brief uses for the plan type.
pub type FaultPlan = Faults;

impl Faults {
    /// An empty plan.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// Adds a rule: the next `rule.times` matching requests get `rule.fault`, then it is spent
    /// (`Some(0)` is already spent and ignored; `None` never runs out).
    pub fn push(&self, rule: Rule) {
        if rule.times != Some(0) {
            self.lock().rules.push(rule);
        }
    }

    /// Each matching request gets `fault` with `probability` (0.0..=1.0), drawn from a
    /// deterministic RNG seeded with `seed`. `method` is e.g. `"POST"`, `"*"` or a [`Method`].
    pub fn set_rate(&self, method: impl MethodFilter, path_prefix: &str, fault: Fault, probability: f64, seed: u64) {
        self.lock().rates.push(RateRule {
            method: method.method_filter(),
            path_prefix: path_prefix.to_string(),
            fault,
            probability: probability.clamp(0.0, 1.0),
            rng: StdRng::seed_from_u64(seed),
        });
    }

    /// Every request waits `latency` before it is handled (`None`: no wait), drawn from a deterministic RNG seeded
    /// with `seed`.
    pub fn set_latency(&self, latency: Option<Latency>, seed: u64) {
        self.lock().latency = latency.map(|l| (l, StdRng::seed_from_u64(seed)));
    }

    /// The wait of the next request under `set_latency`.
    pub fn latency(&self) -> Option<Duration> {
        let mut s = self.lock();
        let wait = s.latency.as_mut().map(|(l, rng)| l.sample(rng));
        s.waited += wait.unwrap_or_default();
        wait
    }

    /// The latency waits drawn so far, in all (what `set_latency` added to the requests' time).
    pub fn waited(&self) -> Duration {
        self.lock().waited
    }

    /// Removes every rule (the injected counters are kept).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.rates.clear();
    }

    /// How many faults of each kind were injected, keyed by [`Fault::kind`].
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.lock().injected.clone()
    }

    /// Total number of faults injected so far.
    pub fn injected_total(&self) -> u64 {
        self.lock().injected.values().sum()
    }

    /// Number of one-shot rules that still have uses left (permanent rules included).
    pub fn pending_rules(&self) -> usize {
        self.lock().rules.len()
    }

    /// Decides the fault for one request; `paths` are the forms of the request path a rule may
    /// match (e.g. the full path and the path relative to an API base). Counts the injection.
    pub fn decide(&self, method: &Method, paths: &[&str]) -> Option<Fault> {
        let mut s = self.lock();
        let mut chosen = None;
        if let Some(i) = s.rules.iter().position(|r| r.matches(method, paths)) {
            let rule = &mut s.rules[i];
            chosen = Some(rule.fault.clone());
            if let Some(n) = rule.times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.rules.remove(i);
                }
            }
        }
        if chosen.is_none() {
            for rate in s.rates.iter_mut() {
                if method_matches(rate.method.as_ref(), method)
                    && paths.iter().any(|p| prefix_matches(p, &rate.path_prefix))
                {
                    // Always draw, so the sequence depends only on the seed and request order.
                    let hit = rate.rng.gen_bool(rate.probability);
                    if hit {
                        chosen = Some(rate.fault.clone());
                        break;
                    }
                }
            }
        }
        if let Some(f) = &chosen {
            *s.injected.entry(f.kind().to_string()).or_default() += 1;
        }
        chosen
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_rules_are_spent() {
        let f = Faults::new();
        f.push(Rule::times("POST", "/api/tickets", Fault::status(503), 2));
        let post = Method::POST;
        assert_eq!(f.decide(&Method::GET, &["/api/Tickets"]), None);
        assert_eq!(f.decide(&post, &["/api/Tickets"]), Some(Fault::status(503)));
        assert_eq!(f.decide(&post, &["/API/TICKETS/5"]), Some(Fault::status(503)));
        assert_eq!(f.decide(&post, &["/api/Tickets"]), None);
        assert_eq!(f.injected()["status"], 2);
        assert_eq!(f.pending_rules(), 0);
    }

    #[test]
    fn rates_are_deterministic() {
        let run = |seed| {
            let f = Faults::new();
            f.set_rate("*", "/api", Fault::Break, 0.3, seed);
            (0..200).map(|_| f.decide(&Method::GET, &["/api/x"]).is_some()).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let hits = a.iter().filter(|h| **h).count();
        assert!((30..90).contains(&hits), "{hits}");
    }

    #[test]
    fn parse_methods() {
        assert_eq!(parse_method("*"), None);
        assert_eq!(parse_method("post"), Some(Method::POST));
    }
}
