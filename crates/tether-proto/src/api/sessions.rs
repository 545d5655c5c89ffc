//! Terminal sessions: the recorded ones (listing, the JSON Lines of a recording, watching a live
//! one) and the detached ones a device keeps for re-attaching.

use serde::{Deserialize, Serialize};

/// A recorded terminal session, as `GET /sessions` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalSession {
    pub sid: String,
    pub device_id: String,
    pub device_name: String,
    pub user_id: String,
    pub user_name: String,
    /// The command of an `exec` session; `null` for an interactive shell.
    pub command: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub bytes_out: i64,
    pub width: i64,
    pub height: i64,
    /// Still running (on this hub, or open on any replica).
    pub live: bool,
    /// With a `text` search: the end of the output line where the text was found (escape
    /// sequences taken out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// The answer to `GET /sessions`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    pub sessions: Vec<TerminalSession>,
    /// With a `text` search: how much output was searched. The search reads recordings, so it is
    /// bounded; `complete` is false when it stopped at a bound before the older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<OutputSearch>,
}

/// How far a search in the recorded output got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputSearch {
    /// Recordings read (newest first, among those the other filters keep).
    pub scanned: u32,
    /// At most this many are read per search.
    pub scan_limit: u32,
    /// Output bytes read, and the most read per search.
    pub bytes_scanned: u64,
    pub byte_limit: u64,
    /// Every recording the other filters keep was searched.
    pub complete: bool,
}

/// The query of `GET /sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct SessionQuery {
    /// A device id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A user id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Started at or after this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Started before this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
    /// Only sessions whose recorded output contains this text (case-insensitive, escape
    /// sequences ignored); bounded, see [`OutputSearch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl SessionQuery {
    /// `GET /sessions?...` with the parameters that are set, values percent-encoded.
    pub fn path(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(device) = &self.device {
            pairs.push(("device", device.clone()));
        }
        if let Some(user) = &self.user {
            pairs.push(("user", user.clone()));
        }
        if let Some(from) = self.from {
            pairs.push(("from", from.to_string()));
        }
        if let Some(to) = self.to {
            pairs.push(("to", to.to_string()));
        }
        if let Some(text) = &self.text {
            pairs.push(("text", text.clone()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        super::paths::with_query(super::paths::SESSIONS_PATH, &pairs)
    }
}

/// A terminal kept on its device after its operator's connection was lost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetachedSession {
    pub sid: String,
    pub device_id: String,
    /// Empty when the device is gone.
    pub device_name: String,
    pub user_id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub detached_at: i64,
    /// When the hub stops waiting for it (the device's own grace period decides, too).
    pub expires_at: i64,
}

/// The answer to `GET /sessions/detached`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetachedList {
    pub sessions: Vec<DetachedSession>,
}

/// The first line of `GET /sessions/{sid}/recording`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingHeader {
    pub sid: String,
    pub width: i64,
    pub height: i64,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub live: bool,
}

/// Every later line of a recording: `k` is `screen` (with `w`, `h`, `d`), `o` or `i` (with `d`)
/// or `r` (with `w`, `h`); `t` is milliseconds since the session began, `d` base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingRecord {
    pub t: u64,
    pub k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

/// The query of `GET /sessions/{sid}/recording` and `.../asciicast`: a window of the recording,
/// in milliseconds since the session began. The hub reads from the keyframe at or before
/// `from_ms` (never the recording from its start), and the first record is the screen at
/// `from_ms`; records at or after `to_ms` are left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct RecordingQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
}

/// The answer to `GET /sessions/{sid}/segments`: the session, how long its recording lasts,
/// and where its keyframes are, for a player's seek bar (each segment starts with one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingSegments {
    pub session: TerminalSession,
    /// Milliseconds from the session's start to its end (to now while it runs).
    pub duration_ms: u64,
    pub segments: Vec<RecordingSegment>,
}

