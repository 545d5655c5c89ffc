//! Watching a live terminal session served by another replica: the watcher's replica asks every
//! replica on `tether.watch.request`; the one recording the session answers on the watcher's
//! inbox with the screen, then the live output, until the session ends or the watcher leaves
//! (`<inbox>.stop`). Like a local watcher, a remote one that falls behind skips ahead.
//!
//! Watchers coming and going are told to the watched terminal's user: the watcher's replica
//! publishes a [`WatchNotice`] on `tether.watch.notice` (JSON), and every replica hands it to
//! its user legs (only the one of that session says anything). An older replica ignores the
//! subject: its users are not told.

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::sync::broadcast;

use super::bus::Bus;
use crate::{
    relay::recording::LiveEvent, relay::recording::LiveSessions, relay::recording::Snapshot,
    relay::recording::WatchNotice,
};

const NOTICE_SUBJECT: &str = "tether.watch.notice";

const SNAPSHOT: u8 = 1;
const OUTPUT: u8 = 2;
const RESIZE: u8 = 3;
const END: u8 = 4;
const ABSENT: u8 = 5;

/// Events buffered for a remote watcher before it skips ahead.
const WATCH_DEPTH: usize = 256;

fn size_bytes(width: u16, height: u16) -> [u8; 4] {
    let [w0, w1] = width.to_be_bytes();
    let [h0, h1] = height.to_be_bytes();
    [w0, w1, h0, h1]
}

fn parse_size(bytes: &[u8]) -> Option<(u16, u16)> {
    let size: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some((
        u16::from_be_bytes([size[0], size[1]]),
        u16::from_be_bytes([size[2], size[3]]),
    ))
}

/// Answers watch requests for the sessions this replica records.
pub async fn serve(bus: Arc<Bus>, live: Arc<LiveSessions>) -> anyhow::Result<()> {
    let mut requests = bus.client.subscribe("tether.watch.request").await?;
    let mut notices = bus.client.subscribe(NOTICE_SUBJECT).await?;
    let told = live.clone();
    tokio::spawn(async move {
        while let Some(message) = notices.next().await {
            match serde_json::from_slice::<WatchNotice>(&message.payload) {
                Ok(notice) => told.announce(notice),
                Err(error) => tracing::warn!("NATS: malformed watch notice ignored: {error}"),
            }
        }
    });
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else { continue };
            let sid = String::from_utf8_lossy(&request.payload).into_owned();
            let Some(snapshot) = live.watch(&sid).await else {
                let mut absent = vec![ABSENT];
                absent.extend_from_slice(bus.replica.as_bytes());
                let _ = bus.client.publish(reply, absent.into()).await;
                continue;
            };
            tokio::spawn(stream_session(bus.clone(), reply.to_string(), snapshot));
        }
    });
    Ok(())
}

async fn stream_session(bus: Arc<Bus>, inbox: String, snapshot: Snapshot) {
    let Ok(mut stop) = bus.client.subscribe(format!("{inbox}.stop")).await else {
        return;
    };
    let mut first = vec![SNAPSHOT];
    first.extend_from_slice(&size_bytes(snapshot.width, snapshot.height));
    first.extend_from_slice(&snapshot.screen);
    if bus.client.publish(inbox.clone(), first.into()).await.is_err() {
        return;
    }
    let mut events = snapshot.events;
    loop {
        let message = tokio::select! {
            _ = stop.next() => return,
            event = events.recv() => match event {
                Ok(LiveEvent::Output(data)) => {
                    let mut message = vec![OUTPUT];
                    message.extend_from_slice(&data);
                    message
                }
                Ok(LiveEvent::Resize(width, height)) => {
                    let mut message = vec![RESIZE];
                    message.extend_from_slice(&size_bytes(width, height));
                    message
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => vec![END],
            },
        };
        let end = message[0] == END;
        if bus.client.publish(inbox.clone(), message.into()).await.is_err() || end {
            return;
        }
    }
}

/// Tells the replica serving a watched session (another one) that `notice.user` came or left.
pub async fn announce_remote(bus: &Bus, notice: &WatchNotice) {
    let payload = serde_json::to_vec(notice).unwrap_or_default();
    if let Err(error) = bus.client.publish(NOTICE_SUBJECT, payload.into()).await {
        tracing::warn!("NATS: cannot publish a watch notice: {error}");
    }
}

/// The snapshot of session `sid` recorded by another replica, with its live events; None when
/// no live replica records it.
pub async fn remote(bus: &Bus, sid: &str) -> Option<Snapshot> {
    let inbox = bus.client.new_inbox();
    let mut replies = bus.client.subscribe(inbox.clone()).await.ok()?;
    let mut waiting = bus.live_peers();
    let uncertain = bus.peers_uncertain();
    if waiting.is_empty() && !uncertain {
        return None;
    }
    bus.client
        .publish_with_reply(
            "tether.watch.request",
            inbox.clone(),
            sid.as_bytes().to_vec().into(),
        )
        .await
        .ok()?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let (width, height, screen) = loop {
        let message = tokio::time::timeout_at(deadline, replies.next()).await.ok()??;
        let (&tag, body) = message.payload.split_first()?;
        match tag {
            SNAPSHOT => {
                let (width, height) = parse_size(body)?;
                break (width, height, body[4..].to_vec());
            }
            ABSENT => {
                waiting.remove(String::from_utf8_lossy(body).as_ref());
                if waiting.is_empty() && !uncertain {
                    return None;
                }
            }
            _ => {}
        }
    };
    let (sender, events) = broadcast::channel(WATCH_DEPTH);
    let client = bus.client.clone();
    tokio::spawn(async move {
        while let Some(message) = replies.next().await {
            let Some((&tag, body)) = message.payload.split_first() else {
                continue;
            };
            let event = match tag {
                OUTPUT => LiveEvent::Output(Arc::new(body.to_vec())),
                RESIZE => match parse_size(body) {
                    Some((width, height)) => LiveEvent::Resize(width, height),
                    None => continue,
                },
                END => return,
                _ => continue,
            };
            if sender.send(event).is_err() {
                // The watcher left.
                let _ = client.publish(format!("{inbox}.stop"), Vec::new().into()).await;
                return;
            }
        }
    });
    Some(Snapshot {
        width,
        height,
        screen,
        events,
    })
}
