//! Serving one connection over an in-memory WebSocket: keep-alive, silence, dispatch, shutdown.

use tether_proto::{control::Control, protocol::SHELL};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;
use crate::{args::Args, config::Config, identity, state::tests::TempDir};

struct Fixture {
    agent: Agent,
    hub: HubUrl,
    sessions: Sessions,
    outbound: mpsc::Receiver<Envelope>,
    /// Another handle on the outbound queue, as a shell task would hold.
    queue: mpsc::Sender<Envelope>,
    stop: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
    _dir: TempDir,
}

fn fixture(keepalive: Duration) -> Fixture {
    let dir = TempDir::new("connection");
    let args = Args {
        hubs: vec!["https://127.0.0.1:1".into()],
        data_dir: Some(dir.0.clone()),
        ..Args::default()
    };
    let mut settings = Settings::resolve(Config::default(), args).unwrap();
    settings.keepalive_interval = keepalive;
    let tls = tether_net::client_config(&Default::default()).unwrap();
    let key = identity::DeviceKey::from_seed(&[1; 32]);
    let pem = key.public_key_pem();
    let authenticator = Authenticator::new(key, pem, "{}".into(), None, tls.clone()).unwrap();
    let (queue, outbound) = mpsc::channel(OUTBOUND_QUEUE);
    let (stop, shutdown) = watch::channel(false);
    Fixture {
        hub: settings.hubs[0].clone(),
        sessions: Sessions::new(settings.terminal.clone(), queue.clone()),
        agent: Agent {
            settings,
            tls,
            authenticator,
            tokens: TokenStore::load(&dir.0),
        },
        outbound,
        queue,
        stop,
        shutdown,
        _dir: dir,
    }
}

impl Fixture {
    async fn serve(&mut self, socket: WebSocketStream<DuplexStream>) -> Outcome {
        let Fixture {
            agent,
            hub,
            sessions,
            outbound,
            shutdown,
            ..
        } = self;
        agent.serve(socket, hub, sessions, outbound, shutdown).await
    }
}

/// A connected pair: the device's end and the hub's.
async fn pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (device, hub) = tokio::io::duplex(64 * 1024);
    (
        WebSocketStream::from_raw_socket(device, Role::Client, None).await,
        WebSocketStream::from_raw_socket(hub, Role::Server, None).await,
    )
}

#[tokio::test]
async fn a_silent_hub_is_dropped_after_two_intervals() {
    let mut fixture = fixture(Duration::from_millis(200));
    // The hub end is never read, so it never answers the agent's pings.
    let (device, _hub) = pair().await;
    let started = Instant::now();
    let Outcome::Lost(reason) = fixture.serve(device).await else {
        panic!("not lost")
    };
    assert!(reason.starts_with("hub silent for"), "{reason}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_live_hub_is_pinged_served_and_closed_on_shutdown() {
    let mut fixture = fixture(Duration::from_millis(200));
    let (device, mut hub) = pair().await;
    // Left over from a previous connection: must not reach this one.
    fixture
        .queue
        .send(Envelope::new(SHELL, "shell", "old"))
        .await
        .unwrap();
    let hub_side = tokio::spawn(async move {
        let open = Control::Open { versions: vec![1, 2] };
        hub.send(Message::binary(open.to_envelope("s").encode()))
            .await
            .unwrap();
        let (mut pings, mut replies, mut closed) = (0, Vec::new(), false);
        // Reading also answers the agent's pings with pongs, which keeps it from going silent.
        while let Some(Ok(message)) = hub.next().await {
            match message {
                Message::Ping(_) => pings += 1,
                Message::Binary(frame) => replies.push(Envelope::decode(&frame).unwrap()),
                Message::Close(_) => closed = true,
                _ => {}
            }
        }
        (pings, replies, closed)
    });
    let stop = fixture.stop.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(1200)).await;
        stop.send(true).unwrap();
    });
    assert!(matches!(fixture.serve(device).await, Outcome::Shutdown));
    let (pings, replies, closed) = timeout(Duration::from_secs(5), hub_side).await.unwrap().unwrap();
    assert!(pings >= 3, "{pings} pings");
    assert_eq!(replies.len(), 3, "{replies:?}");
    // First the shells kept from earlier connections (none), then the device's inventory, then
    // the answer to `open`.
    assert_eq!(
        Control::from_envelope(&replies[0]).unwrap(),
        Control::Sessions { sids: vec![] }
    );
    let Ok(Control::Inventory(inventory)) = Control::from_envelope(&replies[1]) else {
        panic!("no inventory: {:?}", replies[1]);
    };
    assert_eq!(inventory.features, ["terminal"]);
    assert_eq!(inventory.versions, [1, 2, 3]);
    assert_eq!(
        Control::from_envelope(&replies[2]).unwrap(),
        Control::Accept {
            version: 2,
            protocols: vec![SHELL]
        }
    );
    assert!(closed, "no close frame");
}

#[tokio::test]
async fn a_hub_close_frame_ends_the_connection() {
    let mut fixture = fixture(Duration::from_secs(25));
    let (device, mut hub) = pair().await;
    hub.send(Message::Close(None)).await.unwrap();
    let Outcome::Lost(reason) = fixture.serve(device).await else {
        panic!("not lost")
    };
    assert!(reason.starts_with("the hub closed the connection"), "{reason}");
}
