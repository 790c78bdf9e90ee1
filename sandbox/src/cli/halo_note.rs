//! `sandbox halo-note` (`scripts/demo-halo-note`): a human agent answers on the sandbox ticket and closes it,
//! Halo's webhook fires at the local bridge, and the command says what the bridge did and what reached the
//! sandbox ContraForce.

use serde_json::{json, Value};

use sandbox::halo::{status_info, CLOSED_STATUS_ID};
use sandbox::util::html_escape;

use super::{
    default_bridge_url, default_cf_url, default_halo_url, default_secret, describe_send_error, failed, get_json,
    incident_of, indent_rest, post_json, text, ticket_reference, trim_url, uuid_v4, Answer, Args, CmdResult, Failure,
    DEV_HALO_WEBHOOK_SECRET,
};

const USAGE: &str = "usage: sandbox halo-note [options]      (scripts/demo-halo-note)

In the sandbox Halo, an agent adds a public note to the ticket and closes it; then Halo's
\"Ticket Updated\" webhook goes to the bridge with X-Halo-Secret. Says what the bridge did and
what reached the sandbox ContraForce (comments and the close).

  --ticket N           the ticket (default the newest one with a cf| reference)
  --text TEXT          the note (default \"Called the user: travel confirmed, closing.\")
  --who NAME           the agent's name (default \"Jane Agent\")
  --no-close           add the note only; the ticket stays open
  --status ID          the closing status (default 9 Closed; the sandbox also has 20 \"Resolved - False
                       Positive\" and 21 \"Resolved - True Positive\", mapped in HALO_CLOSE_DECISION_MAP)
  --bridge-url URL     the bridge (default $BRIDGE_URL, else http://127.0.0.1:$BRIDGE_PORT, port 7071)
  --secret SECRET      the X-Halo-Secret (default $HALO_WEBHOOK_SECRET, else local-halo-webhook-secret)
  --halo-url URL       the sandbox Halo (default $SANDBOX_HALO_URL, else port $SANDBOX_HALO_PORT, 7081)
  --cf-url URL         the sandbox ContraForce (default $SANDBOX_CF_URL, else port $SANDBOX_CF_PORT, 7082)

Exits 0 when the bridge processed the webhook, 1 otherwise.";

const DEFAULT_TEXT: &str = "Called the user: travel confirmed, closing.";
const DEFAULT_WHO: &str = "Jane Agent";
/// The agent id of the demo agent (not the bridge's integration agent, 38).
const DEMO_AGENT_ID: i64 = 5;

struct Options {
    ticket: Option<i64>,
    text: String,
    who: String,
    close: bool,
    status: i64,
    bridge_url: String,
    secret: String,
    secret_origin: String,
    halo_url: String,
    cf_url: String,
}

fn parse(mut args: Args) -> Result<Options, Failure> {
    args.usage(USAGE);
    let (secret, secret_origin) = default_secret("HALO_WEBHOOK_SECRET", DEV_HALO_WEBHOOK_SECRET);
    let mut o = Options {
        ticket: None,
        text: DEFAULT_TEXT.into(),
        who: DEFAULT_WHO.into(),
        close: true,
        status: CLOSED_STATUS_ID,
        bridge_url: default_bridge_url(),
        secret,
        secret_origin,
        halo_url: default_halo_url(),
        cf_url: default_cf_url(),
    };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--ticket" => o.ticket = Some(args.parsed(&name)?),
            "--text" => o.text = args.value(&name)?,
            "--who" => o.who = args.value(&name)?,
            "--no-close" => o.close = false,
            "--status" => o.status = args.parsed(&name)?,
            "--bridge-url" => o.bridge_url = args.value(&name)?,
            "--secret" => {
                o.secret = args.value(&name)?;
                o.secret_origin = "--secret".into();
            }
            "--halo-url" => o.halo_url = args.value(&name)?,
            "--cf-url" => o.cf_url = args.value(&name)?,
            other => return Err(args.unknown(other)),
        }
    }
    if o.text.trim().is_empty() {
        return Err(args.error("--text must not be empty".into()));
    }
    if !status_info(o.status).1 {
        return Err(args.error(format!("--status {} is not a closing status of the sandbox Halo", o.status)));
    }
    o.bridge_url = trim_url(&o.bridge_url);
    o.halo_url = trim_url(&o.halo_url);
    o.cf_url = trim_url(&o.cf_url);
    Ok(o)
}

/// The ticket to answer on: `--ticket`, else the newest one carrying a `cf|` reference.
fn pick_ticket(tickets: &[Value], wanted: Option<i64>) -> Result<Value, String> {
    match wanted {
        Some(id) => tickets
            .iter()
            .find(|t| t.get("id").and_then(Value::as_i64) == Some(id))
            .cloned()
            .ok_or_else(|| format!("The sandbox Halo has no ticket #{id}.")),
        None => tickets
            .iter()
            .filter(|t| ticket_reference(t).is_some())
            .max_by_key(|t| t.get("id").and_then(Value::as_i64).unwrap_or_default())
            .cloned()
            .ok_or_else(|| {
                "The sandbox Halo has no ticket with a cf| reference yet: run scripts/demo-incident first.".to_string()
            }),
    }
}

pub async fn run(args: Args) -> CmdResult {
    let o = parse(args)?;
    let http = super::http();
    let halo_unreachable = |why: String| {
        failed(format!(
            "Cannot read the sandbox Halo at {}: {why}.\nIs scripts/run-local running with the sandbox (no real Halo \
             configured)?",
            o.halo_url
        ))
    };
    let tickets = get_json(&http, &format!("{}/_sandbox/tickets", o.halo_url)).await.map_err(halo_unreachable)?;
    let tickets = tickets.as_array().cloned().unwrap_or_default();
    let ticket = pick_ticket(&tickets, o.ticket).map_err(failed)?;
    let id = ticket.get("id").and_then(Value::as_i64).unwrap_or_default();
    let reference = ticket_reference(&ticket).map(|(r, _)| r);

    say!(
        "Halo ticket #{id} '{}'{}",
        text(ticket.get("summary")),
        reference.as_deref().map(|r| format!(" (reference {r})")).unwrap_or_default()
    );
    let note = json!({
        "note_html": format!("<p>{}</p>", html_escape(&o.text)),
        "note": o.text,
        "hiddenfromuser": false,
        "who": o.who,
        "who_agentid": DEMO_AGENT_ID,
    });
    post_json(&http, &format!("{}/_sandbox/tickets/{id}/actions", o.halo_url), &note)
        .await
        .map_err(|why| failed(format!("The sandbox Halo did not take the note: {why}")))?;
    say!("  {} added a public note: \"{}\"", o.who, o.text);
    if o.close {
        let (name, _) = status_info(o.status);
        let status = json!({"status_id": o.status, "status_name": name, "closed": true});
        post_json(&http, &format!("{}/_sandbox/tickets/{id}/status", o.halo_url), &status)
            .await
            .map_err(|why| failed(format!("The sandbox Halo did not close the ticket: {why}")))?;
        say!("  {} closed the ticket (status {} {name})", o.who, o.status);
    }

    let url = format!("{}/api/halo-webhook", o.bridge_url);
    let payload = json!({"id": uuid_v4(), "event": "Ticket Updated", "object_id": id, "ticket": {"id": id}});
    say!("  Halo sent its \"Ticket Updated\" webhook to {url} (X-Halo-Secret: {})", o.secret_origin);
    say!();
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-halo-secret", &o.secret)
        .body(payload.to_string())
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "Could not reach the bridge at {url}: {}.\nIs scripts/run-local running (and on this port)?",
                describe_send_error(&e)
            ))
        })?;
    let answer = Answer::read(response).await;
    if !answer.status.is_success() {
        return Err(failed(explain_failure(&answer, &o)));
    }
    let processed = answer.body.get("status").and_then(Value::as_str) == Some("processed");
    say!("The bridge: {}", describe_answer(&answer.body, o.close));

    match reference.as_deref().and_then(incident_of) {
        Some(incident) => show_cf(&http, &o.cf_url, incident).await,
        None => say!("(the ticket has no cf| reference, so nothing can reach ContraForce)"),
    }
    if processed {
        Ok(())
    } else {
        Err(failed("Nothing was forwarded (see the bridge's answer above)."))
    }
}

