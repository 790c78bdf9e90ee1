//! `sandbox send-incident` (`scripts/demo-incident`): sends a ContraForce `incident.created.v1` webhook to the
//! local bridge, signed exactly as ContraForce signs it, and says in words what the bridge did.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::sign::sign;
use super::{
    default_bridge_url, default_halo_url, default_secret, describe_send_error, failed, get_json, indent_rest, text,
    ticket_reference, trim_url, unix_now, uuid_v4, Answer, Args, CmdResult, Failure, DEV_CF_WEBHOOK_SECRET,
};

const USAGE: &str = "usage: sandbox send-incident [options]      (scripts/demo-incident)

Sends a ContraForce incident webhook to the bridge as ContraForce does: the raw file bytes as
the body, X-CF-Signature = sha256=HMAC-SHA256(secret, \"{timestamp}.\" + body), X-CF-Timestamp,
a fresh X-CF-Event-Id and X-CF-Schema: incident.created.v1. Then says what the bridge did and,
from the sandbox Halo, what the ticket looks like.

  --file PATH          the event (default $SANDBOX_INCIDENT_FILE, else tests/fixtures/incident.json:
                       the README's sample incident #1234 'Impossible travel')
  --bridge-url URL     the bridge (default $BRIDGE_URL, else http://127.0.0.1:$BRIDGE_PORT, port 7071)
  --secret SECRET      the signing secret (default $CF_WEBHOOK_SECRET, else local-cf-webhook-secret)
  --halo-url URL       the sandbox Halo, to show the ticket (default $SANDBOX_HALO_URL, else
                       http://127.0.0.1:$SANDBOX_HALO_PORT, port 7081)
  --event-id ID        the X-CF-Event-Id (default a fresh one; reuse one to see a duplicate)
  --new-incident       give the incident a fresh id and number (a second ticket instead of a note)
  --account-id ID      send it as an incident of this ContraForce account (data.accountId)
  --account-name NAME  ... and with this account name (data.accountName), for routing by name

Exits 0 when the bridge answered 2xx, 1 otherwise.";

struct Options {
    file: PathBuf,
    bridge_url: String,
    secret: String,
    secret_origin: String,
    halo_url: String,
    event_id: Option<String>,
    new_incident: bool,
    account_id: Option<String>,
    account_name: Option<String>,
}

fn parse(mut args: Args) -> Result<Options, Failure> {
    args.usage(USAGE);
    let (secret, secret_origin) = default_secret("CF_WEBHOOK_SECRET", DEV_CF_WEBHOOK_SECRET);
    let mut o = Options {
        file: std::env::var_os("SANDBOX_INCIDENT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tests/fixtures/incident.json")),
        bridge_url: default_bridge_url(),
        secret,
        secret_origin,
        halo_url: default_halo_url(),
        event_id: None,
        new_incident: false,
        account_id: None,
        account_name: None,
    };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--file" => o.file = PathBuf::from(args.value(&name)?),
            "--bridge-url" => o.bridge_url = args.value(&name)?,
            "--secret" => {
                o.secret = args.value(&name)?;
                o.secret_origin = "--secret".into();
            }
            "--halo-url" => o.halo_url = args.value(&name)?,
            "--event-id" => o.event_id = Some(args.value(&name)?),
            "--new-incident" => o.new_incident = true,
            "--account-id" => o.account_id = Some(args.value(&name)?),
            "--account-name" => o.account_name = Some(args.value(&name)?),
            other => return Err(args.unknown(other)),
        }
    }
    o.bridge_url = trim_url(&o.bridge_url);
    o.halo_url = trim_url(&o.halo_url);
    Ok(o)
}

/// The incident's number, title and id, for the sentences.
struct Incident {
    number: String,
    title: String,
}

impl Incident {
    fn of(event: &Value) -> Incident {
        let data = event.get("data").cloned().unwrap_or(Value::Null);
        Incident { number: text(data.get("incidentNumber")), title: text(data.get("title")) }
    }

    fn name(&self) -> String {
        format!("ContraForce incident #{} '{}'", self.number, self.title)
    }
}

/// What the bridge made of the incident: its answer's `status`, and the ticket as the sandbox Halo shows it.
pub struct Sent {
    /// The incident's id (`data.incidentId`) as sent.
    pub incident_id: String,
    /// `created`, `updated`, `duplicate`, `queued`, ...
    pub status: String,
    /// The ticket, when the bridge named one and the sandbox Halo has it.
    pub ticket: Option<Value>,
}

pub async fn run(args: Args) -> CmdResult {
    send(args, true).await.map(drop)
}

/// Sends the incident and says what happened (`run`, and the routing demo); `hint`: end with what to try next.
pub async fn send(args: Args, hint: bool) -> Result<Sent, Failure> {
    let o = parse(args)?;
    let mut raw = std::fs::read(&o.file).map_err(|e| {
        failed(format!(
            "Cannot read the incident {}: {e}\n(run from the repository root, or pass --file)",
            o.file.display()
        ))
    })?;
    let mut event: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let fresh_id = uuid_v4();
    let changes = [
        o.new_incident.then(|| ("incidentId", json!(fresh_id))),
        o.new_incident
            .then(|| ("incidentNumber", json!(10_000 + u64::from_str_radix(&fresh_id[..8], 16).unwrap_or(0) % 90_000))),
        o.account_id.as_ref().map(|id| ("accountId", json!(id))),
        o.account_name.as_ref().map(|name| ("accountName", json!(name))),
    ];
    if changes.iter().any(Option::is_some) {
        let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) else {
            return Err(failed(format!("{} has no `data` object to change", o.file.display())));
        };
        for (field, value) in changes.into_iter().flatten() {
            data.insert(field.into(), value);
        }
        raw = serde_json::to_vec_pretty(&event).expect("a JSON value serializes");
    }
    let incident_id = text(event.get("data").and_then(|d| d.get("incidentId")));
    let incident = Incident::of(&event);
    let event_id = o.event_id.clone().unwrap_or_else(|| format!("demo-{}", uuid_v4()));
    let timestamp = unix_now();
    let signature = sign(o.secret.as_bytes(), timestamp, &raw);
    let url = format!("{}/api/cf-webhook", o.bridge_url);

    say!("Sending {} ({}) to {url}", incident.name(), o.file.display());
    say!("  X-CF-Event-Id {event_id}, signed with {}", o.secret_origin);
    say!();

    let http = super::http();
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-cf-event-id", &event_id)
        .header("x-cf-timestamp", timestamp.to_string())
        .header("x-cf-signature", &signature)
        .header("x-cf-schema", "incident.created.v1")
        .body(raw)
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

    let status = answer.body.get("status").and_then(Value::as_str).unwrap_or("");
    let ticket_id = answer.body.get("ticketId").and_then(Value::as_i64);
    let ticket = match ticket_id {
        Some(id) => sandbox_ticket(&http, &o.halo_url, id).await,
        None => Err(String::new()),
    };
    let where_ = if ticket.is_ok() { "(sandbox Halo)" } else { "(Halo)" };
    let n = ticket_id.map(|id| id.to_string()).unwrap_or_else(|| "?".into());
    match status {
        "created" => say!("{} → Halo ticket #{n} created {where_}", incident.name()),
        "updated" => say!(
            "{} → Halo ticket #{n} updated {where_}: the incident already has this ticket, so the bridge added a \
             private note for the new event (--new-incident makes a second ticket)",
            incident.name()
        ),
        "duplicate" => say!(
            "{} → already delivered: event {event_id} is a duplicate, Halo ticket #{n} was not touched",
            incident.name()
        ),
        "test" => {
            say!("{} → a test delivery: the bridge checked the signature and did nothing else", incident.name())
        }
        "ignored" => say!("{} → ignored by the bridge: {}", incident.name(), text(answer.body.get("reason"))),
        "queued" => say!(
            "{} → queued: the bridge could not finish it now (is Halo down?), so it recorded the work ({}) and put it \
             on its queue; the work-items queue trigger retries it until the ticket exists",
            incident.name(),
            text(answer.body.get("workId"))
        ),
        other => say!("{} → the bridge answered {} {other:?}: {}", incident.name(), answer.status, answer.raw),
    }
    match &ticket {
        Ok(t) => {
            say!("  summary    {}", text(t.get("summary")));
            say!("  priority   {}", text(t.get("priority_id")));
            match ticket_reference(t) {
                Some((reference, field)) => say!("  reference  {reference}  (in {field})"),
                None => say!("  reference  - (no cf| reference on the ticket)"),
            }
            let site = t.get("site_id").map(|site| format!(" (site {site})")).unwrap_or_default();
            say!(
                "  client     {}{site}, ticket type {}, status {}",
                text(t.get("client_id")),
                text(t.get("tickettype_id")),
                text(t.get("status_name"))
            );
            if let Some(notes) = t.get("actions").and_then(Value::as_array) {
                let private: Vec<&Value> =
                    notes.iter().filter(|a| a.get("hiddenfromuser").and_then(Value::as_bool) == Some(true)).collect();
                if let Some(last) = private.last().filter(|_| status == "updated") {
                    say!("  note       {}", indent_rest(&text(last.get("note")), 13));
                }
            }
            if hint {
                say!();
                say!("Next: scripts/demo-halo-note (an agent answers on ticket #{n} and closes it)");
            }
        }
        Err(why) if ticket_id.is_some() && !why.is_empty() => {
            say!("  (the ticket's details come from the sandbox Halo at {}: {why})", o.halo_url);
        }
        Err(_) => {}
    }
    Ok(Sent { incident_id, status: status.to_string(), ticket: ticket.ok() })
}

