//! A device, as the hub knows it: its key, identity, name, status, tags and inventory.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Accepted,
    Rejected,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Accepted => "accepted",
            DeviceStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceStatus> {
        match text {
            "pending" => Some(DeviceStatus::Pending),
            "accepted" => Some(DeviceStatus::Accepted),
            "rejected" => Some(DeviceStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub id: String,
    pub public_key: String,
    /// Identity attributes, a JSON object.
    pub identity: String,
    pub name: String,
    pub status: DeviceStatus,
    pub agent_version: Option<String>,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    /// Sorted tag names (device groups are defined by tags).
    pub tags: Vec<String>,
    /// What the device's agent last reported of itself, if it ever did.
    pub inventory: Option<ReportedInventory>,
}

/// A device's inventory as stored: its JSON and when it arrived (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedInventory {
    pub json: String,
    pub reported_at: i64,
}

#[cfg(test)]
impl DeviceRecord {
    /// An accepted device named by its id, with `tags`: what unit tests of decisions need.
    pub fn accepted_for_test(id: &str, tags: &[&str]) -> DeviceRecord {
        DeviceRecord {
            id: id.into(),
            public_key: String::new(),
            identity: "{}".into(),
            name: id.into(),
            status: DeviceStatus::Accepted,
            agent_version: None,
            created_at: 0,
            last_seen_at: None,
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            inventory: None,
        }
    }
}
