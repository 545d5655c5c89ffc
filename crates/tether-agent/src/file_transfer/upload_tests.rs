//! Uploads on real directories: atomicity (an interrupted upload leaves no target and, in
//! version 1, no temporary file), resume truncation, checksum and policy refusals.

use std::{fs, os::unix::fs::PermissionsExt as _, time::Duration};

use sha2::{Digest as _, Sha256};
use tether_proto::{Envelope, file_transfer::go_mode};

use super::{super::confine::tests::Scratch, *};
use crate::config::FileTransferConfig;

fn context(
    scratch: &Scratch,
    version: u32,
    tweak: impl FnOnce(&mut FileTransferConfig),
) -> (Context, mpsc::Receiver<Envelope>) {
    let mut config = FileTransferConfig {
        enabled: true,
        roots: vec![scratch.path("data")],
        ..FileTransferConfig::default()
    };
    tweak(&mut config);
    fs::create_dir_all(scratch.path("data")).unwrap();
    let (bulk, receiver) = mpsc::channel(64);
    let context = Context {
        policy: Arc::new(Policy::new(&config).unwrap()),
        bulk,
        sid: "s".into(),
        version,
    };
    (context, receiver)
}

async fn next(receiver: &mut mpsc::Receiver<Envelope>) -> FileTransfer {
    let envelope = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("an answer in time")
        .expect("the queue is open");
    FileTransfer::from_envelope(&envelope).unwrap()
}

struct Running {
    chunks: mpsc::UnboundedSender<Chunk>,
    task: tokio::task::JoinHandle<()>,
}

fn start(context: &Context, put: PutFile) -> Running {
    let (chunks, receiver) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(context.clone(), put, receiver, Arc::new(AtomicUsize::new(0))));
    Running { chunks, task }
}

fn chunk(offset: usize, data: &[u8]) -> Chunk {
    Chunk {
        offset: offset as i64,
        data: data.to_vec(),
        sha256: None,
    }
}

