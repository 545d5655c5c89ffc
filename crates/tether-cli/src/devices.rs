//! `tether devices ...`: listing the fleet as a table or JSON, and accepting, rejecting or
//! removing one device.

use anyhow::{Context, Result};
use tether_proto::api::{
    Device,
    paths::{device_accept_path, device_path, device_reject_path, segment},
};

use crate::{
    api::Api,
    output::{self, print_listing, tell},
    resolve::find_strictly,
};

#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Accept,
    Reject,
    Remove,
}

pub async fn list(api: &Api, status: Option<&str>, json: bool) -> Result<()> {
    let devices = api.devices(status).await?;
    let text = if json {
        serde_json::to_string_pretty(&devices)? + "\n"
    } else {
        table(&devices, tether_proto::clock::unix_seconds())
    };
    print_listing(&text).context("writing to stdout")
}

pub async fn decide(api: &Api, query: &str, decision: Decision) -> Result<()> {
    let device = find_strictly(api, query).await?;
    let id = segment(&device.id);
    let verb = match decision {
        Decision::Accept => {
            api.post_empty(&device_accept_path(&id)).await?;
            "Accepted"
        }
        Decision::Reject => {
            api.post_empty(&device_reject_path(&id)).await?;
            "Rejected"
        }
        Decision::Remove => {
            api.delete(&device_path(&id)).await?;
            "Removed"
        }
    };
    tell!("{verb} device {} ({}).", device.id, device.name);
    Ok(())
}

/// The device table, columns padded to their widest cell.
pub fn table(devices: &[Device], now: i64) -> String {
    let mut rows = vec![["ID", "NAME", "STATUS", "ONLINE", "LAST SEEN", "TAGS"].map(str::to_owned)];
    for device in devices {
        rows.push([
            device.id.clone(),
            device.name.clone(),
            device.status.clone(),
            if device.online { "yes" } else { "no" }.to_owned(),
            last_seen(device.last_seen_at, now),
            device.tags.join(","),
        ]);
    }
    output::table(&rows, None)
}

/// "12s ago", "5m ago", "3h ago", "2d ago", or "never".
pub fn last_seen(seen_at: Option<i64>, now: i64) -> String {
    let Some(seen_at) = seen_at else {
        return "never".to_owned();
    };
    // A device clock or hub clock slightly ahead must not print a negative age.
    let age = (now - seen_at).max(0);
    match age {
        0..60 => format!("{age}s ago"),
        60..3600 => format!("{}m ago", age / 60),
        3600..86400 => format!("{}h ago", age / 3600),
        _ => format!("{}d ago", age / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(last_seen(None, 100), "never");
        assert_eq!(last_seen(Some(88), 100), "12s ago");
        assert_eq!(last_seen(Some(105), 100), "0s ago");
        assert_eq!(last_seen(Some(0), 150), "2m ago");
        assert_eq!(last_seen(Some(0), 7200), "2h ago");
        assert_eq!(last_seen(Some(0), 3 * 86400 + 5), "3d ago");
    }

    #[test]
    fn table_aligns_columns() {
        let device = Device {
            id: "0190a1b2-aaaa".into(),
            name: "pump-17".into(),
            status: "accepted".into(),
            online: true,
            identity: Default::default(),
            agent_version: None,
            created_at: 0,
            last_seen_at: Some(90),
            tags: vec!["site-a".into()],
        };
        let text = table(&[device], 100);
        assert_eq!(
            text,
            "ID             NAME     STATUS    ONLINE  LAST SEEN  TAGS\n\
             0190a1b2-aaaa  pump-17  accepted  yes     10s ago    site-a\n"
        );
    }
}
