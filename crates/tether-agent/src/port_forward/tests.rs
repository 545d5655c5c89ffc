//! The table driven through its channels against real loopback sockets.

use std::time::Duration;

use tether_proto::{
    port_forward::{ADVERTISED_WINDOW_BYTES, MAX_CHUNK, Target, VERSION_1_CHUNK, WINDOW_BYTES},
    version,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, UdpSocket},
    time::timeout,
};

use super::*;

const SID: &str = "s1";

struct Harness {
    forwards: PortForwards,
    from_agent: mpsc::Receiver<Envelope>,
    version: u32,
}

impl Harness {
    fn new(allow: &[&str], max_connections: usize, version: u32) -> Harness {
        let config = PortForwardConfig {
            enabled: true,
            allow: allow.iter().map(|rule| rule.to_string()).collect(),
            max_connections,
            idle_timeout_secs: 600,
        };
        let (outbound, from_agent) = mpsc::channel(1024);
        Harness {
            forwards: PortForwards::new(&config, outbound),
            from_agent,
            version,
        }
    }

    async fn send(&mut self, message: PortForward) {
        let envelope = message.to_envelope(SID);
        let body = envelope.body.clone();
        self.forwards
            .dispatch(&envelope, body, self.version)
            .await
            .unwrap();
    }

    async fn open(&mut self, id: &str, host: &str, port: u16, transport: Transport) {
        self.open_with_window(id, host, port, transport, None).await;
    }

    /// Opens a connection whose `new` names `window` (None: an operator side from before windows
    /// were named).
    async fn open_with_window(
        &mut self,
        id: &str,
        host: &str,
        port: u16,
        transport: Transport,
        window: Option<u32>,
    ) {
        let target = Target {
            host: host.into(),
            port,
            transport,
        };
        self.send(PortForward::New {
            connection_id: id.into(),
            target: Some(target),
            window,
        })
        .await;
    }

    async fn receive(&mut self) -> PortForward {
        let envelope = timeout(Duration::from_secs(10), self.from_agent.recv())
            .await
            .expect("a message from the agent")
            .expect("the channel is open");
        assert_eq!(envelope.sid, SID);
        PortForward::from_envelope(&envelope).unwrap()
    }

    async fn nothing_more(&mut self) {
        let more = timeout(Duration::from_millis(200), self.from_agent.recv()).await;
        assert!(more.is_err(), "unexpected {more:?}");
    }

