//! The incident.created.v1 body parser and the test-flag probe: any bytes, no panic, and a parsed incident always
//! has the required fields and yields a valid reference.
#![no_main]

use cf_halo_bridge::cf::event;
use cf_halo_bridge::domain::{EventId, ExternalRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = event::is_test_body(data);
    if let Ok(envelope) = event::parse(data) {
        let i = &envelope.incident;
        assert!(!i.incident_id.is_empty() && !i.title.is_empty() && !i.source.is_empty());
        let reference = ExternalRef::new(&i.source, &i.incident_id).expect("a parsed incident has a valid reference");
        assert!(reference.to_string().len() <= data.len() + 3);
        let summary = cf_halo_bridge::halo::mapping::summary(i.incident_number, &i.title);
        assert!(summary.chars().count() <= cf_halo_bridge::halo::mapping::MAX_SUMMARY_CHARS);
        let _ = cf_halo_bridge::halo::mapping::details_html(i);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(id) = EventId::parse(text) {
            assert!(id.as_str().len() <= cf_halo_bridge::domain::MAX_EVENT_ID_LEN);
        }
    }
});
