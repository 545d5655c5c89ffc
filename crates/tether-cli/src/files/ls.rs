//! `tether ls DEVICE:PATH`: `stat`, and for a directory `list` (version 2 only).

use anyhow::{Result, bail};
use serde_json::json;
use tether_proto::file_transfer::{FileInfo, FileTransfer, go_mode};

use crate::time_text::utc_minute;

use super::{
    link::Link,
    listing::{is_dir, kind, mode_string},
    location::{Location, basename, parse},
    refused,
};
use crate::{
    hub::HubOptions,
    output::{Layout, print_listing, table_with},
};

pub async fn run(options: &HubOptions, target: &str, json: bool) -> Result<i32> {
    let Location::Remote { device, path } = parse(target)? else {
        bail!("{target}: give a remote path as DEVICE:PATH");
    };
    let mut link = Link::open(options, &device).await?;
    let info = stat(&mut link, &path).await?;
    let (entries, named) = if is_dir(&info) {
        if !link.can_resume() {
            let spoken = link.version();
            link.close().await;
            bail!(
                "{device}:{path} is a directory, and listing directories needs a tether-agent \
                 (protocol version 2); the agent on {device} speaks version {spoken} only \
                 (`tether ls` of a single file works)"
            );
        }
        let entries = match link.request(&FileTransfer::List { path: path.clone() }).await? {
            FileTransfer::FileList { entries, .. } => entries,
            FileTransfer::Error(body) => return Err(refused(&device, &path, &body)),
            other => bail!("{device}:{path}: unexpected `{}` answer to list", other.typ()),
        };
        let named = entries
            .iter()
            .map(|entry| basename(&entry.path).to_owned())
            .collect();
        (entries, named)
    } else {
        (vec![info], vec![path.clone()])
    };
    link.close().await;
    let text = if json {
        let rows: Vec<_> = entries
            .iter()
            .zip(&named)
            .map(|(entry, name)| {
                json!({
                    "name": name,
                    "path": entry.path,
                    "type": kind(entry),
                    "mode": mode_string(entry.mode),
                    "permissions": go_mode::to_unix_permissions(entry.mode),
                    "uid": entry.uid,
                    "gid": entry.gid,
                    "size": entry.size,
                    "mtime": entry.modtime.0,
                })
            })
            .collect();
        format!("{}\n", serde_json::Value::Array(rows))
    } else {
        table(&entries, &named)
    };
    print_listing(&text)?;
    Ok(0)
}

/// `stat`, with a refusal worded as `DEVICE:PATH: TEXT`.
pub async fn stat(link: &mut Link, path: &str) -> Result<FileInfo> {
    match link
        .request(&FileTransfer::Stat {
            path: path.to_owned(),
        })
        .await?
    {
        FileTransfer::FileInfo(info) => Ok(info),
        FileTransfer::Error(body) => Err(refused(&link.label, path, &body)),
        other => bail!(
            "{}:{path}: unexpected `{}` answer to stat",
            link.label,
            other.typ()
        ),
    }
}

/// mode, uid, gid, size, mtime (UTC), name; numbers right-aligned, every cell made printable.
fn table(entries: &[FileInfo], names: &[String]) -> String {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .zip(names)
        .map(|(entry, name)| {
            [
                mode_string(entry.mode),
                entry.uid.to_string(),
                entry.gid.to_string(),
                entry.size.to_string(),
                utc_minute(entry.modtime.0),
                name.clone(),
            ]
        })
        .collect();
    let layout = Layout {
        gap: " ",
        right_aligned: &[1, 2, 3],
        last_width: None,
    };
    table_with(&rows, &layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let entry = |path: &str, mode, size| FileInfo {
            path: path.into(),
            size,
            uid: 0,
            gid: 1000,
            mode,
            modtime: (1_700_000_000, 0),
        };
        let entries = [
            entry("/d/a", 0o644, 5),
            entry("/d/sub", go_mode::DIRECTORY | 0o755, 4096),
        ];
        let names = ["a".to_owned(), "sub".to_owned()];
        assert_eq!(
            table(&entries, &names),
            "-rw-r--r-- 0 1000    5 2023-11-14 22:13 a\n\
             drwxr-xr-x 0 1000 4096 2023-11-14 22:13 sub\n"
        );
    }
}