fn end(offset: usize, sha256: Option<String>) -> Chunk {
    Chunk {
        offset: offset as i64,
        data: Vec::new(),
        sha256,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn names(scratch: &Scratch) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(scratch.path("data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn error_of(message: FileTransfer) -> (i64, String) {
    match message {
        FileTransfer::Error(body) => (body.code.unwrap_or(0), body.err),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_version_2_upload_is_checked_and_renamed_into_place() {
    let scratch = Scratch::new("upload");
    let (context, mut answers) = context(&scratch, 2, |_| {});
    let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/file"),
            size: Some(data.len() as i64),
            mode: Some(0o666),
            upload_id: Some("abc".into()),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    assert_eq!(names(&scratch), [".file.tether-upload-abc"]);
    let mut offset = 0;
    for piece in data.chunks(100_000) {
        upload.chunks.send(chunk(offset, piece)).unwrap();
        offset += piece.len();
    }
    upload.chunks.send(end(offset, Some(sha256_hex(&data)))).unwrap();
    // Acks are cumulative; the last one is the total.
    let mut acked = 0;
    while acked < data.len() as i64 {
        let FileTransfer::Ack { offset } = next(&mut answers).await else {
            panic!("ack expected");
        };
        assert!(offset > acked);
        acked = offset;
    }
    upload.task.await.unwrap();
    assert_eq!(fs::read(scratch.path("data/file")).unwrap(), data);
    let mode = fs::metadata(scratch.path("data/file"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o644, "the umask applies");
    assert_eq!(names(&scratch), ["file"]);
}

#[tokio::test]
async fn an_interrupted_version_1_upload_leaves_nothing() {
    let scratch = Scratch::new("upload-v1");
    let (context, mut answers) = context(&scratch, 1, |_| {});
    fs::write(scratch.path("data/file"), "old").unwrap();
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/file"),
            upload_id: Some("ignored-in-v1".into()),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    upload.chunks.send(chunk(0, b"new data")).unwrap();
    upload.chunks.send(chunk(8, b"!")).unwrap();
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 8 });
    let temporary = names(&scratch);
    assert_eq!(temporary.len(), 2, "{temporary:?}");
    assert!(
        temporary[0].starts_with(".file.tether-upload-once."),
        "{temporary:?}"
    );
    // The session ends: the task is aborted.
    upload.task.abort();
    let _ = upload.task.await;
    assert_eq!(names(&scratch), ["file"]);
    assert_eq!(fs::read_to_string(scratch.path("data/file")).unwrap(), "old");

    // The same when the sender goes away (the feed is dropped).
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/other"),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    drop(upload.chunks);
    upload.task.await.unwrap();
    assert_eq!(names(&scratch), ["file"]);
}

#[tokio::test]
async fn a_version_2_upload_resumes_from_what_the_device_kept() {
    let scratch = Scratch::new("upload-resume");
    let (context, mut answers) = context(&scratch, 2, |_| {});
    let data = b"0123456789abcdefghij".to_vec();
    let put = PutFile {
        path: scratch.text("data/file"),
        size: Some(data.len() as i64),
        upload_id: Some("id-1".into()),
        ..Default::default()
    };
    let upload = start(&context, put.clone());
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    // An intermediate ack carries where the last chunk written starts: never the total.
    upload.chunks.send(chunk(0, &data[..12])).unwrap();
    upload.chunks.send(chunk(12, &data[12..13])).unwrap();
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 12 });
    upload.task.abort();
    let _ = upload.task.await;
    assert_eq!(names(&scratch), [".file.tether-upload-id-1"], "kept for a resume");

    // The client only saw 8 bytes acknowledged: the device cuts back to that.
    let upload = start(
        &context,
        PutFile {
            offset: Some(8),
            ..put.clone()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 8 });
    assert_eq!(
        fs::metadata(scratch.path("data/.file.tether-upload-id-1"))
            .unwrap()
            .len(),
        8
    );
    upload.task.abort();
    let _ = upload.task.await;

    // Asking for more than the device has: it answers with what it has.
    let upload = start(
        &context,
        PutFile {
            offset: Some(15),
            ..put.clone()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 8 });
    upload.chunks.send(chunk(8, &data[8..])).unwrap();
    upload
        .chunks
        .send(end(data.len(), Some(sha256_hex(&data))))
        .unwrap();
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 20 });
    upload.task.await.unwrap();
    assert_eq!(fs::read(scratch.path("data/file")).unwrap(), data);
    assert_eq!(names(&scratch), ["file"]);
}

#[tokio::test]
async fn a_checksum_mismatch_is_refused_and_cleaned_up() {
    let scratch = Scratch::new("upload-sha");
    let (context, mut answers) = context(&scratch, 2, |_| {});
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/file"),
            upload_id: Some("x".into()),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    upload.chunks.send(chunk(0, b"abc")).unwrap();
    upload.chunks.send(end(3, Some(sha256_hex(b"abd")))).unwrap();
    let mut message = next(&mut answers).await;
    if message == (FileTransfer::Ack { offset: 3 }) {
        message = next(&mut answers).await;
    }
    let (code, text) = error_of(message);
    assert_eq!(code, 400);
    assert!(text.contains("checksum mismatch"), "{text}");
    upload.task.await.unwrap();
    assert!(names(&scratch).is_empty(), "{:?}", names(&scratch));
}

#[tokio::test]
async fn out_of_order_chunks_are_refused() {
    let scratch = Scratch::new("upload-order");
    let (context, mut answers) = context(&scratch, 1, |_| {});
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/file"),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    upload.chunks.send(chunk(5, b"abc")).unwrap();
    let (code, text) = error_of(next(&mut answers).await);
    assert_eq!(code, 400);
    assert!(text.contains("offset 5, expected 0"), "{text}");
    upload.task.await.unwrap();
    assert!(names(&scratch).is_empty());
}

