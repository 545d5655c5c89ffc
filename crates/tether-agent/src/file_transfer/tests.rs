//! The session side through [`FileTransfers::handle`]: downloads with their window and
//! checksum, `stat`, `list`, `mkdir`, one transfer per session, and the temporary-file sweep.

use std::{fs, os::unix::fs::symlink};

use sha2::{Digest as _, Sha256};
use tether_proto::file_transfer::{FileInfo, VERSION_1_CHUNK, go_mode};

use super::{confine::tests::Scratch, *};

struct Fixture {
    scratch: Scratch,
    files: FileTransfers,
    bulk: mpsc::Receiver<Envelope>,
}

fn fixture(tweak: impl FnOnce(&mut FileTransferConfig)) -> Fixture {
    let scratch = Scratch::new("sessions");
    fs::create_dir_all(scratch.path("data")).unwrap();
    let mut config = FileTransferConfig {
        enabled: true,
        roots: vec![scratch.path("data")],
        ..FileTransferConfig::default()
    };
    tweak(&mut config);
    let (sender, bulk) = mpsc::channel(BULK_QUEUE);
    let files = FileTransfers::start(&config, sender).unwrap();
    Fixture { scratch, files, bulk }
}

impl Fixture {
    /// Sends `message` on session `sid`; returns the immediate answer, if any.
    fn send(&mut self, sid: &str, version: u32, message: FileTransfer) -> Option<FileTransfer> {
        let envelope = Envelope::decode(&message.to_envelope(sid).encode()).unwrap();
        self.files
            .handle(sid, version, &envelope)
            .map(|answer| FileTransfer::from_envelope(&answer).unwrap())
    }

    async fn next(&mut self) -> FileTransfer {
        let envelope = tokio::time::timeout(Duration::from_secs(10), self.bulk.recv())
            .await
            .expect("a message in time")
            .expect("the queue is open");
        FileTransfer::from_envelope(&envelope).unwrap()
    }