/// One segment of a recording.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingSegment {
    /// Its number, from 0.
    pub index: u32,
    /// Its keyframe's time, milliseconds since the session began.
    pub start_ms: u64,
}

/// The query of the session WebSocket (`.../deviceconnect/devices/{id}/connect`): re-attach to
/// the detached terminal `attach`, replaying its output from byte `offset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct AttachQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    #[serde(default)]
    pub offset: u64,
}

/// A text message of `GET /sessions/{sid}/watch`: first the size (`width`, `height`), later
/// `resize` (`[width, height]`); binary messages carry the screen and output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WatchMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<(u16, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_session_shapes_are_pinned() {
        let list: SessionList = round_trip(
            r#"{"sessions":[{"sid":"s1","device_id":"d1","device_name":"pump","user_id":"u1","user_name":"alice",
                "command":null,"started_at":1714564800000,"ended_at":null,"bytes_out":2048,"width":80,
                "height":24,"live":true}]}"#,
        );
        assert!(list.sessions[0].live);
        round_trip::<DetachedList>(
            r#"{"sessions":[{"sid":"s1","device_id":"d1","device_name":"","user_id":"u1",
                "created_at":1714564800000,"detached_at":1714564810000,"expires_at":1714565110000}]}"#,
        );
        assert_eq!(
            SessionQuery {
                device: Some("d 1".into()),
                limit: Some(5),
                ..SessionQuery::default()
            }
            .path(),
            "/api/management/v1/sessions?device=d%201&limit=5"
        );
    }

    #[test]
    fn the_recording_and_watch_shapes_are_pinned() {
        round_trip::<RecordingHeader>(
            r#"{"sid":"s1","width":80,"height":24,"started_at":1714564800000,"ended_at":1714564865000,"live":false}"#,
        );
        round_trip::<RecordingRecord>(r#"{"t":0,"k":"screen","w":80,"h":24,"d":"G1tI"}"#);
        round_trip::<RecordingRecord>(r#"{"t":12,"k":"o","d":"aGk="}"#);
        let resize: RecordingRecord = round_trip(r#"{"t":40,"k":"r","w":100,"h":30}"#);
        assert_eq!((resize.w, resize.h, resize.d), (Some(100), Some(30), None));
        round_trip::<WatchMessage>(r#"{"width":80,"height":24}"#);
        let resize: WatchMessage = round_trip(r#"{"resize":[100,30]}"#);
        assert_eq!(resize.resize, Some((100, 30)));
        round_trip::<RecordingQuery>(r#"{"from_ms":5000,"to_ms":65000}"#);
        round_trip::<RecordingSegments>(
            r#"{"session":{"sid":"s1","device_id":"d1","device_name":"pump","user_id":"u1","user_name":"alice",
                "command":null,"started_at":1714564800000,"ended_at":1714564920000,"bytes_out":2048,"width":80,
                "height":24,"live":false},"duration_ms":120000,
                "segments":[{"index":0,"start_ms":0},{"index":1,"start_ms":60000}]}"#,
        );
    }

    #[test]
    fn the_attach_query_is_pinned() {
        let query: AttachQuery = round_trip(r#"{"attach":"s1","offset":4096}"#);
        assert_eq!(query.attach.as_deref(), Some("s1"));
        let bare: AttachQuery = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, AttachQuery::default());
        round_trip::<SessionQuery>(
            r#"{"device":"d1","user":"bob","from":1714564800000,"to":1714568400000,"text":"error","limit":5}"#,
        );
        let searched: SessionList = round_trip(
            r#"{"sessions":[{"sid":"s1","device_id":"d1","device_name":"pump","user_id":"u1","user_name":"alice",
                "command":null,"started_at":1714564800000,"ended_at":null,"bytes_out":2048,"width":80,
                "height":24,"live":true,"excerpt":"disk error"}],
                "search":{"scanned":100,"scan_limit":100,"bytes_scanned":4096,"byte_limit":268435456,"complete":false}}"#,
        );
        assert_eq!(searched.search.map(|search| search.complete), Some(false));
    }
}
