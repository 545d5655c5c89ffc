//! The stored logins: one per named profile (`CONFIG_DIR/profiles/NAME.json`, holding a bearer
//! token), plus `CONFIG_DIR/current-profile` naming the one used when none is chosen. Tokens
//! make every file owner-only (0600 in 0700 directories), written atomically (a crash never
//! leaves half a file). The single `CONFIG_DIR/credentials.json` of earlier versions is moved
//! to the profile `default` the first time it is looked at.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Where earlier versions kept their one login.
const LEGACY_FILE_NAME: &str = "credentials.json";
const PROFILES_DIR: &str = "profiles";
const CURRENT_FILE_NAME: &str = "current-profile";
/// The profile used when none is chosen and none is current (and the old login's new name).
pub const DEFAULT_PROFILE: &str = "default";

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

/// `--profile`/`TETHER_PROFILE`: a name that is a plain file name and one shell and ssh_config
/// word (it is written into `tether ssh-config`'s ProxyCommand).
pub fn parse_profile_name(text: &str) -> Result<String, String> {
    let plain = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with(['.', '-'])
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(text.to_owned())
    } else {
        Err("a profile name of letters, digits, '.', '_' and '-' (not first), at most 64".into())
    }
}

/// The profile a command uses: the one asked for, else the current one, else `default`.
pub fn selected_profile(dir: &Path, asked: Option<&str>) -> Result<String> {
    if let Some(name) = asked {
        return Ok(name.to_owned());
    }
    Ok(current(dir)?.unwrap_or_else(|| DEFAULT_PROFILE.to_owned()))
}

/// The current profile's name, if one was set (by `tether login` or `tether profiles use`).
pub fn current(dir: &Path) -> Result<Option<String>> {
    migrate(dir)?;
    let path = dir.join(CURRENT_FILE_NAME);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let name = parse_profile_name(text.trim()).map_err(|problem| {
        anyhow::anyhow!(
            "{} is damaged ({problem}); choose one with `tether profiles use NAME`",
            path.display()
        )
    })?;
    Ok(Some(name))
}

/// Makes `name` the current profile, or clears the choice with `None`.
pub fn set_current(dir: &Path, name: Option<&str>) -> Result<()> {
    let path = dir.join(CURRENT_FILE_NAME);
    match name {
        Some(name) => write_private(dir, &path, format!("{name}\n").as_bytes()),
        None => remove_file(&path).map(drop),
    }
}

fn profile_path(dir: &Path, profile: &str) -> PathBuf {
    dir.join(PROFILES_DIR).join(format!("{profile}.json"))
}

/// The credentials stored for `profile`, or `None` when it is not logged in.
pub fn load(dir: &Path, profile: &str) -> Result<Option<Credentials>> {
    migrate(dir)?;
    read_credentials(&profile_path(dir, profile))
}

fn read_credentials(path: &Path) -> Result<Option<Credentials>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let credentials = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; log in again with `tether login`", path.display()))?;
    Ok(Some(credentials))
}

/// Every stored profile, by name, with its credentials (`None` for a damaged file).
pub fn list(dir: &Path) -> Result<Vec<(String, Option<Credentials>)>> {
    migrate(dir)?;
    let profiles = dir.join(PROFILES_DIR);
    let entries = match fs::read_dir(&profiles) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", profiles.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", profiles.display()))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".json"))
            .filter(|name| parse_profile_name(name).is_ok())
        else {
            continue; // temporary files and strangers
        };
        found.push((name.to_owned(), read_credentials(&path).ok().flatten()));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Writes `credentials` as `profile` with mode 0600, through a temporary file renamed over the
/// old one.
pub fn save(dir: &Path, profile: &str, credentials: &Credentials) -> Result<()> {
    migrate(dir)?;
    let mut text = serde_json::to_vec_pretty(credentials)?;
    text.push(b'\n');
    write_private(dir, &profile_path(dir, profile), &text)
}

/// Deletes the credentials stored as `profile`; returns whether there were any.
pub fn remove(dir: &Path, profile: &str) -> Result<bool> {
    migrate(dir)?;
    remove_file(&profile_path(dir, profile))
}

fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// Moves an earlier version's single login to the profile `default` (made current when no
/// profile is), unless that profile exists already: then the old file is left as it is.
fn migrate(dir: &Path) -> Result<()> {
    let legacy = dir.join(LEGACY_FILE_NAME);
    if !legacy.exists() {
        return Ok(());
    }
    let target = profile_path(dir, DEFAULT_PROFILE);
    if target.exists() {
        return Ok(());
    }
    create_private_dir(&dir.join(PROFILES_DIR))?;
    // A rename keeps the file (and its 0600 mode) whole: nothing is lost if this is interrupted.
    fs::rename(&legacy, &target)
        .with_context(|| format!("cannot move {} to {}", legacy.display(), target.display()))?;
    if !dir.join(CURRENT_FILE_NAME).exists() {
        set_current(dir, Some(DEFAULT_PROFILE))?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to `path` (under the configuration directory `dir`) as a 0600 file,
/// atomically; missing directories are created 0700.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    create_private_dir(dir)?;
    let parent = path.parent().unwrap_or(dir);
    create_private_dir(parent)?;
    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("file");
    let temporary = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        // A leftover from a crashed run could have any mode; start from a fresh file.
        let _ = fs::remove_file(&temporary);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        anyhow::Error::new(error).context(format!("cannot write {}", path.display()))
    })
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn credentials_are_private_and_round_trip() {
        let dir = scratch_dir("save");
        save(&dir, "default", &sample()).unwrap();
        assert_eq!(mode(&profile_path(&dir, "default")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(PROFILES_DIR)), 0o700);
        assert_eq!(load(&dir, "default").unwrap(), Some(sample()));

        // Overwriting keeps the mode and leaves no temporary file behind.
        let mut changed = sample();
        changed.token = "other".into();
        save(&dir, "default", &changed).unwrap();
        assert_eq!(load(&dir, "default").unwrap().unwrap().token, "other");
        let entries: Vec<_> = fs::read_dir(dir.join(PROFILES_DIR)).unwrap().collect();
        assert_eq!(entries.len(), 1);

        assert!(remove(&dir, "default").unwrap());
        assert!(!remove(&dir, "default").unwrap());
        assert_eq!(load(&dir, "default").unwrap(), None);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn profiles_are_kept_apart_and_listed_with_the_current_one() {
        let dir = scratch_dir("profiles");
        assert!(list(&dir).unwrap().is_empty());
        assert_eq!(selected_profile(&dir, None).unwrap(), DEFAULT_PROFILE);
        let mut staging = sample();
        staging.hub = "https://staging.example.com".into();
        save(&dir, "prod", &sample()).unwrap();
        save(&dir, "staging", &staging).unwrap();
        set_current(&dir, Some("staging")).unwrap();
        assert_eq!(mode(&dir.join(CURRENT_FILE_NAME)), 0o600);
        assert_eq!(current(&dir).unwrap().as_deref(), Some("staging"));
        assert_eq!(selected_profile(&dir, None).unwrap(), "staging");
        assert_eq!(selected_profile(&dir, Some("prod")).unwrap(), "prod");
        assert_eq!(
            list(&dir).unwrap(),
            vec![
                ("prod".to_owned(), Some(sample())),
                ("staging".to_owned(), Some(staging))
            ]
        );
        set_current(&dir, None).unwrap();
        assert_eq!(current(&dir).unwrap(), None);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_old_single_login_becomes_the_default_profile() {
        let dir = scratch_dir("migrate");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        let legacy = dir.join(LEGACY_FILE_NAME);
        let mut text = serde_json::to_vec_pretty(&sample()).unwrap();
        text.push(b'\n');
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&legacy)
            .unwrap()
            .write_all(&text)
            .unwrap();

        assert_eq!(load(&dir, DEFAULT_PROFILE).unwrap(), Some(sample()));
        assert!(!legacy.exists());
        assert_eq!(fs::read(profile_path(&dir, DEFAULT_PROFILE)).unwrap(), text);
        assert_eq!(mode(&profile_path(&dir, DEFAULT_PROFILE)), 0o600);
        assert_eq!(current(&dir).unwrap().as_deref(), Some(DEFAULT_PROFILE));

        // An old login written again beside an existing `default` is left alone, not lost.
        fs::write(&legacy, "{}").unwrap();
        assert_eq!(load(&dir, DEFAULT_PROFILE).unwrap(), Some(sample()));
        assert!(legacy.exists());
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn profile_names_are_plain_words() {
        for good in ["default", "prod-eu", "lab.2", "a_b"] {
            assert_eq!(parse_profile_name(good).as_deref(), Ok(good));
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "x\n", "ü", &"n".repeat(65)] {
            assert!(parse_profile_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn damaged_credentials_say_how_to_recover() {
        let dir = scratch_dir("damaged");
        fs::create_dir_all(dir.join(PROFILES_DIR)).unwrap();
        fs::write(profile_path(&dir, "default"), "{not json").unwrap();
        let error = format!("{:#}", load(&dir, "default").unwrap_err());
        assert!(error.contains("tether login"), "{error}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
