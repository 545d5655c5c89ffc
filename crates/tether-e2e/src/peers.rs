//! Real peers on the device's side of a forward (or the operator's): `sshd`, a tiny HTTP server,
//! TCP and UDP echo servers; and deterministic content with SHA-256 checksums for transfers.
//!
//! Every server listens on `127.0.0.1` on a free port and counts the connections it accepted
//! (so that a test can check that a refused target was never dialled). Servers run on their own
//! threads and stop when dropped (or, for thread-per-connection ones, when the test process
//! ends; nothing outlives it).

use std::{
    io::{BufRead as _, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tempfile::TempDir;

use crate::{WAIT, process::Proc, wait_for};

// ---------------------------------------------------------------------------------------------
// Deterministic content and checksums

/// 8 bytes of the stream `seed` at block `index` (splitmix64: random access, no state).
fn block(seed: u64, index: u64) -> [u8; 8] {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

/// A reader of `len` pseudo-random bytes determined by `seed` (the same seed and length always
/// give the same bytes).
#[derive(Debug, Clone)]
pub struct Deterministic {
    seed: u64,
    position: u64,
    len: u64,
}

impl Deterministic {
    pub fn new(seed: u64, len: u64) -> Deterministic {
        Deterministic {
            seed,
            position: 0,
            len,
        }
    }
}

impl Read for Deterministic {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let left = (self.len - self.position).min(buffer.len() as u64) as usize;
        let mut written = 0;
        while written < left {
            let index = self.position / 8;
            let skip = (self.position % 8) as usize;
            let bytes = block(self.seed, index);
            let n = (8 - skip).min(left - written);
            buffer[written..written + n].copy_from_slice(&bytes[skip..skip + n]);
            written += n;
            self.position += n as u64;
        }
        Ok(written)
    }
}

/// `len` deterministic bytes in memory.
pub fn deterministic_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    Deterministic::new(seed, len as u64)
        .read_exact(&mut bytes)
        .expect("deterministic bytes");
    bytes
}

/// Writes `len` deterministic bytes to `path` (creating or truncating it).
pub fn write_deterministic_file(path: &Path, seed: u64, len: u64) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    std::io::copy(&mut Deterministic::new(seed, len), &mut writer)
        .and_then(|_| writer.flush())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Hex SHA-256 of whatever `sha256sum` reads from `input`.
fn sha256sum(mut input: impl Read + Send + 'static) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum (coreutils)");
    let mut stdin = child.stdin.take().expect("sha256sum stdin");
    let feeder = std::thread::spawn(move || {
        let _ = std::io::copy(&mut input, &mut stdin);
    });
    let output = child.wait_with_output().expect("sha256sum output");
    feeder.join().expect("sha256sum feeder");
    assert!(output.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed a digest")
        .to_owned()
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256sum(file)
}

/// Hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    sha256sum(std::io::Cursor::new(bytes.to_vec()))
}

/// Hex SHA-256 of [`Deterministic::new(seed, len)`](Deterministic).
pub fn sha256_deterministic(seed: u64, len: u64) -> String {
    sha256sum(Deterministic::new(seed, len))
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A loopback port that was free a moment ago (bind to port 0, read it, release it). For
/// programs that must be told a port; another process could take it in between, which is
/// unlikely enough on a test machine.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A loopback port free for both TCP and UDP a moment ago.
pub fn free_udp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
        let port = udp.local_addr().expect("UDP address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP echo

/// Connects to `127.0.0.1:port` (e.g. a forward's local end), sends `payload` from a thread of
/// its own (so that a payload larger than the socket buffers cannot deadlock against an echo),
/// half-closes, and returns everything that came back before the peer closed.
pub fn echo_round_trip(port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    let mut sender = stream.try_clone()?;
    let outgoing = payload.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        sender.write_all(&outgoing)?;
        sender.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::with_capacity(payload.len());
    let read = stream.read_to_end(&mut back);
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the sending thread panicked")));
    read?;
    written?;
    Ok(back)
}

/// A TCP server echoing every byte back on each connection (a thread per connection).
pub struct TcpEcho {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TcpEcho {
    pub fn start() -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TCP echo server");
        let addr = listener.local_addr().expect("echo address");
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let accepted = Arc::clone(&accepted);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let Ok(mut reader) = stream.try_clone() else {
                            return;
                        };
                        let _ = std::io::copy(&mut reader, &mut stream);
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                    });
                }
            });
        }
        TcpEcho { addr, accepted, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// UDP echo

/// A UDP server sending every datagram back to its sender, whole.
pub struct UdpEcho {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    pub fn start() -> UdpEcho {
        UdpEcho::start_on(0)
    }

    /// On `127.0.0.1:port` (0 = any free port).
    pub fn start_on(port: u16) -> UdpEcho {
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind the UDP echo server");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("UDP read timeout");
        let addr = socket.local_addr().expect("UDP echo address");
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 65_536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buffer) {
                        received.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.send_to(&buffer[..n], from);
                    }
                }
            });
        }
        UdpEcho { addr, received, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A tiny HTTP/1.1 server answering every request with `200 OK`, `Content-Length: len` and the
/// [`Deterministic`] bytes of `seed` (then closing the connection).
pub struct HttpServer {
    pub addr: SocketAddr,
    pub len: u64,
    pub seed: u64,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    pub fn start(seed: u64, len: u64) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP server");
        let addr = listener.local_addr().expect("HTTP address");
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let accepted = Arc::clone(&accepted);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || serve_http(stream, seed, len));
                }
            });
        }
        HttpServer {
            addr,
            len,
            seed,
            accepted,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Hex SHA-256 of the body it serves.
    pub fn sha256(&self) -> String {
        sha256_deterministic(self.seed, self.len)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_http(stream: TcpStream, seed: u64, len: u64) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    // The request line and headers, up to the empty line.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut writer = std::io::BufWriter::with_capacity(1 << 16, stream);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = std::io::copy(&mut Deterministic::new(seed, len), &mut writer);
    let _ = writer.flush();
}

// ---------------------------------------------------------------------------------------------
// sshd

/// Options every OpenSSH client of the tests and benchmarks uses: no user configuration, no
/// prompts, no host-key checks (the server is a throwaway one on loopback), quiet.
pub const SSH_CLIENT_OPTIONS: &[&str] = &[
    "-F",
    "/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
];

/// A real OpenSSH server (`sshd -D -e -f CONFIG`) on a free loopback port, with a temporary host
/// key and one authorized client key for the current user (root when the tests run as root),
/// serving sftp (`internal-sftp`) too.
pub struct Sshd {
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The private key authorized to log in.
    pub client_key: PathBuf,
    process: Proc,
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd; `None` (with a printed note) if `sshd` or `ssh-keygen` is not installed.
    pub fn start() -> Option<Sshd> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(sshd) = sshd else {
            eprintln!("note: sshd is not installed (Debian: openssh-server); skipping");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-sshd-")
            .tempdir()
            .expect("temp dir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        for key in [&host_key, &client_key] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key)
                .stdin(Stdio::null())
                .status();
            match status {
                Ok(status) if status.success() => {}
                other => {
                    eprintln!("note: ssh-keygen failed ({other:?}); skipping");
                    return None;
                }
            }
        }
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        // Privilege separation needs this directory (root only; harmless otherwise).
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = current_user();
        let mut last_logs = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\n\
                     AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                     AllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                    host = host_key.display(),
                    authorized = authorized.display(),
                ),
            )
            .expect("sshd_config");
            let mut command = Command::new(&sshd);
            command.arg("-D").arg("-e").arg("-f").arg(&config);
            let mut process = Proc::spawn("sshd", command, dir.path());
            let listening = wait_for("sshd to listen or exit", WAIT, || {
                if process.stderr().contains("Server listening on") {
                    Some(true)
                } else if process.try_wait().is_some() {
                    Some(false)
                } else {
                    None
                }
            });
            if listening {
                return Some(Sshd {
                    port,
                    user,
                    client_key,
                    process,
                    dir,
                });
            }
            last_logs = process.logs();
        }
        panic!("sshd did not start:\n{last_logs}");
    }

    /// `ssh` to this server through `127.0.0.1:port` (e.g. a forward's local port), running
    /// `remote_command`; batch mode, no host key checks, not yet started.
    pub fn ssh_command(&self, port: u16, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(SSH_CLIENT_OPTIONS)
            .args(["-o", "ConnectTimeout=20", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(&self.client_key)
            .arg("-p")
            .arg(port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote_command)
            .stdin(Stdio::null());
        command
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn current_user() -> String {
    if crate::is_root() {
        return "root".to_owned();
    }
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_content_is_stable_and_readable_in_pieces() {
        let whole = deterministic_bytes(7, 1000);
        let mut pieces = Vec::new();
        let mut reader = Deterministic::new(7, 1000);
        let mut buffer = [0u8; 13];
        loop {
            let n = reader.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            pieces.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(whole, pieces);
        assert_ne!(whole, deterministic_bytes(8, 1000));
        assert_eq!(sha256_bytes(&whole), sha256_deterministic(7, 1000));
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn echo_and_http_servers_answer() {
        let echo = TcpEcho::start();
        let mut stream = TcpStream::connect(echo.addr).unwrap();
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        assert_eq!(echo.accepted(), 1);

        let udp = UdpEcho::start();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.send_to(b"datagram", udp.addr).unwrap();
        let mut buffer = [0u8; 64];
        let (n, _) = client.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"datagram");

        let http = HttpServer::start(3, 100_000);
        let mut stream = TcpStream::connect(http.addr).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&response[..split]);
        assert!(head.contains("Content-Length: 100000"), "{head}");
        assert_eq!(response[split..], deterministic_bytes(3, 100_000)[..]);
    }

    #[test]
    fn sshd_runs_a_command_for_the_client_key() {
        let Some(sshd) = Sshd::start() else { return };
        let output = sshd
            .ssh_command(sshd.port, "echo ssh-$((40+2))")
            .output()
            .expect("run ssh (Debian: openssh-client)");
        assert!(
            output.status.success(),
            "ssh failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            sshd.log()
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "ssh-42\n");
    }
}
