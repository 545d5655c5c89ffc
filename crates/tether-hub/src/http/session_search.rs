//! `GET /sessions?text=`: the sessions whose recorded output contains a text. Only for those
//! who may view recordings (it reads them), recorded in the audit log like a viewing, and
//! bounded: the newest [`SCAN_LIMIT`] sessions the other filters keep, at most [`BYTE_LIMIT`]
//! of output; the answer says how far it got.

use tether_proto::api;

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::permissions::Action, domain::principal::Principal,
    http::error::ApiError, http::state::AppState, relay::recording::search, service::auth::permit,
    store::TerminalSessionRecord, store::terminals::TerminalSessionFilter,
};
use search::{BYTE_LIMIT, MAX_TEXT, SCAN_LIMIT, Searched, TextFinder};

/// The matching sessions (newest first, at most the filter's limit) with their excerpts, and
/// how far the search got.
pub async fn search(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    filter: TerminalSessionFilter,
    text: &str,
) -> Result<(Vec<(TerminalSessionRecord, Option<String>)>, api::OutputSearch), ApiError> {
    if text.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "the search text is longer than {MAX_TEXT} characters"
        )));
    }
    permit(state, principal, context, Action::ViewRecordings, None).await?;
    let wanted = filter.limit as usize;
    // One more than is read: whether older ones were left unread.
    let candidates = TerminalSessionFilter {
        limit: i64::from(SCAN_LIMIT) + 1,
        ..filter
    };
    let mut candidates = state.store.terminal_sessions(&candidates).await?;
    let more = candidates.len() > SCAN_LIMIT as usize;
    candidates.truncate(SCAN_LIMIT as usize);
    let (store, directory, needle) = (state.store.clone(), state.recordings_dir.clone(), text.to_owned());
    // Reading recordings blocks (player.rs): off the runtime's worker threads.
    let (found, scanned, budget_left, stopped) = tokio::task::spawn_blocking(move || {
        let mut finder = TextFinder::new(&needle);
        let mut budget = BYTE_LIMIT;
        let (mut found, mut scanned, mut stopped) = (Vec::new(), 0u32, false);
        for session in candidates {
            let result = search::search_recording(&store, &directory, &session.sid, &mut finder, &mut budget);
            scanned += 1;
            match result {
                Ok(Searched::Found(excerpt)) => found.push((session, Some(excerpt))),
                Ok(Searched::NotFound) => {}
                Ok(Searched::OutOfBudget) => {
                    stopped = true;
                    break;
                }
                // One unreadable recording does not end the search; the log says which.
                Err(error) => tracing::warn!("searching recording {}: {error}", session.sid),
            }
        }
        (found, scanned, budget, stopped)
    })
    .await
    .map_err(anyhow::Error::from)?;
    let bytes_scanned = BYTE_LIMIT - budget_left;
    let complete = !more && !stopped;
    let event = NewEvent::new(
        Actor::principal(principal, context),
        "recording.search",
        Object::none(),
        Outcome::Success,
    )
    .details(serde_json::json!({ "text": text, "scanned": scanned, "found": found.len() }));
    state.store.record_audit(event).await?;
    let mut found = found;
    found.truncate(wanted);
    let search = api::OutputSearch {
        scanned,
        scan_limit: SCAN_LIMIT,
        bytes_scanned,
        byte_limit: BYTE_LIMIT,
        complete,
    };
    Ok((found, search))
}