    async fn expect_error(&mut self, code: i64, text: &str) {
        match self.receive().await {
            PortForward::Error { body, .. } => {
                assert_eq!(body.code, Some(code), "{}", body.err);
                assert!(body.err.contains(text), "{}", body.err);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn expect_opened(&mut self, id: &str) {
        // A Tether agent names the window it takes; a version-1 session knows no windows.
        let window = (self.version >= version::TETHER).then_some(ADVERTISED_WINDOW_BYTES as u32);
        let opened = PortForward::New {
            connection_id: id.into(),
            target: None,
            window,
        };
        assert_eq!(self.receive().await, opened);
    }
}

fn forward(id: &str, data: &[u8]) -> PortForward {
    PortForward::Forward {
        connection_id: id.into(),
        data: data.to_vec(),
    }
}

fn ack(id: &str) -> PortForward {
    PortForward::Ack {
        connection_id: id.into(),
    }
}

fn stop(id: &str) -> PortForward {
    PortForward::Stop {
        connection_id: id.into(),
    }
}

async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn tcp_round_trip_with_version_1_flow_control() {
    let port = echo_server().await;
    let mut hub = Harness::new(&["127.0.0.0/8"], 4, version::MENDER);
    hub.open("c1", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_opened("c1").await;

    hub.send(forward("c1", b"hello")).await;
    let mut replies = vec![hub.receive().await, hub.receive().await];
    replies.sort_by_key(|message| message.typ());
    assert_eq!(replies, [ack("c1"), forward("c1", b"hello")]);

    // 10000 bytes come back 4096 at most at a time, each only after the previous was acked.
    hub.send(ack("c1")).await;
    let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    hub.send(forward("c1", &payload)).await;
    let mut echoed = Vec::new();
    let mut acked = false;
    while echoed.len() < payload.len() {
        match hub.receive().await {
            PortForward::Forward { data, .. } => {
                assert!(data.len() <= VERSION_1_CHUNK);
                echoed.extend_from_slice(&data);
                hub.nothing_more_than_ack(&mut acked).await;
                hub.send(ack("c1")).await;
            }
            PortForward::Ack { .. } => acked = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, payload);

    hub.send(stop("c1")).await;
    // The echo of our stop (an ack may still precede it).
    loop {
        match hub.receive().await {
            PortForward::Stop { connection_id } => break assert_eq!(connection_id, "c1"),
            PortForward::Ack { .. } if !acked => acked = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    hub.nothing_more().await;
}

/// The CLI sends a connection's first bytes right behind its `new`, without waiting for the
/// answer: they are written to the target once it is dialled, answered after the `new`.
#[tokio::test]
async fn bytes_sent_before_the_answer_reach_the_target_after_the_dial() {
    let port = echo_server().await;
    let mut hub = Harness::new(&["127.0.0.0/8"], 4, version::TETHER);
    hub.open("early", "127.0.0.1", port, Transport::Tcp).await;
    hub.send(forward("early", b"first bytes")).await;
    hub.expect_opened("early").await;
    let mut replies = vec![hub.receive().await, hub.receive().await];
    replies.sort_by_key(|message| message.typ());
    assert_eq!(replies, [ack("early"), forward("early", b"first bytes")]);
}

impl Harness {
    /// In version 1 nothing but the ack of our own forward may arrive while a forward of the
    /// agent's is unacknowledged.
    async fn nothing_more_than_ack(&mut self, acked: &mut bool) {
        if let Ok(Some(envelope)) = timeout(Duration::from_millis(100), self.from_agent.recv()).await {
            let message = PortForward::from_envelope(&envelope).unwrap();
            assert!(!*acked && message == ack("c1"), "unexpected {message:?}");
            *acked = true;
        }
    }
}

#[tokio::test]
async fn version_2_keeps_a_window_of_unacknowledged_bytes() {
    keeps_to_window(None, WINDOW_BYTES).await;
}

#[tokio::test]
async fn version_2_keeps_to_the_window_the_operator_named() {
    keeps_to_window(Some(2 << 20), 2 << 20).await;
    // Absurd windows are bounded: at least one chunk.
    keeps_to_window(Some(1), MAX_CHUNK).await;
}

/// The operator's `new` names `named`: the agent never has more than `expected` bytes
/// unacknowledged, and sends on as soon as they are acknowledged.
async fn keeps_to_window(named: Option<u32>, expected: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let total = 3 * expected;
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream.write_all(&vec![7u8; total]).await;
    });
    let mut hub = Harness::new(&["127.0.0.1"], 4, version::TETHER);
    hub.open_with_window("w", "127.0.0.1", port, Transport::Tcp, named)
        .await;
    hub.expect_opened("w").await;
    let mut received = 0;
    // Sizes of the forwards not acknowledged yet.
    let mut in_flight: Vec<usize> = Vec::new();
    let mut stopped = false;
    while !stopped {
        match timeout(Duration::from_millis(300), hub.from_agent.recv()).await {
            Ok(Some(envelope)) => match PortForward::from_envelope(&envelope).unwrap() {
                PortForward::Forward { data, .. } => {
                    assert!(data.len() <= MAX_CHUNK);
                    received += data.len();
                    in_flight.push(data.len());
                    assert!(in_flight.iter().sum::<usize>() <= expected);
                }
                PortForward::Stop { .. } => stopped = true,
                other => panic!("unexpected {other:?}"),
            },
            // Stalled: the window must be full; acknowledging it lets the rest come.
            _ => {
                let bytes: usize = in_flight.iter().sum();
                assert!(
                    bytes > expected.saturating_sub(MAX_CHUNK),
                    "stalled at {bytes} bytes"
                );
                for _ in in_flight.drain(..) {
                    hub.send(ack("w")).await;
                }
            }
        }
    }
    assert_eq!(received, total);
}

#[tokio::test]
async fn a_target_outside_the_rules_is_refused_and_never_dialled() {
    // 127.0.0.10 is on the loopback interface but not in 127.0.0.1/32.
    let listener = TcpListener::bind("127.0.0.10:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut hub = Harness::new(&["127.0.0.1/32"], 4, version::TETHER);
    hub.open("c", "127.0.0.10", port, Transport::Tcp).await;
    let text = format!("127.0.0.10:{port} is not an allowed target (port_forward.allow: 127.0.0.1/32)");
    hub.expect_error(403, &text).await;
    let accepted = timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the refused target was dialled");
    // A name that resolves to an allowed address is allowed through the address rule.
    let port = echo_server().await;
    hub.open("d", "localhost", port, Transport::Tcp).await;
    match hub.receive().await {
        PortForward::New { .. } => {}
        // Some systems resolve localhost to ::1 only.
        PortForward::Error { body, .. } => assert_eq!(body.code, Some(403), "{}", body.err),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_checks_before_dialling() {
    let port = echo_server().await;
    let (outbound, mut from_agent) = mpsc::channel(16);
    let mut disabled = PortForwards::new(&PortForwardConfig::default(), outbound);
    let target = Target {
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Tcp,
    };
    let new = PortForward::New {
        connection_id: "c".into(),
        target: Some(target),
        window: None,
    };
    let envelope = new.to_envelope(SID);
    disabled
        .dispatch(&envelope, envelope.body.clone(), 2)
        .await
        .unwrap();
    let envelope = from_agent.recv().await.unwrap();
    let PortForward::Error { body, .. } = PortForward::from_envelope(&envelope).unwrap() else {
        panic!("expected an error");
    };
    assert_eq!(
        body.err,
        "port forwarding is disabled on this device (port_forward.enabled)"
    );
    assert_eq!(body.msgtype.as_deref(), Some("new"));

    let mut hub = Harness::new(&["127.0.0.1"], 1, version::TETHER);
    hub.open("a", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_opened("a").await;
    hub.open("a", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_error(409, "already open").await;
    hub.open("b", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_error(
        429,
        "too many forwarded connections: limit of 1 reached (port_forward.max_connections)",
    )
    .await;
    hub.send(forward("nope", b"x")).await;
    hub.expect_error(404, "unknown connection").await;
    // Closing the session frees the slot.
    hub.forwards.close_session(SID);
    hub.open("b", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_opened("b").await;
}

#[tokio::test]
async fn a_refused_dial_and_a_closing_target() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut hub = Harness::new(&["127.0.0.1"], 4, version::TETHER);
    hub.open("r", "127.0.0.1", closed_port, Transport::Tcp).await;
    hub.expect_error(502, "cannot connect to 127.0.0.1").await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"bye").await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    hub.open("e", "127.0.0.1", port, Transport::Tcp).await;
    hub.expect_opened("e").await;
    assert_eq!(hub.receive().await, forward("e", b"bye"));
    hub.send(ack("e")).await;
    // Our stop makes the target see end of input; it closes, and no second stop is sent.
    hub.send(stop("e")).await;
    assert_eq!(hub.receive().await, stop("e"));
    hub.nothing_more().await;
}

#[tokio::test]
async fn udp_datagrams_keep_their_boundaries() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buffer = vec![0; 65536];
        while let Ok((read, from)) = server.recv_from(&mut buffer).await {
            let _ = server.send_to(&buffer[..read], from).await;
        }
    });
    let mut hub = Harness::new(&["127.0.0.0/8"], 4, version::TETHER);
    hub.open("u", "127.0.0.1", port, Transport::Udp).await;
    hub.expect_opened("u").await;
    for datagram in [&b"one"[..], &b"two two"[..], &[9u8; 1000][..]] {
        hub.send(forward("u", datagram)).await;
        let mut replies = vec![hub.receive().await, hub.receive().await];
        replies.sort_by_key(|message| message.typ());
        assert_eq!(replies, [ack("u"), forward("u", datagram)]);
    }
    hub.send(stop("u")).await;
    assert_eq!(hub.receive().await, stop("u"));
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let port = echo_server().await;
    let (outbound, mut from_agent) = mpsc::channel(16);
    let config = PortForwardConfig {
        enabled: true,
        idle_timeout_secs: 1,
        ..PortForwardConfig::default()
    };
    let mut forwards = PortForwards::new(&config, outbound);
    let target = Target {
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Tcp,
    };
    let new = PortForward::New {
        connection_id: "i".into(),
        target: Some(target),
        window: None,
    };
    let envelope = new.to_envelope(SID);
    forwards
        .dispatch(&envelope, envelope.body.clone(), 2)
        .await
        .unwrap();
    let mut types = Vec::new();
    for _ in 0..2 {
        let envelope = timeout(Duration::from_secs(5), from_agent.recv())
            .await
            .unwrap()
            .unwrap();
        types.push(envelope.typ);
    }
    assert_eq!(types, ["new", "stop"]);
}
