//! The bridge's Table client against a real Azurite: what the claim protocol relies on from an entity group
//! transaction (all writes land or none, each refusal reported as the single write's would be).

use cf_halo_bridge::app::App;
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::store::{Key, StoreError, Write};
use sandbox::azurite::Azurite;
use serde_json::{json, Value};

fn entity(n: i64) -> Value {
    json!({ "N": n })
}

#[tokio::test]
async fn a_batch_lands_every_write_or_none_and_names_why() {
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let settings = [
        ("AzureWebJobsStorage", azurite.connection_string()),
        ("STATE_TABLE_NAME", "batches".to_string()),
        ("RECONCILE_SCHEDULE", "0 */5 * * * *".to_string()),
    ];
    let app = App::new(Config::from_env(&Env::from_pairs(settings)).expect("settings")).expect("app");
    let store = app.store.clone().expect("state storage");
    let key = |row: &str| Key { partition: "p".into(), row: row.into() };
    let n = |found: Option<cf_halo_bridge::store::Versioned<Value>>| found.map(|v| v.value["N"].clone());

    // Two inserts, one round trip: both land, each with its own ETag.
    let etags = store.batch("p", &[Write::insert(&key("a"), &entity(1)), Write::insert(&key("b"), &entity(2))]).await;
    let etags = etags.expect("a fresh batch lands");
    assert_eq!(etags.len(), 2);
    let a = store.get::<Value>(&key("a")).await.unwrap().unwrap();
    assert_eq!((a.value["N"].clone(), &a.etag), (json!(1), &etags[0]));

    // An insert of an existing row fails the whole batch as a conflict: the new row beside it is not written.
    let clash = [Write::insert(&key("c"), &entity(3)), Write::insert(&key("a"), &entity(9))];
    assert_eq!(store.batch("p", &clash).await.unwrap_err(), StoreError::Conflict);
    assert_eq!(n(store.get::<Value>(&key("c")).await.unwrap()), None, "nothing of a refused batch lands");
    assert_eq!(n(store.get::<Value>(&key("a")).await.unwrap()), Some(json!(1)));

    // A replace at a stale ETag fails it as changed, and the insert beside it does not land either.
    let b = store.get::<Value>(&key("b")).await.unwrap().unwrap();
    let stale = [Write::insert(&key("c"), &entity(3)), Write::replace(&key("b"), &entity(20), &etags[0])];
    assert_eq!(store.batch("p", &stale).await.unwrap_err(), StoreError::Changed);
    assert_eq!(n(store.get::<Value>(&key("c")).await.unwrap()), None);

    // A replace at the ETag held, with an insert: both land, and the replaced row's new ETag is the one answered.
    let held = [Write::replace(&key("b"), &entity(20), &b.etag), Write::insert(&key("c"), &entity(3))];
    let etags = store.batch("p", &held).await.expect("a batch at the ETags held lands");
    let b_now = store.get::<Value>(&key("b")).await.unwrap().unwrap();
    assert_eq!((b_now.value["N"].clone(), &b_now.etag), (json!(20), &etags[0]));
    assert_ne!(b_now.etag, b.etag);
    assert_eq!(n(store.get::<Value>(&key("c")).await.unwrap()), Some(json!(3)));

    // A replace of a row that is not there: not found.
    let gone = [Write::replace(&key("zz"), &entity(0), &b.etag)];
    assert_eq!(store.batch("p", &gone).await.unwrap_err(), StoreError::NotFound);
}
