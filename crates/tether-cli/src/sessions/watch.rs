//! `tether sessions watch SESSION`: a live session, read-only. The hub sends the screen, then
//! the session's output as it happens; nothing typed here is sent (q or Ctrl-C leaves).

use std::{io::IsTerminal, time::Duration};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use tether_net::{NetError, Proxy, connect_websocket};
use tether_proto::api::{
    WatchMessage,
    paths::{segment, session_watch_path},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::interval,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    api::HttpError,
    failure::{self, transport},
    hub::Authenticated,
    input::{Input, spawn_stdin_reader},
    output::{say, say_on_new_line, write_stdout},
    raw_mode::RawMode,
};

const MAX_MESSAGE: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Clears the screen and homes the cursor before the session's screen is drawn.
pub const CLEAR: &[u8] = b"\x1b[H\x1b[2J";
const CTRL_C: u8 = 0x03;

pub async fn run(login: &Authenticated, sid: &str) -> Result<i32> {
    let hub = &login.hub;
    let proxy = Proxy::from_env(&hub.url.host);
    let socket = connect_websocket(
        &hub.url,
        &session_watch_path(&segment(sid)),
        &login.token,
        hub.tls.clone(),
        proxy.as_ref(),
        MAX_MESSAGE,
        CONNECT_TIMEOUT,
    )
    .await
    .map_err(|error| match error {
        NetError::Http { status, body } => {
            let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
            anyhow::Error::new(HttpError::from_body(status, body.as_bytes()))
        }
        other => failure::unreachable(&hub.url.to_string(), &other),
    })?;
    let (mut sink, mut stream) = socket.split();
    let interactive = std::io::stdin().is_terminal();
    let raw_mode = if interactive {
        say!("Watching session {sid} (read-only). Press q to leave.");
        Some(RawMode::enable()?)
    } else {
        None
    };
    let mut input = interactive.then(spawn_stdin_reader);
    let mut keepalive = interval(KEEPALIVE);
    keepalive.tick().await;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut screen_shown = false;
    let result: Result<&'static str> = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    if !screen_shown {
                        screen_shown = true;
                        write_stdout(CLEAR).context("writing to stdout")?;
                    }
                    write_stdout(&bytes).context("writing to stdout")?;
                }
                Some(Ok(Message::Text(text))) => {
                    // `{"width","height"}` first, then `{"resize": [w, h]}`: the local terminal
                    // cannot be resized from here, so sizes are only noted in the log.
                    if let Ok(WatchMessage {
                        resize: Some((width, height)),
                        ..
                    }) = serde_json::from_str(&text) {
                        tracing::debug!("the session was resized to {width}x{height}");
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Ok("session ended"),
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!("reading from the hub: {}", failure::describe(&error));
                    break Err(transport("connection to the hub lost"));
                }
            },
            key = next_input(&mut input) => match key {
                Input::Bytes(bytes) if bytes.iter().any(|&b| b == b'q' || b == b'Q' || b == CTRL_C) => {
                    break Ok("stopped watching");
                }
                Input::Bytes(_) => {}
                Input::End => input = None,
            },
            _ = keepalive.tick() => {
                let _ = sink.send(Message::Ping(Vec::new().into())).await;
            }
            _ = interrupt.recv() => break Ok("stopped watching"),
            _ = terminate.recv() => break Ok("terminated"),
            _ = hangup.recv() => break Ok("hung up"),
        }
    };
    drop(raw_mode);
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(None))).await;
    let message = result?;
    say_on_new_line!("tether: {message}");
    Ok(0)
}

async fn next_input(input: &mut Option<tokio::sync::mpsc::Receiver<Input>>) -> Input {
    match input {
        Some(receiver) => receiver.recv().await.unwrap_or(Input::End),
        None => std::future::pending().await,
    }
}
