//! Finding the device an operator means: by full id, by name, or by a unique id prefix (ids are
//! long; names are what people remember). The hub finds the candidates (`id_prefix=` and
//! `name=` on the device list, so a fleet is never downloaded to look up one device); the
//! precedence between them is decided here. Anyone can enrol a pending device under any name,
//! so accepted devices come first: a pending (or rejected) device never shadows an accepted one.

use anyhow::{Result, bail};
use tether_proto::api::{Device, DeviceQuery};

use crate::api::Api;

/// Asks the hub for the device `query` names, with the precedence of [`resolve`].
pub async fn find(api: &Api, query: &str) -> Result<Device> {
    let candidates = candidates(api, query).await?;
    resolve(&candidates, query).cloned()
}

/// [`find`] with the precedence of [`resolve_strictly`]: for accepting, rejecting or removing.
pub async fn find_strictly(api: &Api, query: &str) -> Result<Device> {
    let candidates = candidates(api, query).await?;
    resolve_strictly(&candidates, query).cloned()
}

/// Every device `query` could name: those whose id starts with it (an exact id included) and
/// those of exactly that name, each once, in the hub's order (by name).
async fn candidates(api: &Api, query: &str) -> Result<Vec<Device>> {
    if query.is_empty() {
        // An empty prefix matches every device; `resolve` refuses the empty query anyway.
        return Ok(Vec::new());
    }
    let by_id = DeviceQuery {
        id_prefix: Some(query.to_owned()),
        ..DeviceQuery::default()
    };
    let by_name = DeviceQuery {
        name: Some(query.to_owned()),
        ..DeviceQuery::default()
    };
    let mut found = api.devices_where(&by_id).await?;
    for device in api.devices_where(&by_name).await? {
        if !found.iter().any(|known| known.id == device.id) {
            found.push(device);
        }
    }
    found.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(found)
}

/// Picks the one device `query` names: an exact id first, then an exact name, then a unique
/// id prefix. At each step accepted devices win over the others; several matches of the same
/// standing are an error that lists them.
pub fn resolve<'a>(devices: &'a [Device], query: &str) -> Result<&'a Device> {
    resolve_with(devices, query, true)
}

/// [`resolve`] without preferring accepted devices: for accepting, rejecting or removing, which
/// act on pending devices too and must not silently pick one of several namesakes.
pub fn resolve_strictly<'a>(devices: &'a [Device], query: &str) -> Result<&'a Device> {
    resolve_with(devices, query, false)
}

fn resolve_with<'a>(devices: &'a [Device], query: &str, prefer_accepted: bool) -> Result<&'a Device> {
    if query.is_empty() {
        bail!("no device matches an empty name");
    }
    if let Some(device) = devices.iter().find(|d| d.id == query) {
        return Ok(device);
    }
    let steps: [&dyn Fn(&Device) -> bool; 2] = [&|d| d.name == query, &|d| d.id.starts_with(query)];
    for matches in steps {
        let mut found: Vec<&Device> = devices.iter().filter(|d| matches(d)).collect();
        if prefer_accepted && found.iter().any(|d| d.status == "accepted") {
            found.retain(|d| d.status == "accepted");
        }
        match found.as_slice() {
            [] => continue,
            [device] => return Ok(device),
            several => {
                let candidates = several
                    .iter()
                    .map(|d| format!("{} ({}, {})", d.id, d.name, d.status))
                    .collect::<Vec<_>>()
                    .join(", ");
                // One line: messages are printed with every control character escaped.
                bail!("`{query}` is ambiguous; it matches {candidates}; use the full device id");
            }
        }
    }
    bail!("no device matches {query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str) -> Device {
        Device {
            id: id.into(),
            name: name.into(),
            status: "accepted".into(),
            online: true,
            identity: Default::default(),
            agent_version: None,
            created_at: 0,
            last_seen_at: None,
            tags: Vec::new(),
            inventory: None,
            inventory_at: None,
        }
    }

    fn fleet() -> Vec<Device> {
        vec![
            device("0190a1b2-aaaa", "pump-17"),
            device("0190a1b2-bbbb", "pump-18"),
            device("0190ffff-cccc", "gateway"),
            device("0190eeee-dddd", "twin"),
            device("0190eeee-eeee", "twin"),
            // A name that looks like another device's id prefix.
            device("0190dddd-ffff", "0190ffff"),
        ]
    }

    #[test]
    fn exact_id_wins() {
        let devices = fleet();
        assert_eq!(resolve(&devices, "0190a1b2-aaaa").unwrap().name, "pump-17");
    }

    #[test]
    fn name_matches() {
        let devices = fleet();
        assert_eq!(resolve(&devices, "gateway").unwrap().id, "0190ffff-cccc");
    }

    #[test]
    fn exact_name_beats_id_prefix() {
        let devices = fleet();
        assert_eq!(resolve(&devices, "0190ffff").unwrap().id, "0190dddd-ffff");
    }

    #[test]
    fn unique_prefix_matches() {
        let devices = fleet();
        assert_eq!(resolve(&devices, "0190a1b2-b").unwrap().name, "pump-18");
    }

    #[test]
    fn ambiguous_prefix_lists_candidates() {
        let devices = fleet();
        let error = resolve(&devices, "0190a1b2").unwrap_err().to_string();
        assert!(error.contains("ambiguous"), "{error}");
        assert!(error.contains("0190a1b2-aaaa") && error.contains("0190a1b2-bbbb"));
        assert!(!error.contains("gateway"));
    }

    #[test]
    fn duplicate_names_are_ambiguous() {
        let devices = fleet();
        let error = resolve(&devices, "twin").unwrap_err().to_string();
        assert!(error.contains("0190eeee-dddd") && error.contains("0190eeee-eeee"));
    }

    #[test]
    fn a_pending_namesake_never_shadows_the_accepted_device() {
        let mut squatter = device("0190abab-0000", "gateway");
        squatter.status = "pending".into();
        let mut devices = fleet();
        devices.insert(0, squatter);
        assert_eq!(resolve(&devices, "gateway").unwrap().id, "0190ffff-cccc");
        // Two pending namesakes and no accepted one are still ambiguous.
        let mut lone = device("0190acac-0000", "lonely");
        lone.status = "pending".into();
        let mut twin = lone.clone();
        twin.id = "0190adad-0000".into();
        assert!(resolve(&[lone, twin], "lonely").is_err());
        // Managing devices by a shared name stays an error.
        assert!(resolve_strictly(&devices, "gateway").is_err());
    }

    #[test]
    fn nothing_matches() {
        let devices = fleet();
        assert_eq!(
            resolve(&devices, "nope").unwrap_err().to_string(),
            "no device matches nope"
        );
        assert!(resolve(&devices, "").is_err());
    }
}
