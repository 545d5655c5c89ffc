//! Fuzzes the device-protocol decoder: any bytes must decode or fail cleanly, never panic, and
//! whatever decodes must re-encode to something that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::{Envelope, control::Control, shell::Shell};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else { return };
    let again = Envelope::decode(&envelope.encode()).expect("re-encoded message must decode");
    assert_eq!(again, envelope);
    let _ = Control::from_envelope(&envelope);
    let _ = Shell::from_envelope(&envelope);
});
