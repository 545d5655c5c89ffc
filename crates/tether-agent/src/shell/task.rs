//! A running shell: one task per shell pumps its output to the hub and the operator's input to
//! it, enforces the idle timeout and maximum duration, and kills and reaps it when it must end.
//!
//! The session table talks to the task through a [`ShellHandle`]; dropping the handle (or calling
//! [`ShellHandle::stop`]) ends the shell without a word to the hub: the caller answers for it.
//! Output goes through a [`ShellStream`], which keeps a resumable shell's output while its
//! session is detached.

use std::{
    process::ExitStatus,
    sync::{Arc, Mutex},
    time::Duration,
};

use tether_proto::{Envelope, shell::Shell};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    process::Child,
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{Instant, sleep_until, timeout},
};

use super::{
    spawn::{Exec, Interactive},
    stream::{Destination, ShellStream},
};

/// After the shell exits, output still buffered is forwarded until this long passes without any.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
const GRACE_EXPIRED: &str = "not resumed within the grace period (terminal.grace_period_secs)";
/// Time between SIGHUP and SIGKILL when stopping a shell.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Input messages queued for one shell before further input is dropped (a shell that does not
/// read its terminal must not make the agent buffer without bound).
const INPUT_QUEUE: usize = 64;

/// What the operator sends to a shell.
#[derive(Debug)]
pub enum Input {
    Data(Vec<u8>),
    Resize { width: u16, height: u16 },
}

/// The session table's grip on a running shell.
pub struct ShellHandle {
    pub user_id: String,
    input: mpsc::Sender<Input>,
    /// Dropping it tells the task to kill the shell.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stream: Arc<ShellStream>,
}

impl ShellHandle {
    /// False once the shell has ended by itself (and told the hub so).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Queues input; false when the shell is not keeping up and the input was dropped.
    pub fn send(&self, input: Input) -> bool {
        self.input.try_send(input).is_ok()
    }

    /// Kept across a lost connection (version 2 interactive shell with a grace period).
    pub fn is_resumable(&self) -> bool {
        self.stream.is_resumable()
    }

    /// Since when nobody watches this shell (None while attached).
    pub fn detached_since(&self) -> Option<tokio::time::Instant> {
        self.stream.detached_since()
    }

    /// Nobody watches for now: buffer the output (within the grace period).
    pub fn detach(&self) {
        self.stream.detach();
    }

    /// Sends output again, from stream offset `offset` on.
    pub fn resume(&self, offset: u64) {
        self.stream.resume(offset);
    }

    /// Kills the shell (without telling the hub); the task ends once the shell is reaped.
    pub fn stop(self) -> JoinHandle<()> {
        drop(self.stop);
        self.task
    }
}

/// Where a shell's messages go: the stream for its output, the destination for the rest.
#[derive(Clone)]
pub struct Output {
    pub destination: Destination,
    pub stream: Arc<ShellStream>,
}

impl Output {
    pub fn sid(&self) -> &str {
        &self.destination.sid
    }

    async fn send(&self, message: Shell) {
        let envelope: Envelope = message.to_envelope(&self.destination.sid);
        // A closed channel means the agent is shutting down: nothing left to tell.
        let _ = self.destination.outbound.send(envelope).await;
    }

    /// Sends the output written so far (waiting for a resume while detached, within the grace
    /// period), so that the shell's end never overtakes its last output.
    async fn drain(&self) {
        self.stream.forward(&self.destination, true).await;
    }

    async fn stopped(&self, status: i64, text: &str, exit_status: Option<i64>) {
        self.send(Shell::Stop {
            user_id: None,
            status: Some(status),
            text: text.as_bytes().to_vec(),
            exit_status,
        })
        .await;
    }
}

/// The idle timeout and maximum duration of a shell (`None` = no limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Option<Duration>,
    pub max_duration: Option<Duration>,
}

impl Limits {
    pub fn from_secs(idle: u64, max_duration: u64) -> Limits {
        let limit = |secs| (secs > 0).then(|| Duration::from_secs(secs));
        Limits {
            idle: limit(idle),
            max_duration: limit(max_duration),
        }
    }

