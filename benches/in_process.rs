//! In-process cost of one webhook's pure work (no I/O), with criterion.
//!
//! `cargo bench --bench in_process` (add a filter to run one group, e.g. `-- cf_webhook`). Under `cargo test
//! --all-targets` criterion runs each benchmark once as a smoke test.
//!
//! * `cf_webhook/*`: what `POST /api/cf-webhook` does for a typical ~2 KB `incident.created.v1` event before and
//!   around its I/O: verify the signature, parse the body once (`read_body`: JSON and the test flag), validate it (`envelope`), build the store keys, map the ticket
//!   (`details_html`, summary, maps) and serialize the `POST /Tickets` body; `route_work` is all of it in the
//!   route's order (the figure held against the 50 µs target).
//! * `halo_webhook/*/{1,50,500}`: the halo-webhook's pure work per ticket size: parse the `GET /Actions` answer,
//!   run the forwardable filter (html → text) and build the comments; `html_to_text` of one typical note.

mod common;

use cf_halo_bridge::app::App;
use cf_halo_bridge::cf::event;
use cf_halo_bridge::cf::signature::{self, SignatureHeaders};
use cf_halo_bridge::config::{CfWebhookConfig, ClientTarget, Config, Env, HaloWebhookConfig};
use cf_halo_bridge::directions::cf_webhook::mapping;
use cf_halo_bridge::directions::halo_webhook::{comment_for, forwardable};
use cf_halo_bridge::domain::{EventId, RefLocation};
use cf_halo_bridge::halo::model::{list_items, Action};
use cf_halo_bridge::halo::text::html_to_text;
use cf_halo_bridge::halo::webhook;
use cf_halo_bridge::secrets::SecretId;
use cf_halo_bridge::store::{event_key, incident_key};
use common::{Endpoints, CF_SECRET};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use std::hint::black_box;

const TS: i64 = 1_776_870_000;

fn config() -> Config {
    Config::from_env(&Env::from_pairs(Endpoints::offline().env())).expect("the bench configuration is valid")
}

struct Delivery {
    body: Vec<u8>,
    signature: String,
    timestamp: String,
    event_id: &'static str,
}

fn typical_delivery() -> Delivery {
    let body = serde_json::to_vec(&common::typical_event("sentinel-incident-0b6f1c8e-3c1e-4a4e", 48213)).unwrap();
    Delivery {
        signature: signature::sign(CF_SECRET.as_bytes(), TS, &body),
        timestamp: TS.to_string(),
        body,
        event_id: "evt-7f3a9c2e-5b1d-4e8f-a0c6-2d4b6e8f0a1c",
    }
}

/// The client a mapped account routes to (the routing's map step; the name step is I/O).
fn client(out: &CfWebhookConfig, incident: &event::Incident) -> ClientTarget {
    out.mapped_client(incident.account_id.as_deref())
        .unwrap_or(ClientTarget { client_id: out.default_client_id, site_id: None })
}

/// Everything the cf-webhook route does for one delivery that is not I/O, in the route's order.
fn route_work(d: &Delivery, keys: &[&[u8]], out: &CfWebhookConfig, location: RefLocation) -> usize {
    let event_id = EventId::parse(d.event_id).unwrap();
    let headers = SignatureHeaders { signature: Some(&d.signature), timestamp: Some(&d.timestamp) };
    signature::verify(keys, headers, &d.body, TS, out.max_skew).unwrap();
    let body = event::Body::read(&d.body);
    assert!(!body.is_test());
    let incident = body.envelope().unwrap().incident;
    let ev = event_key(&incident.reference, &event_id);
    let inc = incident_key(&incident.reference);
    let ticket = mapping::new_ticket(&incident, out, location, client(out, &incident));
    let wire = serde_json::to_vec(&Value::Array(vec![ticket])).unwrap();
    wire.len() + ev.row.len() + inc.partition.len()
}

