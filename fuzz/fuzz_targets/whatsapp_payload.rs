//! The WhatsApp payload parser on arbitrary bytes: never panics; what it accepts re-parses
//! the same way.
#![no_main]
use libfuzzer_sys::fuzz_target;
use steadfast_webhook::payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(delivery) = payload::parse(data) {
        // Parsing is a pure function of the bytes.
        let again = payload::parse(data).expect("accepted once, accepted twice");
        assert_eq!(format!("{delivery:?}"), format!("{again:?}"));
    }
});