    /// Resolves with the reason once a limit is exceeded.
    async fn exceeded(&self, activity: &Activity) -> String {
        loop {
            let idle_deadline = self.idle.map(|idle| activity.last() + idle);
            let expiry = self.max_duration.map(|max| activity.started + max);
            let next = match (idle_deadline, expiry) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return std::future::pending().await,
            };
            sleep_until(next).await;
            let now = Instant::now();
            if let Some(max) = self.max_duration
                && now >= activity.started + max
            {
                return format!(
                    "session expired after {} s (terminal.max_duration_secs)",
                    max.as_secs()
                );
            }
            if let Some(idle) = self.idle
                && now >= activity.last() + idle
            {
                return format!(
                    "idle timeout: no activity for {} s (terminal.idle_timeout_secs)",
                    idle.as_secs()
                );
            }
        }
    }
}

/// When the shell last read input or wrote output.
struct Activity {
    started: Instant,
    /// A mutex rather than a cell keeps the task `Send`; rather than an `AtomicU64`, it keeps the
    /// agent building for 32-bit targets without 64-bit atomics (MIPS, PowerPC).
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            started: now,
            last: Mutex::new(now),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a shell's life ended.
enum Ending {
    /// Told to stop (by the hub, a lost connection or shutdown): kill, say nothing.
    Stopped,
    /// A limit was exceeded: tell the hub why, then kill.
    Exceeded(String),
    /// The shell ended by itself (`None`: it closed its output but may still run).
    Exited(Option<ExitStatus>),
}

pub fn start_interactive(shell: Interactive, user_id: String, output: Output, limits: Limits) -> ShellHandle {
    let stream = output.stream.clone();
    start(user_id, stream, |input, stop| {
        run_interactive(shell, input, stop, output, limits)
    })
}

pub fn start_exec(exec: Exec, user_id: String, output: Output, limits: Limits) -> ShellHandle {
    let stream = output.stream.clone();
    start(user_id, stream, |input, stop| {
        run_exec(exec, input, stop, output, limits)
    })
}

fn start<F>(
    user_id: String,
    stream: Arc<ShellStream>,
    run: impl FnOnce(mpsc::Receiver<Input>, oneshot::Receiver<()>) -> F,
) -> ShellHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    let (input, input_receiver) = mpsc::channel(INPUT_QUEUE);
    let (stop, stop_receiver) = oneshot::channel();
    ShellHandle {
        user_id,
        input,
        stop,
        task: tokio::spawn(run(input_receiver, stop_receiver)),
        stream,
    }
}