    /// Nothing more arrives for a moment (the sender is waiting for an ack).
    async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(200), self.bulk.recv())
            .await
            .is_err()
    }

    /// Downloads `path`, acking as the CLI does (every chunk in v1, every 1 MiB in v2); checks
    /// the window never exceeds `window` bytes beyond the last ack. Returns data and sha256.
    async fn download(
        &mut self,
        version: u32,
        path: &str,
        offset: Option<i64>,
        window: i64,
    ) -> (Vec<u8>, Option<String>) {
        assert_eq!(
            self.send(
                "d",
                version,
                FileTransfer::GetFile {
                    path: path.to_owned(),
                    offset
                }
            ),
            None
        );
        let start = offset.unwrap_or(0);
        let mut data = Vec::new();
        let mut acked = start;
        loop {
            match self.next().await {
                FileTransfer::FileChunk {
                    offset,
                    data: piece,
                    sha256,
                } => {
                    assert_eq!(offset, start + data.len() as i64);
                    if piece.is_empty() {
                        self.send("d", version, FileTransfer::Ack { offset });
                        return (data, sha256);
                    }
                    data.extend_from_slice(&piece);
                    let received = start + data.len() as i64;
                    assert!(received - acked <= window, "{received} received, {acked} acked");
                    if version == 1 || received - acked >= 1 << 20 {
                        self.send("d", version, FileTransfer::Ack { offset: received });
                        acked = received;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn downloads_respect_the_window_and_carry_the_checksum() {
    let mut f = fixture(|_| {});
    let content = pattern(3 * 1024 * 1024 + 17);
    fs::write(f.scratch.path("data/big"), &content).unwrap();
    let path = f.scratch.text("data/big");

    let (data, sha256) = f.download(1, &path, None, (VERSION_1_CHUNK * 20) as i64).await;
    assert!(data == content);
    assert_eq!(sha256, None, "version 1 has no checksum");

    let (data, sha256) = f.download(2, &path, None, WINDOW_BYTES as i64).await;
    assert!(data == content);
    let expected = download::hex(&Sha256::digest(&content));
    assert_eq!(sha256.as_deref(), Some(expected.as_str()));

    // Resuming: the data from the offset, the checksum of the whole file.
    let (data, sha256) = f.download(2, &path, Some(1_000_000), WINDOW_BYTES as i64).await;
    assert!(data == content[1_000_000..]);
    assert_eq!(sha256.as_deref(), Some(expected.as_str()));

    // Empty and one-byte files.
    for length in [0, 1, 4097] {
        fs::write(f.scratch.path("data/small"), pattern(length)).unwrap();
        let (data, _) = f
            .download(1, &f.scratch.text("data/small"), None, 20 * 4096)
            .await;
        assert_eq!(data, pattern(length));
    }
}

#[tokio::test]
async fn a_version_1_download_stops_at_the_window_until_acked() {
    let mut f = fixture(|_| {});
    fs::write(f.scratch.path("data/f"), pattern(200 * 1024)).unwrap();
    let path = f.scratch.text("data/f");
    f.send(
        "s",
        1,
        FileTransfer::GetFile {
            path,
            offset: Some(5),
        },
    );
    for expected in 0..20 {
        let FileTransfer::FileChunk { offset, data, .. } = f.next().await else {
            panic!("chunk expected");
        };
        assert_eq!(offset, expected * 4096, "version 1 ignores the offset");
        assert_eq!(data.len(), 4096);
    }
    assert!(f.quiet().await, "21st chunk sent without an ack");
    // A second transfer in the same session is refused; another session may transfer.
    let busy = f.send(
        "s",
        1,
        FileTransfer::PutFile(tether_proto::file_transfer::PutFile {
            path: f.scratch.text("data/g"),
            ..Default::default()
        }),
    );
    let Some(FileTransfer::Error(body)) = busy else {
        panic!("refusal expected, got {busy:?}");
    };
    assert_eq!(body.err, "a transfer is already running in this session");
    f.send("s", 1, FileTransfer::Ack { offset: 4096 });
    let FileTransfer::FileChunk { offset, .. } = f.next().await else {
        panic!("chunk expected");
    };
    assert_eq!(offset, 20 * 4096);
    assert!(f.cancel_and_check("s"));
}

impl Fixture {
    fn cancel_and_check(&mut self, sid: &str) -> bool {
        self.files.cancel(sid)
    }
}

#[tokio::test]
async fn download_refusals_name_the_rule() {
    let mut f = fixture(|config| config.max_file_size = 10);
    fs::write(f.scratch.path("data/big"), pattern(11)).unwrap();
    symlink("/etc/passwd", f.scratch.path("data/link")).unwrap();
    make_fifo(&f.scratch.path("data/fifo"));
    let cases = [
        // Refused before anything opens it: opening a FIFO for reading would block.
        (f.scratch.text("data/fifo"), 403, "is a FIFO: only regular files"),
        (f.scratch.text("data/big"), 413, "file_transfer.max_file_size"),
        (f.scratch.text("data/link"), 403, "symbolic link"),
        (f.scratch.text("data/missing"), 404, "No such file"),
        (f.scratch.text("data"), 409, "is a directory"),
        ("/etc/passwd".to_owned(), 403, "file_transfer.roots"),
    ];
    for (path, code, needle) in cases {
        f.send(
            "s",
            2,
            FileTransfer::GetFile {
                path: path.clone(),
                offset: None,
            },
        );
        let FileTransfer::Error(body) = f.next().await else {
            panic!("error expected for {path}");
        };
        assert_eq!(body.code, Some(code), "{path}: {}", body.err);
        assert!(body.err.contains(needle), "{path}: {}", body.err);
        assert_eq!(body.msgtype.as_deref(), Some("get_file"));
    }
}

fn make_fifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

#[tokio::test]
async fn stat_reports_the_real_file_type() {
    let mut f = fixture(|_| {});
    make_fifo(&f.scratch.path("data/fifo"));
    f.send(
        "s",
        2,
        FileTransfer::Stat {
            path: f.scratch.text("data/fifo"),
        },
    );
    let FileTransfer::FileInfo(info) = f.next().await else {
        panic!("file_info expected");
    };
    assert_eq!(info.mode, go_mode::NAMED_PIPE | 0o600, "{:o}", info.mode);
    assert_eq!(go_mode::kind(info.mode), "fifo");
}

#[tokio::test]
async fn stat_list_and_mkdir() {
    let mut f = fixture(|config| config.umask = 0o027);
    fs::write(f.scratch.path("data/b"), "12345").unwrap();
    fs::create_dir(f.scratch.path("data/a")).unwrap();
    symlink("/", f.scratch.path("data/c")).unwrap();

    f.send(
        "s",
        1,
        FileTransfer::Stat {
            path: f.scratch.text("data/b"),
        },
    );
    let FileTransfer::FileInfo(info) = f.next().await else {
        panic!("file_info expected");
    };
    assert_eq!(info.size, 5);
    assert_eq!(info.path, f.scratch.text("data/b"));
    assert!(info.modtime.0 > 0);

    f.send(
        "s",
        2,
        FileTransfer::List {
            path: f.scratch.text("data"),
        },
    );
    let FileTransfer::FileList { entries, .. } = f.next().await else {
        panic!("file_list expected");
    };
    let names: Vec<&str> = entries
        .iter()
        .map(|e: &FileInfo| e.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_ne!(entries[0].mode & go_mode::DIRECTORY, 0);
    assert_ne!(
        entries[2].mode & go_mode::SYMLINK,
        0,
        "links are listed, not followed"
    );

    f.send(
        "s",
        2,
        FileTransfer::Mkdir {
            path: f.scratch.text("data/a/new"),
            mode: Some(0o777),
        },
    );
    assert_eq!(f.next().await, FileTransfer::Ack { offset: 0 });
    let mode = fs::metadata(f.scratch.path("data/a/new")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o750);

    f.send(
        "s",
        2,
        FileTransfer::Mkdir {
            path: f.scratch.text("data/a/new"),
            mode: None,
        },
    );
    let FileTransfer::Error(body) = f.next().await else {
        panic!("error expected");
    };
    assert_eq!(body.code, Some(409));
    f.send(
        "s",
        2,
        FileTransfer::Mkdir {
            path: f.scratch.text("data/c/x"),
            mode: None,
        },
    );
    let FileTransfer::Error(body) = f.next().await else {
        panic!("error expected");
    };
    assert_eq!(body.code, Some(403), "{}", body.err);
}

#[test]
fn the_sweep_removes_stale_temporary_files_only() {
    let scratch = Scratch::new("sweep");
    fs::create_dir_all(scratch.path("data/deep/er")).unwrap();
    let one_shot = scratch.path("data/deep/.f.tether-upload-once.0123456789abcdef");
    let resumable = scratch.path("data/deep/er/.g.tether-upload-id");
    let ordinary = scratch.path("data/deep/.h");
    for path in [&one_shot, &resumable, &ordinary] {
        fs::write(path, "x").unwrap();
    }
    let policy = Policy::new(&FileTransferConfig {
        enabled: true,
        roots: vec![scratch.path("data")],
        resume_window_secs: 3600,
        ..FileTransferConfig::default()
    })
    .unwrap();
    // Hourly: nothing is old enough yet.
    assert_eq!(cleanup::sweep(&policy, false), 0);
    // At start: version-1 leftovers go whatever their age.
    assert_eq!(cleanup::sweep(&policy, true), 1);
    assert!(!one_shot.exists() && resumable.exists() && ordinary.exists());
    // Past the resume window: the resumable one goes too.
    let old = Policy::new(&FileTransferConfig {
        enabled: true,
        roots: vec![scratch.path("data")],
        resume_window_secs: 0,
        ..FileTransferConfig::default()
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        cleanup::sweep(&old, false),
        0,
        "later sweeps wait at least the idle timeout"
    );
    assert_eq!(cleanup::sweep(&old, true), 1);
    assert!(!resumable.exists() && ordinary.exists());
    assert_eq!(cleanup::temporary_kind(b".a.tether-upload-"), None);
    assert_eq!(cleanup::temporary_kind(b"a.tether-upload-x"), None);
}
