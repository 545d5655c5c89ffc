//! The audit log: events and their pages, the hub's verification of the hash chain, and the
//! signed checkpoint and anchor statements. The hashing and signing of these types live in
//! `crate::audit` and `crate::audit_checkpoint` (behind the `audit` feature); the shapes are
//! here, with no dependency beyond serde.

use serde::{Deserialize, Serialize};

/// One audit event, as stored and as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub seq: i64,
    pub id: String,
    /// Unix milliseconds.
    pub time: i64,
    /// `user`, `device`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    /// e.g. `login`, `device.accept`, `terminal.open`, `file.download`.
    pub action: String,
    /// `device`, `user`, `session`, ...
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    /// `success`, `failure`, `refused` or `interrupted`.
    pub outcome: String,
    /// A JSON object with the action's particulars (path, size, reason...).
    pub details: serde_json::Value,
    pub session_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The answer to `GET /audit/events`: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// The filters of `GET /audit/events` and `GET /audit/export` (times in Unix milliseconds).
/// Numbers are also read from text, and empty text is no filter: a query string carries only
/// text, and inside [`AuditExportQuery`] serde cannot tell which a field is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// At or after this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub from: Option<i64>,
    /// Before this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub to: Option<i64>,
    /// A user or device id, or a user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `success`, `failure`, `refused` or `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Paging (events only): events with a smaller `seq`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub before: Option<i64>,
    /// Paging (events only): at most this many (default 100, at most 1000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub limit: Option<i64>,
}

/// The query of `GET /audit/export`: the filters of [`AuditQuery`] and the format, `csv` or
/// `jsonl` (the default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditExportQuery {
    #[serde(flatten)]
    pub filter: AuditQuery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Only events with `seq` above this cursor (the last `seq` a reader has): appends are
    /// numbered in commit order, so polling with the last seen `seq` misses nothing and repeats
    /// nothing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub after: Option<i64>,
}

/// An optional whole number given as a number or as text (empty text: none).
fn number_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(i64),
        Text(String),
    }
    match Option::<NumberOrText>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumberOrText::Number(number)) => Ok(Some(number)),
        Some(NumberOrText::Text(text)) if text.is_empty() => Ok(None),
        Some(NumberOrText::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number"))),
    }
}

impl AuditQuery {
    /// The parameters that are set, in a fixed order, ready for [`super::paths::query`].
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        fn number(key: &'static str, value: Option<i64>, pairs: &mut Vec<(&'static str, String)>) {
            if let Some(value) = value {
                pairs.push((key, value.to_string()));
            }
        }
        let mut pairs = Vec::new();
        number("from", self.from, &mut pairs);
        number("to", self.to, &mut pairs);
        let texts = [
            ("actor", &self.actor),
            ("device", &self.device),
            ("action", &self.action),
            ("session", &self.session),
            ("outcome", &self.outcome),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        number("before", self.before, &mut pairs);
        number("limit", self.limit, &mut pairs);
        pairs
    }
}

/// The answer to `GET /audit/verify`: what the hub's walk over the chain found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub ok: bool,
    pub checked: i64,
    /// The first broken event: `modified`, `removed` or `reordered`.
    pub problem: Option<Problem>,
}

/// One inconsistency, at the event (or checkpoint) `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    pub seq: i64,
    pub kind: String,
    pub detail: String,
}

/// What a [`Statement`] attests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum StatementKind {
    /// The chain's head.
    Checkpoint,
    /// The last event retention deleted (the chain's new anchor).
    Anchor,
}

/// A signed statement about event `seq` of the chain (the answer to `POST /audit/checkpoints`);
/// exported as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    pub kind: StatementKind,
    pub seq: i64,
    /// The event's hash (hex).
    pub hash: String,
    /// When it was signed, Unix milliseconds.
    pub time: i64,
    /// The Ed25519 public key that signed it (hex).
    pub public_key: String,
    /// The signature (hex) of the statement's message.
    pub signature: String,
}

/// The chain's anchor (the answer to `GET /audit/anchor`): the `seq` and hash of the last
/// deleted event (0 and the genesis hash when nothing was ever deleted), and the hub's signed
/// statement of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    pub statement: Option<Statement>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    const EVENT: &str = r#"{"seq":7,"id":"e7","time":1714564800000,"actor_kind":"user","actor_id":"u1",
        "actor_name":"alice","client_address":"127.0.0.1:50000","user_agent":"tether/0.4.0",
        "action":"device.accept","object_kind":"device","object_id":"d1","object_name":"pump",
        "outcome":"success","details":{"previous_status":"pending"},"session_id":null,
        "prev_hash":"00ff","hash":"ff00"}"#;

    #[test]
    fn the_event_shapes_are_pinned() {
        let page: EventPage = round_trip(&format!(r#"{{"events":[{EVENT}],"next_before":null}}"#));
        assert_eq!(page.events[0].details["previous_status"], "pending");
        round_trip::<EventPage>(&format!(r#"{{"events":[{EVENT}],"next_before":7}}"#));
        round_trip::<Verification>(r#"{"ok":true,"checked":12,"problem":null}"#);
        round_trip::<Verification>(
            r#"{"ok":false,"checked":3,"problem":{"seq":4,"kind":"modified","detail":"hash mismatch"}}"#,
        );
    }

    #[test]
    fn the_statement_shapes_are_pinned() {
        let statement = r#"{"kind":"checkpoint","seq":7,"hash":"ff00","time":1714564800000,
            "public_key":"ab","signature":"cd"}"#;
        let decoded: Statement = round_trip(statement);
        assert_eq!(decoded.kind, StatementKind::Checkpoint);
        round_trip::<Anchor>(r#"{"seq":0,"hash":"0000","statement":null}"#);
        round_trip::<Anchor>(&format!(r#"{{"seq":7,"hash":"ff00","statement":{statement}}}"#));
    }

    #[test]
    fn queries_keep_their_order() {
        let query = AuditQuery {
            from: Some(1),
            actor: Some("alice".into()),
            outcome: Some("failure".into()),
            limit: Some(10),
            ..AuditQuery::default()
        };
        let keys: Vec<&str> = query.pairs().iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, ["from", "actor", "outcome", "limit"]);
    }

    #[test]
    fn the_query_shapes_are_pinned() {
        let query: AuditQuery =
            round_trip(r#"{"from":1714564800000,"actor":"alice","before":70,"limit":10}"#);
        assert_eq!(query.limit, Some(10));
        let export: AuditExportQuery = round_trip(r#"{"from":1,"outcome":"refused","format":"csv"}"#);
        assert_eq!(
            (export.filter.from, export.format.as_deref()),
            (Some(1), Some("csv"))
        );
        round_trip::<AuditExportQuery>("{}");
        // What a query string carries: numbers as text, and empty text for no filter.
        let text: AuditExportQuery =
            serde_json::from_str(r#"{"from":"5","to":"","limit":"7","format":"jsonl","after":"41"}"#)
                .unwrap();
        assert_eq!(text.after, Some(41));
        assert_eq!(
            (text.filter.from, text.filter.to, text.filter.limit),
            (Some(5), None, Some(7))
        );
        assert!(serde_json::from_str::<AuditQuery>(r#"{"before":"soon"}"#).is_err());
    }
}
