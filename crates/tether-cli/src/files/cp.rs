//! `tether cp [-r] SRC... DST`: scp-like copies between local paths and `DEVICE:PATH`.
//!
//! Downloads `stat` each source (and `list` directories, version 2), then fetch each file,
//! recreating directories with their remote modes and mtimes. Uploads `stat` the destination
//! (copying into an existing directory, like cp), `mkdir` directories (version 2) and
//! `put_file` each file with its local mode. One transfer at a time, on one session.

use std::{
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tether_proto::file_transfer::{FileInfo, FileTransfer, go_mode};

use super::{
    download::{download, set_mtime},
    link::Link,
    listing::{is_dir, is_regular, kind},
    location::{Location, basename, join, parse},
    ls::stat,
    progress::Progress,
    refused,
    upload::upload,
};
use crate::{hub::HubOptions, output::print_listing};

pub struct CpArgs {
    pub recursive: bool,
    pub json: bool,
    pub sources: Vec<String>,
    pub destination: String,
}

/// What was copied, for the `--json` summary.
struct Summary {
    files: u64,
    bytes: u64,
    sha256: Vec<String>,
}

pub async fn run(options: &HubOptions, args: CpArgs) -> Result<i32> {
    let started = Instant::now();
    let destination = parse(&args.destination)?;
    let sources = args
        .sources
        .iter()
        .map(|source| parse(source))
        .collect::<Result<Vec<_>>>()?;
    let (link, summary) = match destination {
        Location::Remote { device, path } => {
            let mut locals = Vec::new();
            for source in sources {
                match source {
                    Location::Local(path) => locals.push(path),
                    Location::Remote { .. } => {
                        bail!(
                            "copying from one device to another is not supported; copy through a local file"
                        )
                    }
                }
            }
            let mut link = Link::open(options, &device).await?;
            let summary = upload_all(&mut link, &locals, &path, args.recursive).await?;
            (link, summary)
        }
        Location::Local(local) => {
            let mut device = None;
            let mut remotes = Vec::new();
            for source in sources {
                match source {
                    Location::Remote { device: name, path } => {
                        if device.as_ref().is_some_and(|known| *known != name) {
                            bail!("all sources must be on the same device");
                        }
                        device = Some(name);
                        remotes.push(path);
                    }
                    Location::Local(path) => bail!(
                        "{}: both sides are local; one of them must be DEVICE:PATH \
                         (a local path with ':' can be written ./a:b)",
                        path.display()
                    ),
                }
            }
            let Some(device) = device else {
                bail!("nothing to copy");
            };
            let mut link = Link::open(options, &device).await?;
            let summary = download_all(&mut link, &remotes, &local, args.recursive).await?;
            (link, summary)
        }
    };
    let resumed = link.reconnects;
    link.close().await;
    if args.json {
        let mut report = json!({
            "files": summary.files,
            "bytes": summary.bytes,
            "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "resumed": resumed,
        });
        if let [sha256] = summary.sha256.as_slice() {
            report["sha256"] = json!(sha256);
        }
        print_listing(&format!("{report}\n"))?;
    }
    Ok(0)
}

/// A remote file to fetch, or a local directory to create.
enum Fetch {
    File {
        remote: String,
        info: FileInfo,
        local: PathBuf,
    },
    Directory {
        info: FileInfo,
        local: PathBuf,
    },
}

async fn download_all(
    link: &mut Link,
    sources: &[String],
    destination: &Path,
    recursive: bool,
) -> Result<Summary> {
    let into_directory = destination.is_dir();
    if sources.len() > 1 && !into_directory {
        bail!(
            "{}: not a directory (copying several sources)",
            destination.display()
        );
    }
    let mut plan = Vec::new();
    for source in sources {
        let info = stat(link, source).await?;
        let local = if into_directory {
            destination.join(basename(source))
        } else {
            destination.to_path_buf()
        };
        if is_dir(&info) {
            if !recursive {
                bail!("{}:{source}: is a directory (use -r)", link.label);
            }
            if !link.can_resume() {
                bail!(
                    "{}:{source}: copying a directory needs a tether-agent (protocol version 2) \
                     to list it; this device speaks version {}",
                    link.label,
                    link.version()
                );
            }
            plan_directory(link, source.clone(), info, local, &mut plan).await?;
        } else if is_regular(&info) {
            plan.push(Fetch::File {
                remote: source.clone(),
                info,
                local,
            });
        } else {
            bail!(
                "{}:{source}: not a regular file ({}): only regular files are copied",
                link.label,
                kind(&info)
            );
        }
    }
    let total = plan
        .iter()
        .map(|fetch| match fetch {
            Fetch::File { info, .. } => info.size.max(0) as u64,
            Fetch::Directory { .. } => 0,
        })
        .sum();
    let mut progress = Progress::new(total);
    let mut summary = Summary {
        files: 0,
        bytes: 0,
        sha256: Vec::new(),
    };
    let mut directories = Vec::new();
    let result = async {
        for fetch in &plan {
            match fetch {
                Fetch::Directory { info, local } => {
                    if !local.is_dir() {
                        std::fs::create_dir(local)
                            .with_context(|| format!("cannot create {}", local.display()))?;
                    }
                    directories.push((info, local));
                }
                Fetch::File { remote, info, local } => {
                    progress.file(remote);
                    let sha256 = download(link, remote, info, local, &progress).await?;
                    progress.file_done(info.size.max(0) as u64);
                    summary.files += 1;
                    summary.bytes += info.size.max(0) as u64;
                    summary.sha256.push(sha256);
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish();
    result?;
    // Deepest first, after their contents: a read-only mode must not stop the copy, and
    // writing a file into a directory changes its mtime.
    for (info, local) in directories.into_iter().rev() {
        finish_directory(info, local).with_context(|| format!("finishing {}", local.display()))?;
    }
    Ok(summary)
}

/// Lists `remote` recursively (depth first, in name order) into `plan`.
async fn plan_directory(
    link: &mut Link,
    remote: String,
    info: FileInfo,
    local: PathBuf,
    plan: &mut Vec<Fetch>,
) -> Result<()> {
    let mut pending = vec![(remote, info, local)];
    while let Some((remote, info, local)) = pending.pop() {
        let entries = match link.request(&FileTransfer::List { path: remote.clone() }).await? {
            FileTransfer::FileList { entries, .. } => entries,
            FileTransfer::Error(body) => return Err(refused(&link.label, &remote, &body)),
            other => bail!(
                "{}:{remote}: unexpected `{}` answer to list",
                link.label,
                other.typ()
            ),
        };
        plan.push(Fetch::Directory {
            info,
            local: local.clone(),
        });
        let mut subdirectories = Vec::new();
        for entry in entries {
            let name = basename(&entry.path).to_owned();
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                continue;
            }
            let child = join(&remote, &name);
            if is_dir(&entry) {
                subdirectories.push((child, entry, local.join(&name)));
            } else if is_regular(&entry) {
                plan.push(Fetch::File {
                    remote: child,
                    info: entry,
                    local: local.join(&name),
                });
            } else {
                crate::output::say!(
                    "tether: {}:{child}: skipped (not a regular file: {})",
                    link.label,
                    kind(&entry)
                );
            }
        }
        pending.extend(subdirectories.into_iter().rev());
    }
    Ok(())
}

fn finish_directory(info: &FileInfo, local: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let directory = std::fs::File::open(local)?;
    set_mtime(directory.as_raw_fd(), info.modtime)?;
    let mode = go_mode::to_unix_permissions(info.mode);
    std::fs::set_permissions(local, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A local file to send, or a remote directory to create.
enum Send {
    File {
        local: PathBuf,
        remote: String,
        size: u64,
    },
    Directory {
        remote: String,
        mode: u32,
    },
}

async fn upload_all(
    link: &mut Link,
    sources: &[PathBuf],
    destination: &str,
    recursive: bool,
) -> Result<Summary> {
    // Copying into an existing directory, like cp; anything else (not found...) is the target.
    let into_directory = match link
        .request(&FileTransfer::Stat {
            path: destination.to_owned(),
        })
        .await?
    {
        FileTransfer::FileInfo(info) => is_dir(&info),
        _ => false,
    };
    if sources.len() > 1 && !into_directory {
        bail!(
            "{}:{destination}: not a directory (copying several sources)",
            link.label
        );
    }
    let mut plan = Vec::new();
    for source in sources {
        let metadata =
            std::fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
        let name = source
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| basename(&source.to_string_lossy()).to_owned());
        let remote = if into_directory {
            join(destination, &name)
        } else {
            destination.to_owned()
        };
        if metadata.is_dir() {
            if !recursive {
                bail!("{}: is a directory (use -r)", source.display());
            }
            if !link.can_resume() {
                bail!(
                    "{}: copying a directory needs a tether-agent (protocol version 2) to create \
                     directories; {} speaks version {}",
                    source.display(),
                    link.label,
                    link.version()
                );
            }
            plan_local_directory(source, remote, &mut plan)?;
        } else if metadata.is_file() {
            plan.push(Send::File {
                local: source.clone(),
                remote,
                size: metadata.len(),
            });
        } else {
            bail!("{}: not a regular file", source.display());
        }
    }
    let total = plan
        .iter()
        .map(|send| match send {
            Send::File { size, .. } => *size,
            Send::Directory { .. } => 0,
        })
        .sum();
    let mut progress = Progress::new(total);
    let mut summary = Summary {
        files: 0,
        bytes: 0,
        sha256: Vec::new(),
    };
    let result = async {
        for send in &plan {
            match send {
                Send::Directory { remote, mode } => mkdir(link, remote, *mode).await?,
                Send::File { local, remote, size } => {
                    progress.file(&local.to_string_lossy());
                    let sha256 = upload(link, local, remote, &progress).await?;
                    progress.file_done(*size);
                    summary.files += 1;
                    summary.bytes += size;
                    summary.sha256.push(sha256);
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish();
    result?;
    Ok(summary)
}

/// Walks a local tree (depth first, in name order; symbolic links skipped) into `plan`.
fn plan_local_directory(local: &Path, remote: String, plan: &mut Vec<Send>) -> Result<()> {
    let metadata = std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    plan.push(Send::Directory {
        remote: remote.clone(),
        mode: go_mode::from_unix(metadata.mode()),
    });
    let mut entries = std::fs::read_dir(local)
        .with_context(|| format!("cannot list {}", local.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", local.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = join(&remote, &name);
        let metadata =
            std::fs::symlink_metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            plan_local_directory(&path, child, plan)?;
        } else if metadata.is_file() {
            plan.push(Send::File {
                local: path,
                remote: child,
                size: metadata.len(),
            });
        } else {
            crate::output::say!("tether: {}: skipped (not a regular file)", path.display());
        }
    }
    Ok(())
}

/// `mkdir`; a directory that already exists is fine.
async fn mkdir(link: &mut Link, remote: &str, mode: u32) -> Result<()> {
    let answer = link
        .request(&FileTransfer::Mkdir {
            path: remote.to_owned(),
            mode: Some(mode),
        })
        .await?;
    match answer {
        FileTransfer::Ack { .. } => Ok(()),
        FileTransfer::Error(body) if body.code == Some(409) => match stat(link, remote).await {
            Ok(info) if is_dir(&info) => Ok(()),
            _ => Err(refused(&link.label, remote, &body)),
        },
        FileTransfer::Error(body) => Err(refused(&link.label, remote, &body)),
        other => bail!(
            "{}:{remote}: unexpected `{}` answer to mkdir",
            link.label,
            other.typ()
        ),
    }
}
