//! The receiving end of the relay's bounded channel, on a plain thread: the recorder's writer
//! thread waits for the next command or for its next flush, whichever comes first. It needs no
//! runtime (no tokio timer), so it behaves the same while the hub's runtime shuts down.

use std::{
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::Instant,
};

use tokio::sync::mpsc;

/// What a wait brought.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received<T> {
    Message(T),
    /// Every sender is gone and the queue is drained.
    Closed,
    TimedOut,
}

/// Wakes the receiving thread when a sender puts a message in the queue.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

pub(super) struct ThreadReceiver<T> {
    receiver: mpsc::Receiver<T>,
    waker: Waker,
}

impl<T> ThreadReceiver<T> {
    /// Made on the thread that receives: the senders unpark that thread.
    pub(super) fn new(receiver: mpsc::Receiver<T>) -> ThreadReceiver<T> {
        ThreadReceiver {
            receiver,
            waker: Waker::from(Arc::new(Unpark(thread::current()))),
        }
    }

    /// The next message, or `TimedOut` at `deadline`. A message already queued is returned
    /// even when the deadline has passed.
    pub(super) fn receive_until(&mut self, deadline: Instant) -> Received<T> {
        let mut context = Context::from_waker(&self.waker);
        loop {
            // Polling registers the waker; a message sent between this poll and the park
            // leaves the thread's unpark token set, so the park returns at once.
            match self.receiver.poll_recv(&mut context) {
                Poll::Ready(Some(message)) => return Received::Message(message),
                Poll::Ready(None) => return Received::Closed,
                Poll::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Received::TimedOut;
            }
            // May return early (spuriously or on a wake): the loop polls again.
            thread::park_timeout(deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thread_hears_async_senders_times_out_and_sees_the_close() {
        let (sender, receiver) = mpsc::channel::<u32>(2);
        let (done, results) = tokio::sync::oneshot::channel();
        thread::spawn(move || {
            let mut receiver = ThreadReceiver::new(receiver);
            let mut seen = Vec::new();
            let started = Instant::now();
            seen.push(receiver.receive_until(started + Duration::from_millis(50)));
            // The first wait ended at its deadline: nothing had been sent.
            assert!(started.elapsed() >= Duration::from_millis(50));
            loop {
                let next = receiver.receive_until(Instant::now() + Duration::from_secs(10));
                let closed = next == Received::Closed;
                seen.push(next);
                if closed {
                    break;
                }
            }
            let _ = done.send(seen);
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        for value in 1..=5 {
            // More than the queue holds: the sender waits for the thread (back-pressure).
            sender.send(value).await.unwrap();
        }
        drop(sender);
        let seen = tokio::time::timeout(Duration::from_secs(10), results)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            [
                Received::TimedOut,
                Received::Message(1),
                Received::Message(2),
                Received::Message(3),
                Received::Message(4),
                Received::Message(5),
                Received::Closed,
            ]
        );
    }

    #[test]
    fn a_queued_message_is_returned_after_the_deadline() {
        let (sender, receiver) = mpsc::channel::<u32>(1);
        sender.try_send(7).unwrap();
        let mut receiver = ThreadReceiver::new(receiver);
        let past = Instant::now();
        assert_eq!(receiver.receive_until(past), Received::Message(7));
        assert_eq!(receiver.receive_until(past), Received::TimedOut);
        drop(sender);
        assert_eq!(receiver.receive_until(past), Received::Closed);
    }
}
