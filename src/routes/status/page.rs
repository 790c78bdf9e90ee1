//! The status page's HTML: one self-contained document (inline CSS and SVG, no script, no external asset), readable
//! on a laptop and a phone. Every outside value goes through `text` or `attr` (HTML escaping).

use super::{View, PATH};
use crate::store::records::WorkState;
use crate::store::runs::{utc as at_ms, RunRecord};
use std::fmt::Write;

fn text(value: &str) -> String {
    html_escape::encode_text(value).into_owned()
}

fn attr(value: &str) -> String {
    html_escape::encode_double_quoted_attribute(value).into_owned()
}

/// The outcomes as the page groups them: done, nothing to do, waiting, failed.
fn tone(outcome: &str) -> &'static str {
    match outcome {
        "created" | "updated" | "processed" | "completed" => "ok",
        "duplicate" | "test" | "ignored" => "quiet",
        "queued" | "retried" | "unavailable" => "wait",
        _ => "bad",
    }
}

const STYLE: &str = "
:root{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1b1f24;background:#f6f8fa}
body{margin:0 auto;max-width:1200px;padding:12px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:12px}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;margin:10px 0;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{font-weight:600;color:#57606a}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.quiet{color:#57606a}.wait{color:#9a6700}.bad{color:#cf222e;font-weight:600}
.legend span{margin-right:12px;font-size:.85rem}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end}form.filters label{display:flex;flex-direction:column;font-size:.8rem}
input,select,button{font:inherit;padding:4px 6px}button{cursor:pointer}
.notice{background:#dafbe1;border:1px solid #4ac26b;padding:6px 10px;border-radius:6px}
small{color:#57606a}
@media (max-width:640px){td.wide,th.wide{display:none}}
";

const FILL: [(&str, &str); 4] = [("ok", "#2da44e"), ("quiet", "#8c959f"), ("wait", "#d4a72c"), ("bad", "#cf222e")];

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        text(title)
    )
}

/// The sign-in form (the 401 page): it shows nothing of the bridge's data.
pub(super) fn login(message: Option<&str>) -> String {
    let message = message.map(|m| format!("<p class=\"bad\">{}</p>", text(m))).unwrap_or_default();
    document(
        "Bridge status: sign in",
        &format!(
            "<h1>ContraForce ↔ HaloPSA bridge</h1><section><h2>Sign in</h2>{message}<form method=\"post\" \
             action=\"{PATH}/login\"><label>Status page key (STATUS_PAGE_KEY)<br><input type=\"password\" name=\"key\" \
             autocomplete=\"current-password\" required></label> <button type=\"submit\">Sign in</button></form></section>"
        ),
    )
}

fn chart(view: &View) -> String {
    let (width, height, pad) = (720.0_f64, 160.0_f64, 18.0_f64);
    let most = view.hours.iter().map(|h| h.outcomes.values().sum::<u64>()).max().unwrap_or(0).max(1);
    let slot = (width - pad) / view.hours.len().max(1) as f64;
    let mut svg = format!(
        "<svg id=\"chart\" viewBox=\"0 0 {width} {}\" width=\"100%\" role=\"img\" aria-label=\"Deliveries per hour, last \
         24 hours\" xmlns=\"http://www.w3.org/2000/svg\">",
        height + 16.0
    );
    let _ = write!(svg, "<text x=\"0\" y=\"10\" font-size=\"10\" fill=\"#57606a\">{most}</text>");
    for (i, hour) in view.hours.iter().enumerate() {
        let x = pad + i as f64 * slot;
        let mut y = height;
        for (outcome, n) in &hour.outcomes {
            let h = (*n as f64 / most as f64) * (height - 14.0);
            y -= h;
            let fill = FILL.iter().find(|(t, _)| *t == tone(outcome)).map(|(_, f)| *f).unwrap_or("#8c959f");
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{fill}\" data-hour=\"{}\" \
                 data-outcome=\"{}\" data-count=\"{n}\"><title>{} {}:00 UTC: {n} {}</title></rect>",
                (slot - 2.0).max(1.0),
                attr(&hour.hour),
                attr(outcome),
                text(&hour.hour[..8.min(hour.hour.len())]),
                text(hour.hour.get(8..10).unwrap_or("")),
                text(outcome)
            );
        }
        if i % 6 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{}\" font-size=\"10\" fill=\"#57606a\">{}:00</text>",
                height + 12.0,
                text(hour.hour.get(8..10).unwrap_or(""))
            );
        }
    }
    svg.push_str("</svg>");
    let legend: String = FILL
        .iter()
        .map(|(tone, fill)| {
            let name = match *tone {
                "ok" => "done",
                "quiet" => "duplicate / test / ignored",
                "wait" => "queued / retried",
                _ => "dead-lettered / failed",
            };
            format!("<span><i class=\"sw\" style=\"background:{fill}\"></i>{name}</span>")
        })
        .collect();
    format!("{svg}<div class=\"legend\">{legend}</div>")
}

