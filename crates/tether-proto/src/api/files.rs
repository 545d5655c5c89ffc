//! The HTTP file API (`.../deviceconnect/devices/{id}/download` and `/upload`, and the directory
//! listing `/devices/{id}/files`): its query parameters, the JSON answer of an upload and of a
//! listing. File data itself is not JSON.

use serde::{Deserialize, Serialize};

/// The query of `GET`/`HEAD .../download`: the file on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct DownloadQuery {
    pub path: String,
}

/// What an upload carries besides its data: multipart fields (Mender's form) or, for a raw
/// body, query parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct UploadFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Octal permission bits, e.g. `644` or `0644`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// The answer to an upload (201): where the file went, its size and SHA-256 (hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadSummary {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

/// The query of `GET /devices/{id}/files`: the directory on the device (absolute, no `..`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ListQuery {
    pub path: String,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    /// The name within the directory.
    pub name: String,
    /// The absolute path on the device.
    pub path: String,
    /// `file`, `directory`, `symlink`, `fifo`, `socket`, `char device`, `block device`, `other`.
    pub kind: String,
    pub size: i64,
    /// Permission bits in octal, e.g. `644`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    /// Last modification, Unix seconds.
    pub modified: i64,
}

/// The answer to `GET /devices/{id}/files`: the directory's entries in name order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileListing {
    pub path: String,
    pub entries: Vec<FileEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_file_shapes_are_pinned() {
        round_trip::<UploadSummary>(r#"{"path":"/tmp/a","size":3,"sha256":"ba7816bf"}"#);
        round_trip::<UploadFields>(r#"{"path":"/tmp/a","uid":0,"gid":0,"mode":"0644"}"#);
        round_trip::<DownloadQuery>(r#"{"path":"/etc/hostname"}"#);
        round_trip::<FileListing>(
            r#"{"path":"/data","entries":[{"name":"a.txt","path":"/data/a.txt","kind":"file",
            "size":3,"mode":"644","uid":0,"gid":0,"modified":1764800000}]}"#,
        );
    }
}
