//! `tether-hub backup FILE`: one file with what a SQLite hub needs to come back on another
//! machine, made while it runs. The format, read by `service::restore`:
//!
//! a tar archive (ustar/GNU, readable with `tar tvf`) whose first entry is `tether-backup.json`,
//! the manifest (`format` 1, the hub's version, the time, and each file's name, size and
//! SHA-256), followed by the files it names, each mode 0600, with paths as in the data directory:
//! `hub.db` (a `VACUUM INTO` copy: one consistent state of the live database), `tls/hub.crt` and
//! `tls/hub.key` (unless the configuration names its own), `signing.key`, `audit-signing.key`
//! (from wherever the configuration keeps it), `encryption.key` and `replica-id` (so that the
//! restored hub closes the terminals that were open at the backup as `interrupted`).
//!
//! Recordings are in `hub.db` (migration 0017), so the copy holds them; recordings made before
//! that are files in `recordings/`, not in the archive: copy them with it if they must survive.
//! With PostgreSQL, backups are `pg_dump`'s job (docs/operations.md).

use std::{
    fs::{self, File},
    io::{self, Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{config::HubConfig, service::secret_box, service::secrets, store};

/// The manifest's name, the archive's first entry.
pub const MANIFEST: &str = "tether-backup.json";
/// The format this hub writes and reads.
pub const FORMAT: u32 = 1;
/// The database's name in the archive.
pub const DATABASE: &str = "hub.db";

/// What the archive holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub hub_version: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The path in the archive and in the data directory.
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The PostgreSQL refusal, shared by backup and restore.
pub fn refuse_postgres(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "this hub's database is PostgreSQL (database_url), which `tether-hub {what}` does not \
         handle: use pg_dump and pg_restore, and keep the data directory's key files, as \
         docs/operations.md (\"Backups with PostgreSQL\") describes"
    )
}

/// The SQLite file of `config`, or None with PostgreSQL.
pub fn sqlite_path(config: &HubConfig) -> anyhow::Result<Option<PathBuf>> {
    match config.database_url.as_deref() {
        None => Ok(Some(config.data_dir.join(DATABASE))),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(None),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) => Ok(Some(PathBuf::from(path.split('?').next().unwrap_or(path)))),
            None => anyhow::bail!("unsupported database URL (postgres:// or sqlite://)"),
        },
    }
}

/// The key files of `config` besides the database: (name in the archive, where it is).
pub fn key_files(config: &HubConfig) -> Vec<(&'static str, PathBuf)> {
    let data_dir = &config.data_dir;
    let mut files = Vec::new();
    if config.tls_cert.is_none() {
        files.push(("tls/hub.crt", data_dir.join("tls/hub.crt")));
        files.push(("tls/hub.key", data_dir.join("tls/hub.key")));
    }
    files.push(("signing.key", data_dir.join("signing.key")));
    let audit_key = config
        .audit_signing_key
        .clone()
        .unwrap_or_else(|| data_dir.join("audit-signing.key"));
    files.push(("audit-signing.key", audit_key));
    files.push((secret_box::KEY_FILE, data_dir.join(secret_box::KEY_FILE)));
    files.push(("replica-id", data_dir.join("replica-id")));
    files
}

/// Writes the backup of the hub of `config` to `output` (replaced if it exists, atomically);
/// returns the manifest.
pub async fn backup(config: &HubConfig, output: &Path) -> anyhow::Result<Manifest> {
    let database = sqlite_path(config)?.ok_or_else(|| refuse_postgres("backup"))?;
    let mut sources = Vec::new();
    for (name, path) in key_files(config) {
        anyhow::ensure!(
            path.is_file(),
            "{} is missing, so the backup would not bring the hub back (has a hub run on {}?)",
            path.display(),
            config.data_dir.display()
        );
        sources.push((name.to_owned(), path));
    }
    // Everything temporary sits beside the output, private, and goes whatever happens.
    let scratch = sibling(output, "partial.d");
    let partial = sibling(output, "partial");
    remove_stale(&scratch)?;
    secrets::private_dir(&scratch)?;
    let result = async {
        let copy = scratch.join(DATABASE);
        store::backup::copy_sqlite(&database, &copy).await?;
        sources.insert(0, (DATABASE.to_owned(), copy));
        let manifest = write_archive(&sources, &partial)?;
        fs::rename(&partial, output).with_context(|| format!("writing {}", output.display()))?;
        anyhow::Ok(manifest)
    }
    .await;
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_file(&partial);
    result
}

/// `FILE.SUFFIX`, beside `file`.
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The SHA-256 and size of a file, streamed.
pub fn digest(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            return Ok((hex::encode(hasher.finalize()), bytes));
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
}

/// A tar header for a private regular file of `bytes`.
fn header(bytes: u64, now_secs: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes);
    header.set_mode(0o600);
    header.set_mtime(now_secs);
    header
}

fn write_archive(sources: &[(String, PathBuf)], partial: &Path) -> anyhow::Result<Manifest> {
    let now = tether_proto::clock::unix_millis();
    let now_secs = u64::try_from(now / 1000).unwrap_or(0);
    let mut files = Vec::new();
    for (name, path) in sources {
        let (sha256, bytes) = digest(path)?;
        files.push(ManifestFile {
            name: name.clone(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        hub_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now,
        files,
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut archive = tar::Builder::new(io::BufWriter::new(file));
    let text = serde_json::to_vec_pretty(&manifest)?;
    archive.append_data(
        &mut header(text.len() as u64, now_secs),
        MANIFEST,
        text.as_slice(),
    )?;
    for ((name, path), listed) in sources.iter().zip(&manifest.files) {
        let source = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        // Exactly the bytes hashed: a key file does not change under a running hub.
        archive
            .append_data(
                &mut header(listed.bytes, now_secs),
                name,
                source.take(listed.bytes),
            )
            .with_context(|| format!("adding {} to the backup", path.display()))?;
    }
    let mut writer = archive.into_inner()?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    Ok(manifest)
}
