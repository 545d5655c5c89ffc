//! The hub's management API, defined once: the JSON body of every request and response (serde
//! types, one module per resource) and every path ([`paths`]). The hub answers with these types
//! and the CLI reads them; the hub's OpenAPI description (`/api/openapi.json`, feature `openapi`)
//! takes its schemas from them.
//!
//! The shapes are pinned to what the hub sends today (field names, which fields may be `null`,
//! which are left out): each module's tests round-trip a sample of the hub's JSON.

pub mod access;
pub mod active_sessions;
pub mod audit;
pub mod devices;
pub mod exec_runs;
pub mod files;
pub mod install_tokens;
pub mod login;
pub mod paths;
pub mod roles;
pub mod sessions;
pub mod tokens;
pub mod two_factor;
pub mod users;

use serde::{Deserialize, Serialize};

pub use access::*;
pub use active_sessions::*;
pub use audit::*;
pub use devices::*;
pub use exec_runs::*;
pub use files::*;
pub use install_tokens::*;
pub use login::*;
pub use paths::{DEVICES_PATH, LOGIN_PATH, LOGOUT_PATH, device_path, user_connect_path};
pub use roles::*;
pub use sessions::*;
pub use tokens::*;
pub use two_factor::*;
pub use users::*;

/// Every error response of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: String,
}

/// An empty JSON object: the body of a POST that carries nothing (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Empty {}

#[cfg(test)]
pub(crate) mod testing {
    use serde::{Serialize, de::DeserializeOwned};

    /// Decodes `sample`, encodes it again and checks that the JSON is the same value (neither a
    /// field renamed or dropped, nor a `null` turned into an absent field or back).
    pub fn round_trip<T: Serialize + DeserializeOwned>(sample: &str) -> T {
        let expected: serde_json::Value = serde_json::from_str(sample).expect("the sample is JSON");
        let decoded: T = serde_json::from_str(sample).expect("the sample decodes");
        let encoded = serde_json::to_value(&decoded).expect("the value encodes");
        assert_eq!(encoded, expected, "re-encoding changed the JSON");
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_empty_bodies() {
        let error: ApiError = testing::round_trip(r#"{"error":"no device with id x"}"#);
        assert_eq!(error.error, "no device with id x");
        testing::round_trip::<Empty>("{}");
        assert_eq!(serde_json::to_string(&Empty {}).unwrap(), "{}");
    }
}
