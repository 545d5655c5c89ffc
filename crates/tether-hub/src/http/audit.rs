//! The audit log's HTTP API: query with filters and pagination, export (CSV or JSON Lines,
//! streamed), verification of the hash chain, and its signed checkpoints and anchor.

use axum::{
    Json,
    body::Body,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tether_proto::api;

use crate::{
    domain::audit, domain::audit::RequestContext, domain::permissions::Action, http::convert,
    http::error::ApiError, http::extract::UserCaller, http::state::AppState, service::auth::permit,
};

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
const EXPORT_PAGE: i64 = 500;

#[utoipa::path(
    get,
    path = api::paths::AUDIT_EVENTS_PATH,
    tag = "audit",
    params(api::AuditQuery),
    responses((status = 200, description = "One page of audit events, newest first", body = api::EventPage))
)]
pub async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(query): Query<api::AuditQuery>,
) -> Result<Json<api::EventPage>, ApiError> {
    permit(&state, &principal, &context, Action::ViewAudit, None).await?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let events = state
        .store
        .audit_events(&convert::audit_filter(query), limit)
        .await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(api::EventPage { events, next_before }))
}

#[utoipa::path(
    get,
    path = api::paths::AUDIT_VERIFY_PATH,
    tag = "audit",
    responses((status = 200, description = "The result of checking the hash chain", body = api::Verification))
)]
pub async fn verify(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::Verification>, ApiError> {
    permit(&state, &principal, &context, Action::ViewAudit, None).await?;
    let anchor = state.store.audit_anchor().await?;
    // Page through the whole chain; the verification itself keeps only the previous hash.
    let mut events = Vec::new();
    let mut after = anchor.0;
    loop {
        let page = state.store.audit_events_after(after, EXPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page);
    }
    Ok(Json(audit::verify(anchor, events)))
}

/// `POST .../audit/checkpoints`: a fresh signed checkpoint of the chain's head (also appended to
/// the checkpoint file and syslog when configured). Refused (409) when the chain no longer
/// extends the head the hub last signed.
#[utoipa::path(
    post,
    path = api::paths::AUDIT_CHECKPOINTS_PATH,
    tag = "audit",
    responses((status = 200, description = "The signed statement of the chain head", body = api::Statement))
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::Statement>, ApiError> {
    permit(&state, &principal, &context, Action::ViewAudit, None).await?;
    match state.checkpoints.checkpoint(&state.store, false).await {
        Ok(Some(statement)) => Ok(Json(statement)),
        Ok(None) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no checkpoint was made",
        )),
        Err(error) if error.is::<crate::service::checkpoints::ChainBroken>() => {
            tracing::error!("audit checkpoint refused: {error:#}");
            Err(ApiError::new(StatusCode::CONFLICT, error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// `GET .../audit/anchor`: where the chain starts, with retention's signed statement (for
/// verification against checkpoints, which the CLI does itself over an export).
#[utoipa::path(
    get,
    path = api::paths::AUDIT_ANCHOR_PATH,
    tag = "audit",
    responses((status = 200, description = "Where the chain starts", body = api::Anchor))
)]
pub async fn anchor(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::Anchor>, ApiError> {
    permit(&state, &principal, &context, Action::ViewAudit, None).await?;
    Ok(Json(state.store.audit_anchor_statement().await?))
}

const CSV_COLUMNS: &str = "seq,id,time,actor_kind,actor_id,actor_name,client_address,user_agent,action,\
object_kind,object_id,object_name,outcome,details,session_id,prev_hash,hash\n";

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_line(event: &api::AuditEvent) -> String {
    let optional = |value: &Option<String>| csv_field(value.as_deref().unwrap_or_default());
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        event.seq,
        csv_field(&event.id),
        event.time,
        csv_field(&event.actor_kind),
        optional(&event.actor_id),
        optional(&event.actor_name),
        optional(&event.client_address),
        optional(&event.user_agent),
        csv_field(&event.action),
        optional(&event.object_kind),
        optional(&event.object_id),
        optional(&event.object_name),
        csv_field(&event.outcome),
        csv_field(&event.details.to_string()),
        optional(&event.session_id),
        csv_field(&event.prev_hash),
        csv_field(&event.hash),
    )
}

#[utoipa::path(
    get,
    path = api::paths::AUDIT_EXPORT_PATH,
    tag = "audit",
    params(api::AuditQuery, ("format" = Option<String>, Query, description = "`jsonl` (the default) or `csv`"), ("after" = Option<i64>, Query, description = "Only events with a `seq` above this cursor")),
    responses((status = 200, description = "Every matching event, oldest first, one per line", content((api::AuditEvent = "application/x-ndjson"), (String = "text/csv"))))
)]
pub async fn export(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(query): Query<api::AuditExportQuery>,
) -> Result<Response, ApiError> {
    permit(&state, &principal, &context, Action::ViewAudit, None).await?;
    let csv = match query.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?} (csv or jsonl)"
            )));
        }
    };
    let store = state.store.clone();
    let filter = convert::audit_filter(query.filter);
    let start = query.after.unwrap_or(0);
    // Streamed page by page, oldest first: an export never holds the whole log in memory.
    let stream = futures_util::stream::unfold(Some(start), move |after| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let after = after?;
            let mut text = if csv && after == start {
                CSV_COLUMNS.to_owned()
            } else {
                String::new()
            };
            let page = match store.audit_events_oldest_first(&filter, after, EXPORT_PAGE).await {
                Ok(page) => page,
                Err(error) => return Some((Err(std::io::Error::other(error.to_string())), None)),
            };
            for event in &page {
                if csv {
                    text.push_str(&csv_line(event));
                } else {
                    text.push_str(&serde_json::to_string(event).unwrap_or_default());
                    text.push('\n');
                }
            }
            let next = (page.len() as i64 == EXPORT_PAGE)
                .then(|| page.last().map(|e| e.seq))
                .flatten();
            Some((Ok::<_, std::io::Error>(text), next))
        }
    });
    let content_type = if csv { "text/csv" } else { "application/x-ndjson" };
    let mut response = Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
