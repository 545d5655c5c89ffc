//! A fake stock device (mender-connect, protocol version 1) that forwards TCP connections: it
//! accepts sessions at version 1, dials whatever target a `new` names (no allow-list), and moves
//! bytes with version 1's flow control: at most 4 KiB per `forward`, one unacknowledged
//! `forward` in flight each way. What the operator's side does against that rule is recorded as
//! a violation, for the test to assert there are none.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use tether_net::WebSocket;
use tether_proto::{
    Envelope,
    control::Control,
    port_forward::{PortForward, VERSION_1_CHUNK},
    protocol,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{Cli, FakeDevice, Hub, block_on, send_binary};

/// A running fake stock device; stops when dropped.
pub struct StockForwarder {
    pub name: String,
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StockForwarder {
    /// Enrols a fake device on `hub`, has `cli` accept it, and waits until it is online.
    pub fn start(hub: &Hub, cli: &Cli) -> StockForwarder {
        let fake = FakeDevice::new(hub);
        fake.authenticate(None);
        cli.device_id_by_name(&fake.name);
        cli.run(&["devices", "accept", &fake.name]).ok();
        let token = fake.token(None);
        let name = fake.name.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let violations = violations.clone();
            std::thread::spawn(move || {
                block_on(async move {
                    let socket = fake.connect(&token).await.expect("the fake device connects");
                    serve(socket, &stop, &violations).await;
                })
            })
        };
        cli.wait_online(&name);
        StockForwarder {
            name,
            stop,
            violations,
            thread: Some(thread),
        }
    }

    /// Where the operator's side broke version 1's flow control, so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for StockForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a connection's task tells the session loop.
enum Event {
    /// Bytes from the target, to forward.
    Data(Vec<u8>),
    /// Written to the target: acknowledge the hub's forward.
    Written,
    /// The target closed (or failed): send `stop`.
    Closed,
}

/// What the session loop hands a connection's task.
enum ToTarget {
    Data(Vec<u8>),
    /// The hub's `ack` for our last forward.
    Ack,
    /// The hub's `stop`: shut the target's write side down.
    Stop,
}

struct Connection {
    to_target: mpsc::UnboundedSender<ToTarget>,
    /// Forwards from the hub not yet acknowledged (version 1 allows one).
    unacknowledged: usize,
}

type Key = (String, String);

async fn serve(mut socket: WebSocket, stop: &AtomicBool, violations: &Mutex<Vec<String>>) {
    let (events, mut incoming) = mpsc::unbounded_channel::<(Key, Event)>();
    let mut connections: HashMap<Key, Connection> = HashMap::new();
    let violation = |text: String| {
        if let Ok(mut list) = violations.lock() {
            list.push(text);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let reply = tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Binary(bytes))) => match Envelope::decode(&bytes) {
                    Ok(envelope) => from_hub(&envelope, &mut connections, &events, &violation),
                    Err(_) => None,
                },
                Some(Ok(_)) => None,
                None | Some(Err(_)) => return,
            },
            Some((key, event)) = incoming.recv() => {
                let (sid, connection_id) = key.clone();
                let message = match event {
                    Event::Data(data) => PortForward::Forward { connection_id, data },
                    Event::Written => {
                        if let Some(connection) = connections.get_mut(&key) {
                            connection.unacknowledged = connection.unacknowledged.saturating_sub(1);
                        }
                        PortForward::Ack { connection_id }
                    }
                    Event::Closed => {
                        connections.remove(&key);
                        PortForward::Stop { connection_id }
                    }
                };
                Some(message.to_envelope(&sid))
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => None,
        };
        if let Some(reply) = reply
            && send_binary(&mut socket, reply.encode()).await.is_err()
        {
            return;
        }
    }
}

/// Handles one message from the hub; returns the answer to send, if any.
fn from_hub(
    envelope: &Envelope,
    connections: &mut HashMap<Key, Connection>,
    events: &mpsc::UnboundedSender<(Key, Event)>,
    violation: &dyn Fn(String),
) -> Option<Envelope> {
    let sid = envelope.sid.clone();
    match envelope.proto {
        protocol::CONTROL => match Control::from_envelope(envelope) {
            Ok(Control::Open { .. }) => Some(
                Control::Accept {
                    version: 1,
                    protocols: vec![protocol::SHELL, protocol::PORT_FORWARD],
                }
                .to_envelope(&sid),
            ),
            Ok(Control::Ping) => Some(Control::Pong.to_envelope(&sid)),
            Ok(Control::Close) => {
                connections.retain(|(session, _), _| *session != sid);
                None
            }
            _ => None,
        },
        protocol::PORT_FORWARD => {
            let message = PortForward::from_envelope(envelope).ok()?;
            let key = (sid.clone(), message.connection_id().to_owned());
            match message {
                PortForward::New {
                    connection_id,
                    target: Some(target),
                    ..
                } => {
                    let (to_target, queue) = mpsc::unbounded_channel();
                    let address = format!("{}:{}", target.host, target.port);
                    tokio::spawn(relay(address, key.clone(), queue, events.clone()));
                    connections.insert(
                        key,
                        Connection {
                            to_target,
                            unacknowledged: 0,
                        },
                    );
                    // Answered at once, as the stock agent does before its dial completes.
                    Some(
                        PortForward::New {
                            connection_id,
                            target: None,
                            window: None,
                        }
                        .to_envelope(&sid),
                    )
                }
                PortForward::Forward { data, .. } => {
                    let connection = connections.get_mut(&key)?;
                    if data.len() > VERSION_1_CHUNK {
                        violation(format!("a {}-byte forward to a version-1 device", data.len()));
                    }
                    if connection.unacknowledged > 0 {
                        violation("a forward before the previous one was acknowledged".into());
                    }
                    connection.unacknowledged += 1;
                    let _ = connection.to_target.send(ToTarget::Data(data));
                    None
                }
                PortForward::Ack { .. } => {
                    let _ = connections.get(&key)?.to_target.send(ToTarget::Ack);
                    None
                }
                PortForward::Stop { .. } => {
                    let _ = connections.get(&key)?.to_target.send(ToTarget::Stop);
                    None
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// One connection: dials `address`, then writes the hub's data to it (reporting each write) and
/// reads it in 4 KiB pieces, each sent only once the previous one was acknowledged.
async fn relay(
    address: String,
    key: Key,
    mut queue: mpsc::UnboundedReceiver<ToTarget>,
    events: mpsc::UnboundedSender<(Key, Event)>,
) {
    let send = |event| {
        let _ = events.send((key.clone(), event));
    };
    let Ok(stream) = TcpStream::connect(&address).await else {
        send(Event::Closed);
        return;
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = vec![0u8; VERSION_1_CHUNK];
    let mut awaiting_ack = false;
    loop {
        tokio::select! {
            message = queue.recv() => match message {
                Some(ToTarget::Data(data)) => {
                    if writer.write_all(&data).await.is_err() {
                        break;
                    }
                    send(Event::Written);
                }
                Some(ToTarget::Ack) => awaiting_ack = false,
                Some(ToTarget::Stop) => {
                    let _ = writer.shutdown().await;
                }
                None => return,
            },
            read = reader.read(&mut buffer), if !awaiting_ack => match read {
                Ok(n) if n > 0 => {
                    send(Event::Data(buffer[..n].to_vec()));
                    awaiting_ack = true;
                }
                _ => break,
            },
        }
    }
    send(Event::Closed);
}
