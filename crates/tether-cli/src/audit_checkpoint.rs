//! `tether audit checkpoint` (a fresh signed checkpoint of the chain's head, one JSON line) and
//! `tether audit verify --checkpoint FILE`: the chain verified here, not by the hub, over the
//! exported events, against checkpoints the verifier kept. A hub whose database (or whose
//! process) was tampered with can answer anything to `verify`; it cannot make an export match
//! signatures it made earlier.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tether_proto::{
    api::{
        Empty,
        paths::{self, AUDIT_ANCHOR_PATH, AUDIT_CHECKPOINTS_PATH, AUDIT_EXPORT_PATH},
    },
    audit::AuditEvent,
    audit_checkpoint::{Anchor, CheckpointVerification, CheckpointWalk, Statement},
};

use crate::{
    api::{Api, get_streamed},
    failure,
    hub::Authenticated,
    output::print_listing,
    time_text::utc_millis,
};

/// Prints a fresh checkpoint as one JSON line (append it to a file kept off the hub).
pub async fn checkpoint(api: &Api) -> Result<i32> {
    let statement: Statement = api.post(AUDIT_CHECKPOINTS_PATH, &Empty {}).await?;
    println!("{}", serde_json::to_string(&statement)?);
    Ok(0)
}

/// The checkpoints in `path`: one JSON object per line; blank lines are skipped, and text before
/// the first `{` (a syslog prefix) is ignored.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Statement>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut checkpoints = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let json = line.find('{').map(|start| &line[start..]).unwrap_or(line);
        let statement: Statement = serde_json::from_str(json)
            .with_context(|| format!("{} line {}: not a checkpoint", path.display(), index + 1))?;
        checkpoints.push(statement);
    }
    if checkpoints.is_empty() {
        bail!("{} holds no checkpoint", path.display());
    }
    Ok(checkpoints)
}

/// Verifies the exported chain against the checkpoints in `file`; 0 when intact, 1 if not.
pub async fn verify(api: &Api, login: &Authenticated, file: &Path, json: bool) -> Result<i32> {
    let checkpoints = read_checkpoints(file)?;
    // Retention may move the anchor while the export runs: then the export starts after the
    // anchor read first, and the walk would report a gap. Read it again and retry once.
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let anchor: Anchor = api.get(AUDIT_ANCHOR_PATH).await?;
        let result = walk_export(login, anchor.clone(), checkpoints.clone()).await?;
        let now: Anchor = api.get(AUDIT_ANCHOR_PATH).await?;
        if now == anchor || attempt == 2 {
            break result;
        }
    };
    if json {
        print_listing(&(serde_json::to_string_pretty(&result)? + "\n")).context("writing to stdout")?;
    } else {
        print!("{}", report(&result, &checkpoints));
    }
    Ok(if result.ok { 0 } else { 1 })
}

/// Streams the whole export (JSON Lines, oldest first) through the walk.
async fn walk_export(
    login: &Authenticated,
    anchor: Anchor,
    checkpoints: Vec<Statement>,
) -> Result<CheckpointVerification> {
    let mut walk = CheckpointWalk::new(anchor, checkpoints);
    let base = login.hub.url.to_string();
    let path = format!(
        "{AUDIT_EXPORT_PATH}?{}",
        paths::query(&[("format", "jsonl".to_owned())])
    );
    let mut response = get_streamed(login, &path).await?;
    let mut pending: Vec<u8> = Vec::new();
    let mut step = |line: &[u8]| -> Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let event: AuditEvent =
            serde_json::from_slice(line).context("the hub's export holds a line that is not an event")?;
        walk.step(&event);
        Ok(())
    };
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        failure::transport(format!(
            "reading the export from the hub at {base}: {}",
            failure::describe(&error.without_url())
        ))
    })? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            step(&line)?;
        }
    }
    step(&pending)?;
    Ok(walk.finish())
}

/// The text report: one line when intact, else one line per problem.
fn report(result: &CheckpointVerification, checkpoints: &[Statement]) -> String {
    if result.ok {
        let newest = checkpoints.iter().max_by_key(|c| c.seq).map(|c| (c.seq, c.time));
        let mut text = format!(
            "audit log intact: {} events checked, {} of {} checkpoints match",
            result.checked, result.matched, result.checkpoints
        );
        if result.pruned > 0 {
            text.push_str(&format!(
                " ({} before the signed retention anchor)",
                result.pruned
            ));
        }
        if let Some((seq, time)) = newest.filter(|(seq, _)| *seq < result.head) {
            text.push_str(&format!(
                "; events after {seq} (checkpoint of {} UTC) are not covered by a checkpoint",
                utc_millis(time)
            ));
        }
        return text + "\n";
    }
    result
        .problems
        .iter()
        .map(|problem| {
            format!(
                "audit log BROKEN at event {}: {} ({})\n",
                problem.seq, problem.kind, problem.detail
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_files_tolerate_blank_lines_and_syslog_prefixes() {
        let dir = std::env::temp_dir().join(format!("tether-checkpoints-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoints");
        let line = r#"{"kind":"checkpoint","seq":3,"hash":"ab","time":1,"public_key":"00","signature":"00"}"#;
        std::fs::write(
            &path,
            format!("{line}\n\nDec  2 03:00:00 host tether-hub[7]: audit checkpoint {line}\n"),
        )
        .unwrap();
        let read = read_checkpoints(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].seq, 3);
        std::fs::write(&path, "{\"kind\":\"checkpoint\"}\n").unwrap();
        let error = read_checkpoints(&path).unwrap_err().to_string();
        assert!(error.ends_with("line 1: not a checkpoint"), "{error}");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            read_checkpoints(&path)
                .unwrap_err()
                .to_string()
                .ends_with("holds no checkpoint")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
