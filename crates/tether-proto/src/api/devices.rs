//! Devices: the list (with its filters), one device as the hub shows it, and its tags.

use serde::{Deserialize, Serialize};

/// A device as the hub shows it (`GET /devices`, `POST /devices/{id}/accept`, `/reject`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    /// The `hostname` identity attribute, or the id when there is none.
    pub name: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    pub online: bool,
    pub identity: serde_json::Map<String, serde_json::Value>,
    pub agent_version: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    /// Tags (device groups are written `tag:NAME`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// What the device's agent last reported of itself (a Tether agent; a stock mender-connect
    /// reports nothing, and this is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<crate::inventory::Inventory>,
    /// When that inventory was reported, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_at: Option<i64>,
}

/// The answer to `GET /devices`: one page of devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    pub devices: Vec<Device>,
    /// How many devices matched the filters, before `offset` and `limit` cut the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The query of `GET /devices`; every filter is optional and they combine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct DeviceQuery {
    /// `pending`, `accepted` or `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Case-insensitive text to find in the name, id, agent version, identity or inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Only online (`true`) or offline (`false`) devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// Only the devices of exactly this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only the devices whose id starts with this (a full id is its own prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Only the devices whose reported architecture is this (case-insensitive), e.g. `aarch64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Only the devices whose reported OS name contains this (case-insensitive), e.g. `debian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Pagination: skip this many matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Pagination: at most this many (at most 1000); without it, every match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl DeviceQuery {
    /// `GET /devices?...` with the filters that are set, values percent-encoded.
    pub fn path(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let texts = [
            ("status", &self.status),
            ("search", &self.search),
            ("name", &self.name),
            ("id_prefix", &self.id_prefix),
            ("architecture", &self.architecture),
            ("os", &self.os),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        if let Some(online) = self.online {
            pairs.push(("online", online.to_string()));
        }
        if let Some(offset) = self.offset {
            pairs.push(("offset", offset.to_string()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        super::paths::with_query(super::paths::DEVICES_PATH, &pairs)
    }
}

/// `PUT /devices/{id}/tags` and its answer: the device's tags (sorted, without duplicates in
/// the answer).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceTags {
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    const DEVICE: &str = r#"{"id":"0190a1b2-aaaa","name":"pump-17","status":"accepted","online":true,
        "identity":{"hostname":"pump-17","mac":"00:11:22:33:44:55"},"agent_version":"0.4.0",
        "created_at":1714564800,"last_seen_at":null,"tags":["site-a"],
        "inventory":{"os_name":"Debian GNU/Linux","os_version":"12","kernel":"6.1.0-28-amd64",
        "architecture":"x86_64","hostname":"pump-17","addresses":["eth0 192.168.1.20/24"],
        "boot_time":1764800000,"agent_version":"0.4.0","features":["terminal","files"],
        "versions":[1,2,3]},"inventory_at":1764800100}"#;

    #[test]
    fn the_device_shapes_are_pinned() {
        let device: Device = round_trip(DEVICE);
        assert_eq!(device.identity["hostname"], "pump-17");
        assert_eq!(device.inventory.unwrap().architecture.as_deref(), Some("x86_64"));
        let list: DeviceList = round_trip(&format!(r#"{{"devices":[{DEVICE}],"total":1}}"#));
        assert_eq!(list.total, Some(1));
        round_trip::<DeviceTags>(r#"{"tags":["site-a","site-b"]}"#);
    }

    #[test]
    fn queries_carry_the_filters_that_are_set() {
        assert_eq!(DeviceQuery::default().path(), "/api/management/v1/devices");
        let query = DeviceQuery {
            status: Some("accepted".into()),
            name: Some("pump 17".into()),
            limit: Some(5),
            ..DeviceQuery::default()
        };
        assert_eq!(
            query.path(),
            "/api/management/v1/devices?status=accepted&name=pump%2017&limit=5"
        );
        let decoded: DeviceQuery = serde_json::from_str(r#"{"id_prefix":"0190","online":false}"#).unwrap();
        assert_eq!(decoded.id_prefix.as_deref(), Some("0190"));
        assert_eq!(decoded.online, Some(false));
    }
}
