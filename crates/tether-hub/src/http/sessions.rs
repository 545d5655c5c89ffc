//! Terminal sessions for auditors: the list (filtered, and searched in its output by
//! `http/session_search.rs`), where a recording's keyframes are, a recording streamed from any
//! moment to any other, its asciicast v2 export, and a read-only live view of a running session.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{
        Path, Query, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt as _, StreamExt as _};
use tether_proto::api;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::permissions::Action, domain::principal::Principal,
    domain::principal::holds_everywhere, domain::recording_format::Record, http::convert,
    http::error::ApiError, http::extract::UserCaller, http::session_search, http::state::AppState,
    relay::recording::LiveEvent, relay::recording::WatchNotice, relay::recording::player,
    service::auth::permit, store::TerminalSessionRecord, store::terminals::TerminalSessionFilter,
};

/// Auditors see every session; other users only their own. Asked quietly: the Sessions page and
/// the device page's detached shells ask every few seconds, and seeing one's own is no refusal.
pub(crate) fn own_sessions_only(principal: &Principal) -> Option<String> {
    match principal {
        Principal::User { user, .. } if !holds_everywhere(principal, Action::ViewRecordings) => {
            Some(user.id.clone())
        }
        _ => None,
    }
}

/// Whether a session is being recorded now: here, or (with several replicas, another one may be
/// recording it) anywhere while its row is open.
fn is_live(state: &AppState, session: &TerminalSessionRecord) -> bool {
    state.live.is_live(&session.sid) || (state.router.bus().is_some() && session.ended_at.is_none())
}

#[utoipa::path(
    get,
    path = api::paths::SESSIONS_PATH,
    tag = "sessions",
    params(api::SessionQuery),
    responses(
        (status = 200, description = "Terminal sessions and their recordings", body = api::SessionList),
        (status = 400, description = "A search text longer than 200 characters"),
        (status = 403, description = "A search in output by a user who may not view recordings"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(query): Query<api::SessionQuery>,
) -> Result<Json<api::SessionList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let text = query.text.clone().filter(|text| !text.trim().is_empty());
    let filter = TerminalSessionFilter {
        device: query.device.filter(|device| !device.is_empty()),
        user: own_sessions_only(&principal).or(query.user.filter(|user| !user.is_empty())),
        from: query.from,
        to: query.to,
        limit,
    };
    let (sessions, search) = match text {
        None => {
            let sessions = state.store.terminal_sessions(&filter).await?;
            (
                sessions.into_iter().map(|session| (session, None)).collect(),
                None,
            )
        }
        Some(text) => {
            let (found, search) = session_search::search(&state, &principal, &context, filter, &text).await?;
            (found, Some(search))
        }
    };
    let sessions = sessions
        .into_iter()
        .map(|(session, excerpt)| {
            let live = is_live(&state, &session);
            api::TerminalSession {
                excerpt,
                ..convert::terminal_session(session, live)
            }
        })
        .collect();
    Ok(Json(api::SessionList { sessions, search }))
}