/// The bridge's 2xx answer in words, e.g. "1 note forwarded, incident closed".
fn describe_answer(body: &Value, we_closed: bool) -> String {
    match body.get("status").and_then(Value::as_str) {
        Some("processed") => {
            let n = body.get("actionsForwarded").and_then(Value::as_u64).unwrap_or(0);
            let notes = match n {
                0 => "no new note to forward".to_string(),
                1 => "1 note forwarded".to_string(),
                n => format!("{n} notes forwarded"),
            };
            let close = match (body.get("closed").and_then(Value::as_bool).unwrap_or(false), we_closed) {
                (true, _) => "incident closed",
                (false, true) => "no close sent (this close was already mirrored)",
                (false, false) => "the incident stays open",
            };
            format!("{notes}, {close}")
        }
        Some("ignored") => format!("ignored the webhook: {}", text(body.get("reason"))),
        _ => format!("answered {body}"),
    }
}

fn explain_failure(answer: &Answer, o: &Options) -> String {
    let head = format!("The bridge did not process Halo's webhook ({}).", answer.status);
    let body = match answer.status.as_u16() {
        401 => format!(
            "It rejected the callback secret ({}): the X-Halo-Secret sent ({}) is not the bridge's \
             HALO_WEBHOOK_SECRET.\nPass --secret or export HALO_WEBHOOK_SECRET with the value scripts/run-local gave \
             the bridge.",
            answer.error_text(),
            o.secret_origin
        ),
        400 => format!("It refused the payload: {}.", answer.error_text()),
        _ => answer.explain_common("halo-webhook"),
    };
    format!("{head}\n{body}")
}

