//! `tether-hub restore FILE`: a backup (`service::backup`, which describes the format) back
//! into a data directory, for a new hub. Refused while a hub runs on that directory (its lock),
//! and refused if the database or any key file is already there: a restore never overwrites.
//!
//! Files are first written to `DATA_DIR/restore.partial/`, checked against the manifest's sizes
//! and SHA-256 (and the database with SQLite's `quick_check`), and only then moved into place.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::{
    config::HubConfig,
    service::backup::{self, DATABASE, FORMAT, MANIFEST, Manifest},
    service::data_lock::DataDirLock,
    service::secrets,
    store,
};

/// The largest manifest read (it lists a handful of files).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Restores `input` into the data directory of `config`; returns the manifest.
pub async fn restore(config: &HubConfig, input: &Path) -> anyhow::Result<Manifest> {
    let database = backup::sqlite_path(config)?.ok_or_else(|| backup::refuse_postgres("restore"))?;
    let data_dir = &config.data_dir;
    secrets::secure_data_dir(data_dir)?;
    // Held until the files are in place: a hub started meanwhile is refused too.
    let _lock = DataDirLock::acquire(data_dir)?;
    let mut targets: BTreeMap<String, PathBuf> = backup::key_files(config)
        .into_iter()
        .map(|(name, path)| (name.to_owned(), path))
        .collect();
    // TLS files are restored into the data directory even where the configuration names others.
    for name in ["tls/hub.crt", "tls/hub.key"] {
        targets
            .entry(name.to_owned())
            .or_insert_with(|| data_dir.join(name));
    }
    targets.insert(DATABASE.to_owned(), database.clone());
    // The database first: it is what an operator restoring over a live hub must hear about.
    let existing = std::iter::once(&database).chain(targets.values());
    for path in existing {
        anyhow::ensure!(
            !path.exists(),
            "{} already exists: restore never overwrites a hub's files; restore into a new \
             data directory (--data-dir), or move this one away first",
            path.display()
        );
    }
    let staging = data_dir.join("restore.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    secrets::private_dir(&staging)?;
    let result = async {
        let manifest = unpack(input, &staging, &targets)?;
        store::backup::check_sqlite(&staging.join(DATABASE)).await?;
        for file in &manifest.files {
            let target = &targets[&file.name];
            if let Some(parent) = target.parent() {
                secrets::private_dir(parent)?;
            }
            fs::rename(staging.join(&file.name), target)
                .with_context(|| format!("moving the restored {} to {}", file.name, target.display()))?;
        }
        anyhow::Ok(manifest)
    }
    .await;
    let _ = fs::remove_dir_all(&staging);
    result
}

/// Reads the archive into `staging`, checking it against its manifest.
fn unpack(input: &Path, staging: &Path, targets: &BTreeMap<String, PathBuf>) -> anyhow::Result<Manifest> {
    let file = File::open(input).with_context(|| format!("opening the backup {}", input.display()))?;
    let not_a_backup = || format!("{} is not a Tether hub backup", input.display());
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut entries = archive.entries().with_context(not_a_backup)?;
    let mut first = entries
        .next()
        .with_context(not_a_backup)?
        .with_context(not_a_backup)?;
    anyhow::ensure!(
        first.path().ok().as_deref() == Some(Path::new(MANIFEST)) && first.size() <= MAX_MANIFEST_BYTES,
        "{} (its first entry is not {MANIFEST})",
        not_a_backup()
    );
    let mut text = Vec::new();
    first.read_to_end(&mut text)?;
    let manifest: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("{}: its {MANIFEST}", not_a_backup()))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{} is a backup of format {}; this hub reads format {FORMAT} (restore it with the hub \
         version that made it, {})",
        input.display(),
        manifest.format,
        manifest.hub_version
    );
    let mut expected: BTreeMap<&str, &backup::ManifestFile> = BTreeMap::new();
    for file in &manifest.files {
        anyhow::ensure!(
            targets.contains_key(&file.name),
            "{}: its manifest lists {:?}, which is not a file of a hub's data directory",
            input.display(),
            file.name
        );
        expected.insert(&file.name, file);
    }
    anyhow::ensure!(
        expected.contains_key(DATABASE),
        "{}: it holds no {DATABASE}",
        input.display()
    );
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {}", input.display()))?;
        let name = entry
            .path()
            .ok()
            .and_then(|path| path.to_str().map(str::to_owned))
            .unwrap_or_default();
        // Only the names the manifest lists (never `..` or an absolute path), once each.
        let listed = expected
            .remove(name.as_str())
            .with_context(|| format!("{}: unexpected entry {name:?}", input.display()))?;
        anyhow::ensure!(
            entry.header().entry_type().is_file() && entry.size() == listed.bytes,
            "{}: {name} is not the {}-byte file its manifest lists",
            input.display(),
            listed.bytes
        );
        let staged = staging.join(&name);
        if let Some(parent) = staged.parent() {
            secrets::private_dir(parent)?;
        }
        let sha256 = copy_hashed(&mut entry, &staged)?;
        anyhow::ensure!(
            sha256 == listed.sha256,
            "{}: {name} does not match its checksum (the backup is damaged)",
            input.display()
        );
    }
    if let Some(missing) = expected.keys().next() {
        anyhow::bail!(
            "{}: {missing} is missing (the backup is cut short)",
            input.display()
        );
    }
    Ok(manifest)
}

/// Copies `from` into the new private file `to`; returns the SHA-256 of what was copied.
fn copy_hashed(from: &mut impl io::Read, to: &Path) -> anyhow::Result<String> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])?;
    }
    file.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}
