//! Tether extension of the device leg: the device's inventory (OS, kernel, architecture,
//! hostname, addresses, boot time, agent version, enabled features and protocol versions).
//!
//! The agent sends it as a control `inventory` with an empty `sid` right after its `sessions`
//! announcement, and again only when something in it changed (it re-checks every few minutes).
//! The hub stores it and shows it; a stock mender-connect sends none of it, and the hub shows
//! what it knows. Boot time rather than uptime travels, so that the message does not change every
//! second: readers derive uptime. Keys are short because the message rides metered links (a
//! typical one is 200 to 300 bytes of msgpack, see `docs/protocol.md`).

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    value::{Value, map},
};

/// The most entries a list of the inventory may carry; more are dropped (never an error).
pub const MAX_LIST: usize = 32;
/// The longest text of the inventory; longer texts are cut (on a character boundary).
pub const MAX_TEXT: usize = 256;

/// What a device reports of itself. Every field is optional: an agent sends what it could read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inventory {
    /// The OS name (`NAME` of `/etc/os-release`, e.g. `Debian GNU/Linux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    /// The OS version (`VERSION_ID`, else `VERSION`, of `/etc/os-release`, e.g. `12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// The kernel release (`uname -r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The machine architecture (`uname -m`, e.g. `x86_64`, `aarch64`, `armv7l`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Non-loopback IP addresses, with their interface: `eth0 192.168.1.20/24`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// When the device booted, Unix seconds (uptime = now − boot time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The features enabled on the device: `terminal`, `files`, `forwards`, `consent`.
    #[serde(default)]
    pub features: Vec<String>,
    /// The device-leg protocol versions the agent speaks (1 Mender, 2 Tether, 3 compact).
    #[serde(default)]
    pub versions: Vec<u32>,
}

/// The feature names of [`Inventory::features`].
pub mod feature {
    pub const TERMINAL: &str = "terminal";
    pub const FILES: &str = "files";
    pub const FORWARDS: &str = "forwards";
    pub const CONSENT: &str = "consent";
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(bounded)
}

fn texts(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .take(MAX_LIST)
        .map(bounded)
        .collect()
}

/// `text` cut to [`MAX_TEXT`] bytes, control characters dropped (it is shown in terminals and
/// pages).
fn bounded(text: &str) -> String {
    let mut out = String::new();
    for character in text.chars().filter(|c| !c.is_control()) {
        if out.len() + character.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(character);
    }
    out
}

impl Inventory {
    /// The msgpack body of the control `inventory`.
    pub fn to_value(&self) -> Value {
        let strings = |list: &[String]| Value::Array(list.iter().cloned().map(Value::Str).collect());
        let optional = |text: &Option<String>| text.clone().map(Value::Str);
        map([
            ("os", optional(&self.os_name)),
            ("osv", optional(&self.os_version)),
            ("kernel", optional(&self.kernel)),
            ("arch", optional(&self.architecture)),
            ("host", optional(&self.hostname)),
            (
                "ip",
                (!self.addresses.is_empty()).then(|| strings(&self.addresses)),
            ),
            ("boot", self.boot_time.map(Value::Int)),
            ("agent", optional(&self.agent_version)),
            ("feat", Some(strings(&self.features))),
            (
                "ver",
                Some(Value::Array(
                    self.versions.iter().map(|v| Value::Int(i64::from(*v))).collect(),
                )),
            ),
        ])
    }

    /// Reads a body written by [`Inventory::to_value`]; unknown keys are ignored, texts and
    /// lists bounded. Anything but a map is an error.
    pub fn from_value(value: &Value) -> Result<Inventory, Error> {
        if value.as_map().is_none() {
            return Err(Error::Missing("inventory"));
        }
        Ok(Inventory {
            os_name: text(value, "os"),
            os_version: text(value, "osv"),
            kernel: text(value, "kernel"),
            architecture: text(value, "arch"),
            hostname: text(value, "host"),
            addresses: texts(value, "ip"),
            boot_time: value.get("boot").and_then(Value::as_i64),
            agent_version: text(value, "agent"),
            features: texts(value, "feat"),
            versions: value
                .get("ver")
                .and_then(Value::as_array)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_u64)
                .filter_map(|v| u32::try_from(v).ok())
                .take(MAX_LIST)
                .collect(),
        })
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|feature| feature == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A typical device's inventory (the byte count of docs/protocol.md).
    pub fn typical() -> Inventory {
        Inventory {
            os_name: Some("Debian GNU/Linux".into()),
            os_version: Some("12".into()),
            kernel: Some("6.1.0-28-amd64".into()),
            architecture: Some("x86_64".into()),
            hostname: Some("pump-17".into()),
            addresses: vec![
                "eth0 192.168.1.20/24".into(),
                "eth0 fe80::1c2d:3eff:fe4f:5a6b/64".into(),
            ],
            boot_time: Some(1_764_800_000),
            agent_version: Some("0.1.0".into()),
            features: vec!["terminal".into(), "files".into(), "forwards".into()],
            versions: vec![1, 2, 3],
        }
    }

    #[test]
    fn hostile_values_are_bounded_and_never_fail() {
        let long = "x".repeat(10_000);
        let value = map([
            ("os", Some(Value::Str(format!("Evil\u{1b}[2J{long}")))),
            ("ip", Some(Value::Array(vec![Value::Str("a".into()); 1000]))),
            ("ver", Some(Value::Array(vec![Value::Int(-1), Value::Int(2)]))),
            ("boot", Some(Value::Str("soon".into()))),
        ]);
        let inventory = Inventory::from_value(&value).unwrap();
        let os = inventory.os_name.unwrap();
        assert!(os.len() <= MAX_TEXT && os.starts_with("Evil[2J"));
        assert_eq!(inventory.addresses.len(), MAX_LIST);
        assert_eq!(inventory.versions, [2]);
        assert_eq!(inventory.boot_time, None);
        assert!(Inventory::from_value(&Value::Int(3)).is_err());
        assert_eq!(Inventory::from_value(&map([])).unwrap(), Inventory::default());
    }
}