fn ticket_cell(view: &View, ticket: Option<i64>) -> String {
    let Some(ticket) = ticket else { return String::new() };
    let filter = format!("<a href=\"{PATH}?ticket={ticket}\" title=\"every delivery of this ticket\">#{ticket}</a>");
    match &view.halo_web_url {
        Some(base) => format!(
            "{filter} <a href=\"{}\" rel=\"noreferrer\" target=\"_blank\" title=\"open in Halo\">↗</a>",
            attr(&format!("{}/tickets?id={ticket}", base.trim_end_matches('/')))
        ),
        None => filter,
    }
}

fn run_row(view: &View, run: &RunRecord) -> String {
    let incident = run
        .reference
        .as_deref()
        .map(|r| {
            let link: String = form_urlencoded::byte_serialize(r.as_bytes()).collect();
            format!("<a href=\"{PATH}?incident={link}\" title=\"every delivery of this incident\">{}</a>", text(r))
        })
        .unwrap_or_default();
    let client = match (&run.client_id, &run.routed_by) {
        (Some(c), Some(by)) => format!("{c} <small>({})</small>", text(by)),
        (Some(c), None) => c.to_string(),
        _ => String::new(),
    };
    let mut detail = Vec::new();
    if let Some(e) = &run.error {
        detail.push(text(e));
    }
    if let Some(w) = &run.work_id {
        detail.push(format!("work {}", text(w)));
    }
    if let Some(e) = &run.event_id {
        detail.push(format!("event {}", text(e)));
    }
    format!(
        "<tr data-outcome=\"{}\" data-function=\"{}\" data-reference=\"{}\" data-ticket=\"{}\"><td>{}</td><td>{}</td>\
         <td class=\"{}\">{}</td><td>{incident}</td><td>{}</td><td class=\"wide\">{client}</td><td class=\"n wide\">{} / {}</td>\
         <td class=\"n wide\">{}</td><td class=\"n\">{} ms</td><td class=\"wide\">{}</td></tr>",
        attr(&run.outcome),
        attr(&run.function),
        attr(run.reference.as_deref().unwrap_or("")),
        run.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        at_ms(run.received_ms),
        text(&run.function),
        tone(&run.outcome),
        text(&run.outcome),
        ticket_cell(view, run.ticket_id),
        run.halo_calls,
        run.cf_calls,
        run.attempts,
        run.duration_ms,
        detail.join("<br>")
    )
}

fn options(name: &str, values: &[&str], chosen: Option<&str>) -> String {
    let mut html = format!("<select name=\"{name}\"><option value=\"\">any</option>");
    for v in values {
        let selected = if chosen == Some(*v) { " selected" } else { "" };
        let _ = write!(html, "<option{selected}>{}</option>", text(v));
    }
    html.push_str("</select>");
    html
}

const OUTCOMES: [&str; 14] = [
    "created",
    "updated",
    "duplicate",
    "test",
    "ignored",
    "processed",
    "queued",
    "retried",
    "completed",
    "dead-lettered",
    "uncertain",
    "rejected",
    "unauthorized",
    "unavailable",
];

