//! The stored login: `CONFIG_DIR/credentials.json`, holding a bearer token, so it is written
//! owner-only (file 0600 in a 0700 directory) and atomically (a crash never leaves half a file).

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "credentials.json";

/// What `tether login` stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// The hub, normalised (`https://host:port`).
    pub hub: String,
    /// Absolute path of the PEM file trusted for this hub, if one was given.
    pub ca: Option<String>,
    pub token: String,
    pub user: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `TETHER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/tether`, else `$HOME/.config/tether`.
pub fn config_dir() -> Result<PathBuf> {
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("TETHER_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("tether"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("tether")),
        None => bail!("cannot find a configuration directory: set TETHER_CONFIG_DIR or HOME"),
    }
}

fn credentials_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The stored credentials, or `None` when nobody is logged in.
pub fn load(dir: &Path) -> Result<Option<Credentials>> {
    let path = credentials_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let credentials = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; log in again with `tether login`", path.display()))?;
    Ok(Some(credentials))
}

/// Writes `credentials` with mode 0600, through a temporary file renamed over the old one.
pub fn save(dir: &Path, credentials: &Credentials) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = credentials_path(dir);
    let temporary = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        // A leftover from a crashed run could have any mode; start from a fresh file.
        let _ = fs::remove_file(&temporary);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        let mut text = serde_json::to_vec_pretty(credentials)?;
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        anyhow::Error::new(error).context(format!("cannot write {}", path.display()))
    })
}

/// Deletes the stored credentials; returns whether there were any.
pub fn remove(dir: &Path) -> Result<bool> {
    let path = credentials_path(dir);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot delete {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tether-cli-test-{name}-{}-{}",
            std::process::id(),
            tether_proto::clock::unix_millis()
        ));
        dir.join("tether")
    }

    fn sample() -> Credentials {
        Credentials {
            hub: "https://127.0.0.1:8443".into(),
            ca: Some("/tmp/hub.pem".into()),
            token: "secret".into(),
            user: "admin".into(),
            expires_at: 1_900_000_000,
        }
    }

    #[test]
    fn credentials_are_private_and_round_trip() {
        let dir = scratch_dir("save");
        save(&dir, &sample()).unwrap();
        let file_mode = fs::metadata(dir.join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(load(&dir).unwrap(), Some(sample()));

        // Overwriting keeps the mode and leaves no temporary file behind.
        let mut changed = sample();
        changed.token = "other".into();
        save(&dir, &changed).unwrap();
        assert_eq!(load(&dir).unwrap().unwrap().token, "other");
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1);

        assert!(remove(&dir).unwrap());
        assert!(!remove(&dir).unwrap());
        assert_eq!(load(&dir).unwrap(), None);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn damaged_credentials_say_how_to_recover() {
        let dir = scratch_dir("damaged");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(FILE_NAME), "{not json").unwrap();
        let error = format!("{:#}", load(&dir).unwrap_err());
        assert!(error.contains("tether login"), "{error}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
