//! `X-Hub-Signature-256` parsing and verification on arbitrary headers and bodies: never
//! panics, and only the true signature verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use steadfast_webhook::signature::{Verifier, parse_header};

fuzz_target!(|input: (&[u8], &[u8])| {
    let (header, body) = input;
    let verifier = Verifier::new(b"fuzz-app-secret");
    let _ = parse_header(header);
    let genuine = verifier.sign(body);
    if verifier.verify(Some(header), body).is_ok() {
        // Accepted headers are the genuine one, up to hex case.
        assert_eq!(
            String::from_utf8_lossy(header).to_ascii_lowercase(),
            genuine.to_ascii_lowercase()
        );
    }
    assert!(verifier.verify(Some(genuine.as_bytes()), body).is_ok());
    assert!(verifier.verify(None, body).is_err());
});