#[utoipa::path(
    get,
    path = &api::paths::session_segments_path("{sid}"),
    tag = "sessions",
    params(("sid" = String, Path, description = "The terminal session id")),
    responses(
        (status = 200, description = "The session, its recording's length and keyframes", body = api::RecordingSegments),
        (status = 403, description = "The caller may not view recordings"),
        (status = 404, description = "No such session"),
    )
)]
pub async fn segments(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(sid): Path<String>,
) -> Result<Json<api::RecordingSegments>, ApiError> {
    let session = state
        .store
        .terminal_session(&sid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no terminal session {sid}")))?;
    // Where the keyframes are is not the recording's content: no viewing is recorded.
    permit(&state, &principal, &context, Action::ViewRecordings, None).await?;
    let (store, directory, id) = (state.store.clone(), state.recordings_dir.clone(), sid.clone());
    let starts = tokio::task::spawn_blocking(move || {
        player::Recording::open(&store, &directory, &id).map(|recording| recording.segment_starts())
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|error| anyhow::anyhow!("reading the segments of {sid}: {error}"))?;
    let end = session.ended_at.unwrap_or_else(tether_proto::clock::unix_millis);
    let duration_ms = u64::try_from(end - session.started_at)
        .unwrap_or(0)
        .max(starts.last().copied().unwrap_or(0));
    let live = is_live(&state, &session);
    let segments = starts
        .into_iter()
        .enumerate()
        .map(|(index, start_ms)| api::RecordingSegment {
            index: index as u32,
            start_ms,
        })
        .collect();
    Ok(Json(api::RecordingSegments {
        session: convert::terminal_session(session, live),
        duration_ms,
        segments,
    }))
}

/// Loads a session the caller may view, recording the viewing in the audit log.
async fn viewable(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    sid: &str,
    action: &'static str,
) -> Result<TerminalSessionRecord, ApiError> {
    let session = state
        .store
        .terminal_session(sid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no terminal session {sid}")))?;
    permit(state, principal, context, Action::ViewRecordings, None).await?;
    let object = Object::device(&session.device_id, &session.device_name);
    let event = NewEvent::new(
        Actor::principal(principal, context),
        action,
        object,
        Outcome::Success,
    )
    .session(sid);
    state.store.record_audit(event).await?;
    Ok(session)
}

/// Runs a blocking producer of text lines on a thread and streams them as a response body.
fn stream_lines<I>(lines: impl FnOnce() -> std::io::Result<I> + Send + 'static) -> Body
where
    I: Iterator<Item = std::io::Result<String>>,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(64);
    tokio::task::spawn_blocking(move || {
        let lines = match lines() {
            Ok(lines) => lines,
            Err(error) => return drop(sender.blocking_send(Err(error))),
        };
        for line in lines {
            let item = line.map(|mut text| {
                text.push('\n');
                Bytes::from(text)
            });
            if sender.blocking_send(item).is_err() {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}

#[utoipa::path(
    get,
    path = &api::paths::session_recording_path("{sid}"),
    tag = "sessions",
    params(("sid" = String, Path, description = "The terminal session id"), api::RecordingQuery),
    responses((status = 200, description = "The recording: a header line, then one record per line", content((api::RecordingRecord = "application/x-ndjson"))))
)]
pub async fn recording(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(sid): Path<String>,
    Query(query): Query<api::RecordingQuery>,
) -> Result<Response, ApiError> {
    let session = viewable(&state, &principal, &context, &sid, "recording.view").await?;
    let (store, directory) = (state.store.clone(), state.recordings_dir.clone());
    let from_ms = query.from_ms.unwrap_or(0);
    let to_ms = query.to_ms;
    let header = api::RecordingHeader {
        live: state.live.is_live(&sid),
        sid: session.sid,
        width: session.width,
        height: session.height,
        started_at: session.started_at,
        ended_at: session.ended_at,
    };
    let header = serde_json::to_string(&header).unwrap_or_default();
    let body = stream_lines(move || {
        let recording = player::Recording::open(&store, &directory, &sid)?;
        let playback = player::Playback::open(recording, from_ms)?;
        // The window ends before `to_ms`; its first record, the screen at `from_ms`, is kept.
        let before_end = move |record: &std::io::Result<Record>| match (record, to_ms) {
            (Ok(record), Some(to_ms)) => {
                record.time_ms() < to_ms || matches!(record, Record::Keyframe { .. })
            }
            _ => true,
        };
        let records = playback.take_while(before_end).map(|record| {
            record.map(|record| serde_json::to_string(&convert::recording_record(record)).unwrap_or_default())
        });
        Ok(std::iter::once(Ok(header)).chain(records))
    });
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

#[utoipa::path(
    get,
    path = &api::paths::session_asciicast_path("{sid}"),
    tag = "sessions",
    params(("sid" = String, Path, description = "The terminal session id"), api::RecordingQuery),
    responses((status = 200, description = "The recording as an asciicast v2 file (from `from_ms`: the screen at that moment first)", body = String, content_type = "application/x-asciicast"))
)]
pub async fn asciicast(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(sid): Path<String>,
    Query(query): Query<api::RecordingQuery>,
) -> Result<Response, ApiError> {
    let session = viewable(&state, &principal, &context, &sid, "recording.export").await?;
    let (store, directory) = (state.store.clone(), state.recordings_dir.clone());
    let body = stream_lines(move || {
        let recording = player::Recording::open(&store, &directory, &session.sid)?;
        let window = (query.from_ms.unwrap_or(0), query.to_ms);
        player::asciicast_lines(recording, session.started_at, session.command.as_deref(), window)
    });
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    let disposition = format!("attachment; filename=\"{sid}.cast\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A read-only live view: a text frame `{"width","height"}`, the screen as a binary frame, then
/// output as binary frames and resizes as text frames `{"resize": [w, h]}`. Anything the watcher
/// sends is ignored: a watcher cannot type into the session. The session's user is told that
/// the watcher came (control `watching`), and again when they leave.
#[utoipa::path(
    get,
    path = &api::paths::session_watch_path("{sid}"),
    tag = "sessions",
    params(("sid" = String, Path, description = "The terminal session id")),
    responses((status = 101, description = "A WebSocket of the live session (read-only)"))
)]
pub async fn watch(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(sid): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    viewable(&state, &principal, &context, &sid, "session.watch").await?;
    let (snapshot, remote) = match (state.live.watch(&sid).await, state.router.bus()) {
        (Some(snapshot), _) => (Some(snapshot), false),
        // Served by another replica?
        (None, Some(bus)) => (crate::relay::router::live_watch::remote(bus, &sid).await, true),
        (None, None) => (None, false),
    };
    let Some(snapshot) = snapshot else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("session {sid} is not live (replay its recording)"),
        ));
    };
    let watcher = match &principal {
        Principal::User { user, .. } => user.name.clone(),
        Principal::Device { device_id } => device_id.clone(),
    };
    Ok(upgrade.on_upgrade(move |socket| async move {
        let notice = |watching| WatchNotice {
            sid: sid.clone(),
            user: watcher.clone(),
            watching,
        };
        tell_watched(&state, remote, notice(true)).await;
        relay_watch(socket, snapshot).await;
        tell_watched(&state, remote, notice(false)).await;
    }))
}

/// The watched terminal's user is told who watches: on this replica, or through the bus on
/// the one serving the session.
async fn tell_watched(state: &AppState, remote: bool, notice: WatchNotice) {
    match state.router.bus() {
        Some(bus) if remote => crate::relay::router::live_watch::announce_remote(bus, &notice).await,
        _ => state.live.announce(notice),
    }
}

async fn relay_watch(socket: WebSocket, snapshot: crate::relay::recording::Snapshot) {
    let (mut sink, mut stream) = socket.split();
    let size = api::WatchMessage {
        width: Some(snapshot.width),
        height: Some(snapshot.height),
        resize: None,
    };
    let size = serde_json::to_string(&size).unwrap_or_default();
    if sink.send(Message::Text(size.into())).await.is_err()
        || sink.send(Message::Binary(snapshot.screen.into())).await.is_err()
    {
        return;
    }
    let mut events = snapshot.events;
    loop {
        tokio::select! {
            event = events.recv() => {
                let message = match event {
                    Ok(LiveEvent::Output(data)) => Message::Binary(data.as_ref().clone().into()),
                    Ok(LiveEvent::Resize(width, height)) => {
                        let resize = api::WatchMessage { resize: Some((width, height)), ..api::WatchMessage::default() };
                        Message::Text(serde_json::to_string(&resize).unwrap_or_default().into())
                    }
                    // A watcher too slow to keep up skips ahead rather than slowing the session.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        let frame = CloseFrame { code: 1000, reason: "the session ended".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        return;
                    }
                };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            inbound = stream.next() => match inbound {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}
