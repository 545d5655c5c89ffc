//! A fake stock device for tests of what needs a tether-agent: it accepts sessions in protocol
//! version 1 only, as a stock mender-connect does, answers pings, and must never be sent a
//! shell message (the CLI refuses version-2 work before asking).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tether_proto::{control::Control, protocol};

use crate::{FakeDevice, Received, block_on, receive, send_binary};

/// Serves `fake` (authenticated with `token`) on a thread of its own until `stop` is set.
pub fn stock_terminal_device(fake: FakeDevice, token: String, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        block_on(async move {
            let mut socket = fake.connect(&token).await.expect("the fake device connects");
            while !stop.load(Ordering::Relaxed) {
                let envelope = match receive(&mut socket, Duration::from_millis(500)).await {
                    Received::Message(envelope) => envelope,
                    Received::Nothing => continue,
                    _ => return,
                };
                assert_ne!(envelope.proto, protocol::SHELL, "no shell message may reach it");
                let reply = match Control::from_envelope(&envelope) {
                    Ok(Control::Open { .. }) if envelope.proto == protocol::CONTROL => Control::Accept {
                        version: 1,
                        protocols: vec![protocol::SHELL],
                    },
                    Ok(Control::Ping) if envelope.proto == protocol::CONTROL => Control::Pong,
                    _ => continue,
                };
                if send_binary(&mut socket, reply.to_envelope(&envelope.sid).encode())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    })
}