/// Prints every comment and close the sandbox ContraForce holds for the incident.
async fn show_cf(http: &reqwest::Client, cf_url: &str, incident: &str) {
    let all = match get_json(http, &format!("{cf_url}/_sandbox/incidents")).await {
        Ok(v) => v,
        Err(why) => {
            say!("(what reached ContraForce is read from the sandbox ContraForce at {cf_url}: {why})");
            return;
        }
    };
    say!();
    say!("What reached the sandbox ContraForce for incident {incident}:");
    let Some(entry) = all.get(incident) else {
        say!("  nothing yet");
        return;
    };
    let comments = entry.get("comments").and_then(Value::as_array).cloned().unwrap_or_default();
    let workspace = |v: &Value| text(v.get("workspace_id"));
    for (i, c) in comments.iter().enumerate() {
        say!("  comment {}  {}", i + 1, indent_rest(&text(c.get("content")), 13));
        say!("             (workspace {})", workspace(c));
    }
    let closes = entry.get("status_changes").and_then(Value::as_array).cloned().unwrap_or_default();
    for s in &closes {
        say!(
            "  close      status {}, classification {} ({})",
            text(s.get("status")),
            text(s.get("classification")),
            text(s.get("classificationReason"))
        );
        say!("             (workspace {})", workspace(s));
        if let Some(comment) = s.get("comment").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            say!("             {}", indent_rest(comment, 13));
        }
    }
    if comments.is_empty() && closes.is_empty() {
        say!("  nothing yet");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_ticket_with_a_reference_is_picked() {
        let tickets = vec![
            json!({"id": 1001, "supplier_reference": "cf|s|a"}),
            json!({"id": 1002, "supplier_reference": "cf|s|b"}),
            json!({"id": 1003}),
        ];
        assert_eq!(pick_ticket(&tickets, None).unwrap()["id"], 1002);
        assert_eq!(pick_ticket(&tickets, Some(1003)).unwrap()["id"], 1003);
        assert!(pick_ticket(&tickets, Some(7)).is_err());
        assert!(pick_ticket(&[json!({"id": 1})], None).unwrap_err().contains("demo-incident"));
    }

    #[test]
    fn answers_are_put_in_words() {
        let body = json!({"status": "processed", "actionsForwarded": 2, "closed": true});
        assert_eq!(describe_answer(&body, true), "2 notes forwarded, incident closed");
        let body = json!({"status": "processed", "actionsForwarded": 1, "closed": false});
        assert_eq!(describe_answer(&body, false), "1 note forwarded, the incident stays open");
        let body = json!({"status": "ignored", "reason": "not a CF-linked ticket"});
        assert_eq!(describe_answer(&body, true), "ignored the webhook: not a CF-linked ticket");
    }

    #[test]
    fn notes_are_sent_as_escaped_html() {
        assert_eq!(html_escape("a < b & \"c\""), "a &lt; b &amp; &quot;c&quot;");
    }
}
