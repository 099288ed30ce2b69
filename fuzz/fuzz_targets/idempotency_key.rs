//! Idempotency-Key validation: never panics; every accepted key obeys the documented rules
//! (16-255 visible ASCII characters by default).
#![no_main]
use libfuzzer_sys::fuzz_target;
use steadfast_idempotency::IdempotencyKey;

fuzz_target!(|raw: &str| {
    if let Ok(key) = IdempotencyKey::parse(raw) {
        let s = key.as_str();
        assert!((16..=255).contains(&s.len()), "accepted length {}", s.len());
        assert!(s.bytes().all(|b| b.is_ascii_graphic()), "accepted {s:?}");
        let _ = key.redacted();
    }
});
