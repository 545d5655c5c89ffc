//! Props that extend a kind (negotiated extensions, not part of the kind's fields) travel in
//! its extra props and come back as they were sent.

use super::{Decoder, Encoder};
use crate::port_forward::PortForward;

#[test]
fn a_port_forward_window_travels_as_an_extra_prop() {
    let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
    let new = PortForward::New {
        connection_id: "c1".into(),
        target: None,
        window: Some(4 << 20),
    };
    let frame = encoder.encode(&new.to_envelope("s")).unwrap();
    assert_eq!(frame[0], 0x22, "the port-forward `new` kind, not the generic one");
    let decoded = decoder.decode(&frame).unwrap();
    assert_eq!(PortForward::from_envelope(&decoded).unwrap(), new);
}
