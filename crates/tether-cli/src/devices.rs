//! `tether devices ...`: listing the fleet as a table or JSON, showing one device with its
//! inventory, and accepting, rejecting or removing one device.

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

/// `tether devices show DEVICE [--json]`: the device as the hub has it, with what its agent
/// reported of itself (a stock mender-connect reports nothing: only the hub's fields are shown).
pub async fn show(api: &Api, query: &str, json: bool) -> Result<()> {
    let found = find_strictly(api, query).await?;
    let device: Device = api.get(&device_path(&segment(&found.id))).await?;
    let text = if json {
        serde_json::to_string_pretty(&device)? + "\n"
    } else {
        details(&device, tether_proto::clock::unix_seconds())
    };
    print_listing(&text).context("writing to stdout")
}

/// One device, a field a line.
pub fn details(device: &Device, now: i64) -> String {
    let mut rows: Vec<[String; 2]> = vec![
        ["ID".into(), device.id.clone()],
        ["NAME".into(), device.name.clone()],
        ["STATUS".into(), device.status.clone()],
        ["ONLINE".into(), if device.online { "yes" } else { "no" }.into()],
        ["LAST SEEN".into(), last_seen(device.last_seen_at, now)],
        ["TAGS".into(), device.tags.join(",")],
    ];
    let Some(inventory) = &device.inventory else {
        rows.push(["AGENT".into(), device.agent_version.clone().unwrap_or_default()]);
        rows.push([
            "INVENTORY".into(),
            "none reported (a stock mender-connect reports none)".into(),
        ]);
        return output::table(&rows, None);
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "?".into());
    let os = [&inventory.os_name, &inventory.os_version]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let uptime = inventory.boot_time.map_or_else(
        || "?".to_owned(),
        |boot| {
            format!(
                "{} (booted {})",
                duration((now - boot).max(0)),
                crate::time_text::utc_minute(boot)
            )
        },
    );
    let versions: Vec<String> = inventory.versions.iter().map(u32::to_string).collect();
    rows.extend([
        ["AGENT".into(), text(&inventory.agent_version)],
        ["OS".into(), if os.is_empty() { "?".into() } else { os }],
        ["KERNEL".into(), text(&inventory.kernel)],
        ["ARCHITECTURE".into(), text(&inventory.architecture)],
        ["HOSTNAME".into(), text(&inventory.hostname)],
        ["ADDRESSES".into(), inventory.addresses.join(", ")],
        ["UPTIME".into(), uptime],
        ["FEATURES".into(), inventory.features.join(", ")],
        ["PROTOCOLS".into(), versions.join(", ")],
        ["REPORTED".into(), last_seen(device.inventory_at, now)],
    ]);
    output::table(&rows, None)
}

/// "45s", "12m", "3h 20m", "2d 4h".
fn duration(seconds: i64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86400, seconds % 86400 / 3600),
    }
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
            inventory: None,
            inventory_at: None,
        };
        let text = table(std::slice::from_ref(&device), 100);
        assert_eq!(
            text,
            "ID             NAME     STATUS    ONLINE  LAST SEEN  TAGS\n\
             0190a1b2-aaaa  pump-17  accepted  yes     10s ago    site-a\n"
        );
        assert!(details(&device, 100).contains("none reported"));
        let reported = Device {
            inventory: Some(tether_proto::inventory::Inventory {
                os_name: Some("Debian GNU/Linux".into()),
                os_version: Some("12".into()),
                architecture: Some("aarch64".into()),
                boot_time: Some(100 - 2 * 86400 - 3 * 3600),
                versions: vec![1, 2, 3],
                ..Default::default()
            }),
            inventory_at: Some(40),
            ..device
        };
        let text = details(&reported, 100);
        assert!(text.contains("OS            Debian GNU/Linux 12\n"), "{text}");
        assert!(text.contains("ARCHITECTURE  aarch64\n"), "{text}");
        assert!(text.contains("UPTIME        2d 3h (booted "), "{text}");
        assert!(text.contains("PROTOCOLS     1, 2, 3\n"), "{text}");
        assert!(text.contains("REPORTED      1m ago\n"), "{text}");
    }
}