async fn run_interactive(
    shell: Interactive,
    mut input: mpsc::Receiver<Input>,
    mut stop: oneshot::Receiver<()>,
    output: Output,
    limits: Limits,
) {
    let Interactive { mut pty, mut child } = shell;
    let activity = Activity::new();
    let (mut reader, mut writer) = pty.split();
    let pump_input = async {
        while let Some(message) = input.recv().await {
            match message {
                Input::Data(bytes) => {
                    activity.touch();
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Input::Resize { width, height } => {
                    if let Err(error) = writer.resize(pty_process::Size::new(height, width)) {
                        tracing::debug!("cannot resize the terminal: {error}");
                    }
                }
            }
        }
        // The output side notices the end of the shell; nothing more to do here.
        std::future::pending::<()>().await
    };
    let ending = tokio::select! {
        biased;
        _ = &mut stop => Ending::Stopped,
        reason = limits.exceeded(&activity) => Ending::Exceeded(reason),
        _ = output.stream.forward(&output.destination, false) => Ending::Exceeded(GRACE_EXPIRED.into()),
        status = pump_output(&mut reader, &mut child, &output, &activity) => Ending::Exited(status),
        _ = pump_input => Ending::Stopped,
    };
    finish(ending, &mut child, &output, &mut stop, false).await;
}

async fn run_exec(
    exec: Exec,
    mut input: mpsc::Receiver<Input>,
    mut stop: oneshot::Receiver<()>,
    output: Output,
    limits: Limits,
) {
    let Exec {
        output: mut pipe,
        mut child,
    } = exec;
    let activity = Activity::new();
    // Stdin is closed: input is read and dropped so that the queue never fills.
    let discard_input = async {
        while input.recv().await.is_some() {}
        std::future::pending::<()>().await
    };
    let ending = tokio::select! {
        biased;
        _ = &mut stop => Ending::Stopped,
        reason = limits.exceeded(&activity) => Ending::Exceeded(reason),
        _ = output.stream.forward(&output.destination, false) => Ending::Exceeded(GRACE_EXPIRED.into()),
        status = pump_output(&mut pipe, &mut child, &output, &activity) => Ending::Exited(status),
        _ = discard_input => Ending::Stopped,
    };
    drop(pipe);
    finish(ending, &mut child, &output, &mut stop, true).await;
}

/// Forwards output until the shell has exited and its output is drained (end of file, or quiet
/// for [`DRAIN_QUIET`]: a background process may keep the terminal open forever).
async fn pump_output(
    reader: &mut (impl AsyncRead + Unpin),
    child: &mut Child,
    output: &Output,
    activity: &Activity,
) -> Option<ExitStatus> {
    let mut buffer = vec![0u8; output.destination.chunk];
    let mut exited: Option<Option<ExitStatus>> = None;
    loop {
        let read = match exited {
            None => tokio::select! {
                read = reader.read(&mut buffer) => read,
                status = child.wait() => {
                    exited = Some(status.ok());
                    continue;
                }
            },
            Some(_) => match timeout(DRAIN_QUIET, reader.read(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => break,
            },
        };
        match read {
            // A PTY master reports the end of its terminal as EIO.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                activity.touch();
                output.stream.write(&buffer[..n]).await;
            }
        }
    }
    match exited {
        Some(status) => status,
        // End of output first: give the process a moment to exit on its own.
        None => timeout(KILL_GRACE, child.wait()).await.ok().and_then(Result::ok),
    }
}

async fn finish(
    ending: Ending,
    child: &mut Child,
    output: &Output,
    stop: &mut oneshot::Receiver<()>,
    report_exit_status: bool,
) {
    match ending {
        Ending::Stopped => {
            kill_and_reap(child).await;
        }
        Ending::Exceeded(reason) => {
            tracing::info!("shell in session {} ended: {reason}", output.sid());
            output
                .stopped(tether_proto::shell::status::ERROR, &reason, None)
                .await;
            kill_and_reap(child).await;
        }
        Ending::Exited(status) => {
            let status = match status {
                Some(status) => Some(status),
                None => kill_and_reap(child).await,
            };
            // The last output first; told to stop meanwhile: nobody is waiting for it.
            tokio::select! {
                _ = output.drain() => {}
                _ = stop => return,
            }
            let exit_status = status.map(exit_code);
            let text = if report_exit_status { "" } else { "shell exited" };
            output
                .stopped(
                    tether_proto::shell::status::NORMAL,
                    text,
                    exit_status.filter(|_| report_exit_status),
                )
                .await;
        }
    }
}

/// The exit code, or 128 + the signal number, as shells report it.
fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.into(),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}

/// SIGHUP to the shell's process group (as a terminal hangup would), SIGKILL if it is still
/// there after [`KILL_GRACE`]; always reaps the shell so that no zombie is left.
async fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    if let Some(pid) = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        signal_group(pid, libc::SIGHUP);
        // A stopped (Ctrl-Z) process only acts on the hangup once continued.
        signal_group(pid, libc::SIGCONT);
        if let Ok(status) = timeout(KILL_GRACE, child.wait()).await {
            return status.ok();
        }
        signal_group(pid, libc::SIGKILL);
    }
    child.wait().await.ok()
}

fn signal_group(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the shell leads its own process group.
    unsafe {
        libc::kill(-pid, signal);
    }
}