/// The page.
pub(super) fn render(view: &View, csrf: &str, notice: Option<&str>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><div><h1>ContraForce ↔ HaloPSA bridge</h1><small>Deliveries of the last {} hours, what is waiting \
         now, and the dead letters to replay.</small></div><form method=\"post\" action=\"{PATH}/logout\"><button \
         type=\"submit\">Sign out</button></form></header>",
        super::WINDOW_HOURS
    );
    if let Some(notice) = notice {
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">{}</p>", text(notice));
    }

    // The chart and the totals.
    let total: u64 = view.totals.values().sum();
    let _ = write!(body, "<section><h2>Last 24 hours: {total} deliveries</h2>{}<table id=\"totals\"><tr><th>Outcome</th><th>Count</th></tr>", chart(view));
    for (outcome, n) in &view.totals {
        let _ = write!(
            body,
            "<tr data-outcome=\"{}\"><td class=\"{}\"><a href=\"{PATH}?outcome={}\">{}</a></td><td class=\"n\">{n}</td></tr>",
            attr(outcome),
            tone(outcome),
            attr(outcome),
            text(outcome)
        );
    }
    body.push_str("</table></section>");

    // What is waiting now.
    let _ = write!(
        body,
        "<section><h2>Waiting now: {} queued, {} dead-lettered, {} uncertain</h2>",
        view.work.iter().filter(|w| w.state == WorkState::Queued).count(),
        view.work.iter().filter(|w| w.state == WorkState::DeadLettered).count(),
        view.work.iter().filter(|w| w.state == WorkState::Uncertain).count()
    );
    if view.work.is_empty() {
        body.push_str("<p class=\"ok\">Nothing is queued or dead-lettered.</p>");
    } else {
        body.push_str("<table id=\"work\"><tr><th>Work</th><th>State</th><th class=\"n\">Attempts</th><th>Why</th><th class=\"wide\">Since</th><th></th></tr>");
        for w in &view.work {
            let state = format!("{:?}", w.state);
            let button = match w.state {
                WorkState::DeadLettered | WorkState::Uncertain => format!(
                    "<form method=\"post\" action=\"{PATH}/replay\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"replay\">Replay</button></form>",
                    attr(&w.id),
                    attr(csrf)
                ),
                WorkState::Queued => String::new(),
            };
            let css = if w.state == WorkState::Queued { "wait" } else { "bad" };
            let _ = write!(
                body,
                "<tr data-work=\"{}\" data-state=\"{}\"><td>{}</td><td class=\"{css}\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"wide\">{}</td><td>{button}</td></tr>",
                attr(&w.id),
                attr(&state),
                text(&w.id),
                text(&state),
                w.attempts,
                text(&w.reason),
                at_ms(w.first_at * 1000)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");

    // The deliveries, with the filters.
    let f = &view.filter;
    let heading = match (&f.incident, f.ticket) {
        (Some(i), _) => format!("Timeline of incident {}", text(i)),
        (None, Some(t)) => format!("Timeline of ticket #{t}"),
        _ => "Most recent deliveries".to_string(),
    };
    let _ = write!(
        body,
        "<section><h2>{heading}</h2><form class=\"filters\" method=\"get\" action=\"{PATH}\"><label>Direction{}</label>\
         <label>Outcome{}</label><label>Incident<input name=\"incident\" value=\"{}\" placeholder=\"cf|source|id\"></label>\
         <label>Ticket<input name=\"ticket\" value=\"{}\" inputmode=\"numeric\" size=\"8\"></label><button type=\"submit\">Filter</button> \
         <a href=\"{PATH}\">clear</a></form>",
        options("direction", &["cf-webhook", "halo-webhook", "work-items", "dead-letters"], f.direction.as_deref()),
        options("outcome", &OUTCOMES, f.outcome.as_deref()),
        attr(f.incident.as_deref().unwrap_or("")),
        f.ticket.map(|t| t.to_string()).unwrap_or_default()
    );
    if view.runs.is_empty() {
        body.push_str("<p class=\"quiet\">No delivery matches.</p>");
    } else {
        body.push_str(
            "<table id=\"runs\"><tr><th>Received (UTC)</th><th>Function</th><th>Outcome</th><th>Incident</th><th>Ticket</th>\
             <th class=\"wide\">Client</th><th class=\"n wide\">Halo / CF calls</th><th class=\"n wide\">Attempt</th><th class=\"n\">Took</th>\
             <th class=\"wide\">Detail</th></tr>",
        );
        for run in &view.runs {
            body.push_str(&run_row(view, run));
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    document("Bridge status", &body)
}
