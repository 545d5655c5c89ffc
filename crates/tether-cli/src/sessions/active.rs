//! `tether sessions active`: every session running now on the hub — terminals, commands, file
//! transfers, port forwards — with who runs it, on which device, since when. The hub lists the
//! caller's own, or everyone's for those who may view recordings.

use anyhow::{Context, Result};
use tether_proto::api::{ActiveSessionKind, ActiveSessionList, paths::ACTIVE_SESSIONS_PATH};

use super::name_or_id;
use crate::{
    api::Api,
    output::{self, print_listing},
    time_text::utc_millis as format_time,
};

/// The kind as the table shows it.
fn kind_text(kind: ActiveSessionKind) -> &'static str {
    match kind {
        ActiveSessionKind::Terminal => "terminal",
        ActiveSessionKind::Command => "command",
        ActiveSessionKind::FileUpload => "file upload",
        ActiveSessionKind::FileDownload => "file download",
        ActiveSessionKind::PortForward => "port forward",
    }
}

pub async fn run(api: &Api, json: bool) -> Result<()> {
    let list: ActiveSessionList = api.get(ACTIVE_SESSIONS_PATH).await?;
    let text = if json {
        serde_json::to_string_pretty(&list.sessions)? + "\n"
    } else {
        let mut rows =
            vec![["SESSION", "USER", "DEVICE", "SINCE (UTC)", "KIND", "DETAIL"].map(str::to_owned)];
        for session in &list.sessions {
            rows.push([
                session.sid.clone(),
                name_or_id(&session.user_name, &session.user_id),
                name_or_id(&session.device_name, &session.device_id),
                format_time(session.started_at),
                kind_text(session.kind).to_owned(),
                session.detail.clone().unwrap_or_default(),
            ]);
        }
        let mut text = output::table(&rows, None);
        if list.truncated {
            text.push_str("(more sessions run: the oldest 1000 are listed)\n");
        }
        text
    };
    print_listing(&text).context("writing to stdout")
}