fn cf_webhook(c: &mut Criterion) {
    let config = config();
    let out = config.cf_webhook.ready().expect("cf-webhook configured").clone();
    let location = config.halo.ready().expect("halo configured").reference;
    let d = typical_delivery();
    println!("typical event: {} bytes", d.body.len());
    let keys: [&[u8]; 1] = [CF_SECRET.as_bytes()];
    let envelope = event::parse(&d.body).unwrap();
    let incident = envelope.incident.clone();
    let reference = incident.reference.clone();
    let event_id = EventId::parse(d.event_id).unwrap();

    let mut g = c.benchmark_group("cf_webhook");
    g.throughput(Throughput::Bytes(d.body.len() as u64));
    g.bench_function("verify_signature", |b| {
        b.iter(|| {
            let h = SignatureHeaders { signature: Some(&d.signature), timestamp: Some(&d.timestamp) };
            signature::verify(black_box(&keys), h, black_box(&d.body), TS, out.max_skew).unwrap()
        })
    });
    g.bench_function("read_body", |b| b.iter(|| event::Body::read(black_box(&d.body)).is_test()));
    let body = event::Body::read(&d.body);
    g.bench_function("envelope", |b| b.iter(|| black_box(&body).envelope().unwrap()));
    g.bench_function("store_keys", |b| {
        b.iter(|| (event_key(black_box(&reference), &event_id), incident_key(black_box(&reference))))
    });
    g.bench_function("details_html", |b| b.iter(|| mapping::details_html(black_box(&incident))));
    g.bench_function("new_ticket", |b| {
        b.iter(|| mapping::new_ticket(black_box(&incident), &out, location, client(&out, &incident)))
    });
    let ticket = mapping::new_ticket(&incident, &out, location, client(&out, &incident));
    g.bench_function("ticket_body_to_json", |b| {
        b.iter(|| serde_json::to_vec(&Value::Array(vec![black_box(&ticket).clone()])).unwrap())
    });
    g.bench_function("route_work", |b| b.iter(|| route_work(black_box(&d), &keys, &out, location)));
    g.finish();

    // Per-request overhead around the work: the direction check and the accepted secrets (called twice a request).
    let app = App::new(config.clone()).expect("app builds offline");
    let mut g = c.benchmark_group("cf_webhook_overhead");
    g.bench_function("app_direction_check", |b| {
        b.iter(|| black_box(&app).cf_webhook(std::time::Duration::from_secs(5)).is_ok())
    });
    g.bench_function("accepted_secrets", |b| b.iter(|| black_box(&app).secrets.accepted(SecretId::CfWebhook).len()));
    g.finish();
}

fn halo_webhook_config() -> HaloWebhookConfig {
    config().halo_webhook.ready().expect("halo-webhook configured").clone()
}

/// The halo-webhook's pure work for a ticket answer: parse it, decide each action, build the comments.
fn forward_all(actions: &[Action], cfg: &HaloWebhookConfig) -> usize {
    let creation = actions.first().map(|a| a.id);
    actions
        .iter()
        .filter_map(|a| forwardable(a, cfg, Some(a.id) == creation).ok().map(|text| comment_for(1001, a, &text)))
        .map(|c| c.len())
        .sum()
}

fn halo_webhook(c: &mut Criterion) {
    let cfg = halo_webhook_config();
    let note = common::typical_note_html(1);
    println!("typical note: {} bytes of HTML", note.len());
    let mut g = c.benchmark_group("halo_webhook");
    g.bench_function("html_to_text", |b| b.iter(|| html_to_text(black_box(&note))));
    let payload: Value = serde_json::json!({"id": "5b0c7c8e-1f2a-4c1e-9d7b-3a2b1c0d9e8f", "event": "Ticket Updated",
        "object_id": 1001, "ticket": {"id": 1001}});
    let payload_bytes = serde_json::to_vec(&payload).unwrap();
    g.bench_function("payload_ticket_id", |b| {
        b.iter(|| webhook::ticket_id(&serde_json::from_slice::<Value>(black_box(&payload_bytes)).unwrap()))
    });
    for n in [1usize, 50, 500] {
        let answer = serde_json::to_vec(&common::actions_answer(n)).unwrap();
        let (actions, _) = list_items::<Action>(&answer, "actions").unwrap();
        assert_eq!(actions.len(), n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("parse_actions", n), &answer, |b, answer| {
            b.iter(|| list_items::<Action>(black_box(answer), "actions").unwrap().0.len())
        });
        g.bench_with_input(BenchmarkId::new("forwardable_and_comments", n), &actions, |b, actions| {
            b.iter(|| forward_all(black_box(actions), &cfg))
        });
    }
    g.finish();
}

criterion_group!(benches, cf_webhook, halo_webhook);
criterion_main!(benches);
