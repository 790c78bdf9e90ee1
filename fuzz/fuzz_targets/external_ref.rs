//! `cf|source|incidentId`: whatever parses prints back as the trimmed input.
#![no_main]

use cf_halo_bridge::domain::ExternalRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(reference) = ExternalRef::parse(text) {
        assert_eq!(reference.to_string(), text.trim());
        assert!(!reference.source().contains('|'));
        let again = ExternalRef::new(reference.source(), reference.incident_id()).unwrap();
        assert_eq!(again, reference);
    }
});