#[tokio::test]
async fn policies_refuse_with_the_rule_named() {
    let scratch = Scratch::new("upload-policy");
    let (context, mut answers) = context(&scratch, 2, |config| {
        config.allow_overwrite = false;
        config.max_file_size = 10;
    });
    fs::write(scratch.path("data/existing"), "keep").unwrap();
    let cases = [
        (
            PutFile {
                path: scratch.text("data/existing"),
                ..Default::default()
            },
            409,
            format!(
                "{} exists and overwriting is off (file_transfer.allow_overwrite)",
                scratch.text("data/existing")
            ),
        ),
        (
            PutFile {
                path: scratch.text("data/big"),
                size: Some(11),
                ..Default::default()
            },
            413,
            "file is larger than the limit of 10 bytes (file_transfer.max_file_size)".to_owned(),
        ),
        (
            PutFile {
                path: scratch.text("data/suid"),
                mode: Some(go_mode::SETUID | 0o755),
                ..Default::default()
            },
            403,
            "setuid/setgid bits refused (file_transfer.allow_setuid)".to_owned(),
        ),
        (
            PutFile {
                path: scratch.text("data/x"),
                upload_id: Some("../evil".into()),
                ..Default::default()
            },
            400,
            "upload_id must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`".to_owned(),
        ),
        (
            PutFile {
                path: "/etc/passwd".into(),
                ..Default::default()
            },
            403,
            "path /etc/passwd is outside the allowed roots (file_transfer.roots)".to_owned(),
        ),
        (
            PutFile {
                path: scratch.text("data/chowned"),
                uid: Some(12345),
                ..Default::default()
            },
            403,
            "uid 12345 refused".to_owned(),
        ),
    ];
    for (put, code, text) in cases {
        let upload = start(&context, put);
        let (got_code, got_text) = error_of(next(&mut answers).await);
        assert_eq!(got_code, i64::from(code), "{got_text}");
        assert!(got_text.contains(&text), "{got_text} should contain {text}");
        upload.task.await.unwrap();
    }
    assert_eq!(names(&scratch), ["existing"]);

    // Without a declared size, the limit is counted as the data comes.
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/growing"),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    upload.chunks.send(chunk(0, b"0123456")).unwrap();
    upload.chunks.send(chunk(7, b"789a")).unwrap();
    let mut message = next(&mut answers).await;
    if message == (FileTransfer::Ack { offset: 7 }) {
        message = next(&mut answers).await;
    }
    let (code, _) = error_of(message);
    assert_eq!(code, 413);
    upload.task.await.unwrap();
    assert_eq!(names(&scratch), ["existing"]);
}

#[test]
fn temporary_names_sit_beside_the_target() {
    assert_eq!(temporary_name(b"f.txt", Some("id")), b".f.txt.tether-upload-id");
    let one_shot = String::from_utf8(temporary_name(b"f", None)).unwrap();
    assert!(one_shot.starts_with(".f.tether-upload-once."), "{one_shot}");
    assert_eq!(one_shot.len(), ".f.tether-upload-once.".len() + 16);
}

#[tokio::test]
async fn the_whole_announced_size_is_acknowledged_only_once_the_file_is_in_place() {
    let scratch = Scratch::new("upload-final-ack");
    let (context, mut answers) = context(&scratch, 2, |_| {});
    let upload = start(
        &context,
        PutFile {
            path: scratch.text("data/file"),
            size: Some(3),
            ..Default::default()
        },
    );
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 0 });
    upload.chunks.send(chunk(0, b"abc")).unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), answers.recv()).await;
    assert!(
        early.is_err(),
        "an ack of the whole file before the end: {early:?}"
    );
    upload.chunks.send(end(3, None)).unwrap();
    assert_eq!(next(&mut answers).await, FileTransfer::Ack { offset: 3 });
    assert!(upload.task.await.is_ok());
    assert_eq!(fs::read(scratch.path("data/file")).unwrap(), b"abc");
}
