//! UDP mappings: each local peer address is one connection (its own `connection_id`), each
//! datagram one `forward`, boundaries preserved. No window: a peer whose queue is full loses
//! datagrams, as UDP would, rather than hold the others up. A peer quiet for a minute is
//! stopped and forgotten.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use tether_proto::{
    port_forward::{MAX_CHUNK, PortForward, VERSION_1_CHUNK},
    version,
};
use tokio::{
    net::UdpSocket,
    sync::mpsc::{self, error::TrySendError},
    time::{Instant, sleep_until},
};

use super::{Mapping, Shared, open_connection};

const IDLE: Duration = Duration::from_secs(60);
/// Datagrams waiting per peer (while the device opens the target, or the hub is slow).
const QUEUE: usize = 256;

pub async fn listen(socket: UdpSocket, mapping: Mapping, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buffer = vec![0; 65536];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!("receiving on the udp socket for {mapping}: {error}");
                continue;
            }
        };
        let datagram = buffer[..len].to_vec();
        let queue = match peers.get(&peer) {
            Some(queue) if !queue.is_closed() => queue,
            _ => {
                // Forget the peers whose task ended, then start one for this peer.
                peers.retain(|_, queue| !queue.is_closed());
                let (queue, datagrams) = mpsc::channel(QUEUE);
                tokio::spawn(forward_peer(
                    socket.clone(),
                    peer,
                    mapping.clone(),
                    shared.clone(),
                    datagrams,
                ));
                peers.entry(peer).insert_entry(queue).into_mut()
            }
        };
        match queue.try_send(datagram) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::debug!("dropping a datagram from {peer}: its queue is full");
            }
            // The peer's task just ended; the next datagram starts a new one.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// One local peer's connection through the device.
async fn forward_peer(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    mapping: Mapping,
    shared: Arc<Shared>,
    mut datagrams: mpsc::Receiver<Vec<u8>>,
) {
    let Some(link) = shared.link().await else {
        shared.log(format_args!(
            "dropping datagrams from {peer}: no session to the hub"
        ));
        return;
    };
    let id = shared.connection_id();
    let mut inbound = link.register(&id);
    if open_connection(&link, &shared, &id, &mapping, &mut inbound)
        .await
        .is_none()
    {
        link.unregister(&id);
        return;
    }
    shared.log(format_args!(
        "connection {id} from {peer} to {} (udp) opened",
        mapping.remote()
    ));
    let limit = if link.version >= version::TETHER {
        MAX_CHUNK
    } else {
        VERSION_1_CHUNK
    };
    let (mut sent, mut received) = (0u64, 0u64);
    let mut idle_deadline = Instant::now() + IDLE;
    let end = loop {
        tokio::select! {
            datagram = datagrams.recv() => {
                let Some(datagram) = datagram else { break "listener gone" };
                if datagram.len() > limit {
                    shared.log(format_args!(
                        "connection {id}: dropping a {}-byte datagram (at most {limit} fit in a message)",
                        datagram.len()
                    ));
                    continue;
                }
                sent += datagram.len() as u64;
                link.send(PortForward::Forward { connection_id: id.clone(), data: datagram });
                idle_deadline = Instant::now() + IDLE;
            }
            message = inbound.recv() => match message {
                None => break "session to the hub lost",
                Some(PortForward::Forward { data, .. }) => {
                    received += data.len() as u64;
                    if let Err(error) = socket.send_to(&data, peer).await {
                        tracing::debug!("sending a datagram to {peer}: {error}");
                    }
                    link.send(PortForward::Ack { connection_id: id.clone() });
                    idle_deadline = Instant::now() + IDLE;
                }
                Some(PortForward::Stop { .. }) => {
                    link.send(PortForward::Stop { connection_id: id.clone() });
                    break "closed by the device";
                }
                Some(PortForward::Error { body, .. }) => {
                    shared.log(format_args!("connection {id}: {}", body.err));
                    link.send(PortForward::Stop { connection_id: id.clone() });
                    break "device error";
                }
                Some(PortForward::Ack { .. } | PortForward::New { .. }) => {}
            },
            _ = sleep_until(idle_deadline) => {
                link.send(PortForward::Stop { connection_id: id.clone() });
                break "idle";
            }
        }
    };
    link.unregister(&id);
    shared.log(format_args!(
        "connection {id} from {peer} closed ({end}; sent {sent} bytes, received {received} bytes)"
    ));
}