/// The ticket as the sandbox Halo's admin endpoint shows it.
async fn sandbox_ticket(http: &reqwest::Client, halo_url: &str, id: i64) -> Result<Value, String> {
    let list = get_json(http, &format!("{halo_url}/_sandbox/tickets")).await?;
    list.as_array()
        .and_then(|l| l.iter().find(|t| t.get("id").and_then(Value::as_i64) == Some(id)).cloned())
        .ok_or_else(|| format!("it has no ticket #{id}: is the bridge using a real Halo?"))
}

fn explain_failure(answer: &Answer, o: &Options) -> String {
    let head = format!("The bridge did not take the incident ({}).", answer.status);
    let body = match answer.status.as_u16() {
        401 => format!(
            "It rejected the signature ({}): the secret used to sign ({}) is not the bridge's \
             CF_WEBHOOK_SECRET (or the clock is off by more than CF_MAX_SKEW_SECONDS).\nPass --secret or export \
             CF_WEBHOOK_SECRET with the value scripts/run-local gave the bridge.",
            answer.error_text(),
            o.secret_origin
        ),
        400 => format!("It refused the event as malformed: {}.\nCheck {}.", answer.error_text(), o.file.display()),
        413 => "The event is larger than 1 MiB.".to_string(),
        _ => answer.explain_common("cf-webhook"),
    };
    format!("{head}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            retry_after: Some("2".into()),
            raw: body.to_string(),
            body,
        }
    }

    fn options() -> Options {
        Options {
            file: PathBuf::from("tests/fixtures/incident.json"),
            bridge_url: "http://127.0.0.1:7071".into(),
            secret: "s".into(),
            secret_origin: "--secret".into(),
            halo_url: "http://127.0.0.1:7081".into(),
            event_id: None,
            new_incident: false,
            account_id: None,
            account_name: None,
        }
    }

    #[test]
    fn failures_are_explained_in_words() {
        let o = options();
        let text = explain_failure(&answer(401, json!({"error": "invalid signature"})), &o);
        assert!(text.contains("rejected the signature") && text.contains("--secret"), "{text}");
        let text = explain_failure(
            &answer(
                503,
                json!({"error": "cf-webhook is not configured", "problems": ["HALO_DEFAULT_CLIENT_ID is not set"]}),
            ),
            &o,
        );
        assert!(text.contains("not configured") && text.contains("  - HALO_DEFAULT_CLIENT_ID is not set"), "{text}");
        let text = explain_failure(&answer(503, json!({"error": "Halo: timed out"})), &o);
        assert!(text.contains("retry after 2 s") && text.contains("Halo: timed out"), "{text}");
        let text = explain_failure(&answer(400, json!({"error": "missing or invalid field `data.title`"})), &o);
        assert!(text.contains("data.title"), "{text}");
    }

    #[test]
    fn the_incident_is_named_by_number_and_title() {
        let event = json!({"data": {"incidentNumber": 1234, "title": "Impossible travel", "incidentId": "x"}});
        assert_eq!(Incident::of(&event).name(), "ContraForce incident #1234 'Impossible travel'");
    }
}
