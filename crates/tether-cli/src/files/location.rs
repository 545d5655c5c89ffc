//! Telling `DEVICE:PATH` from a local path, scp-style, and joining remote (POSIX) paths.

use std::path::PathBuf;

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Local(PathBuf),
    Remote { device: String, path: String },
}

/// `DEVICE:PATH` is remote when DEVICE is not empty and has no `/`; anything else (`./a:b`,
/// `/tmp/a:b`, `file`) is local.
pub fn parse(argument: &str) -> Result<Location> {
    match argument.split_once(':') {
        Some((device, path)) if !device.is_empty() && !device.contains('/') => {
            if path.is_empty() {
                bail!("{argument}: no path after the device name (give DEVICE:/PATH)");
            }
            Ok(Location::Remote {
                device: device.to_owned(),
                path: path.to_owned(),
            })
        }
        _ => Ok(Location::Local(PathBuf::from(argument))),
    }
}

/// The last component of a remote path (`/data/logs/` → `logs`); `/` for the root.
pub fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// `dir/name` for remote paths.
pub fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    format!("{dir}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(device: &str, path: &str) -> Location {
        Location::Remote {
            device: device.into(),
            path: path.into(),
        }
    }

    #[test]
    fn device_paths_and_local_paths() {
        assert_eq!(parse("pump-17:/data/x").unwrap(), remote("pump-17", "/data/x"));
        assert_eq!(parse("0190a1b2:rel/x").unwrap(), remote("0190a1b2", "rel/x"));
        assert_eq!(parse("dev:/a:b").unwrap(), remote("dev", "/a:b"));
        assert_eq!(parse("file.txt").unwrap(), Location::Local("file.txt".into()));
        assert_eq!(parse("./a:b").unwrap(), Location::Local("./a:b".into()));
        assert_eq!(parse("/tmp/a:b").unwrap(), Location::Local("/tmp/a:b".into()));
        assert_eq!(parse(":x").unwrap(), Location::Local(":x".into()));
        assert!(parse("dev:").is_err());
    }

    #[test]
    fn remote_path_helpers() {
        assert_eq!(basename("/data/logs/"), "logs");
        assert_eq!(basename("/data/f"), "f");
        assert_eq!(basename("f"), "f");
        assert_eq!(basename("/"), "/");
        assert_eq!(join("/data/", "f"), "/data/f");
        assert_eq!(join("/", "f"), "/f");
        assert_eq!(join("/data", "f"), "/data/f");
    }
}
