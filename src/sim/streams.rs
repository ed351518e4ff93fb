//! A load's media streams on one event loop: each call opens its stream on a short-lived
//! coroutine (the webhook, the handshake, `connected` and `start`), then hands the socket here,
//! where one thread drives every call's [`Caller::turn`] on readiness (`mio`, edge-triggered)
//! and on one timer heap, until the call ends and its report goes to the load's channel
//! ([`Done`]).
//!
//! Why: a coroutine per call waiting in a read with a timeout cost the load generator a
//! `setsockopt`, a timer and a trip through may's scheduler for every wait, and its poller
//! slept in `epoll_wait` between frames, so each of the server's sends also woke a thread
//! here. Under load that made the load generator, not the server, the first to run out of CPU.
//! A TLS stream stays on its coroutine.
//!
//! Owns: the loop thread, the hand-over, each stream until its call ends.

use super::caller::{begin_stream, new_report, CallPlan, CallReport, Caller};
use super::client::Socket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::WebSocket;

const WAKER: Token = Token(usize::MAX);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// How a stream's call ended on the loop: its report, and the error that ended it if any.
pub type Finished = (CallReport, Result<(), String>);

/// A call handed to the loop: its open stream (a looped socket), its caller's state, its report
/// so far, and where to send the report when the call is over.
pub(super) struct Handed {
    pub(super) ws: WebSocket<Socket>,
    pub(super) caller: Caller,
    pub(super) report: CallReport,
    pub(super) done: Done,
}

/// Where a call's report goes when the loop is done with it: the load's one channel, with the
/// call's place in the load.
pub struct Done {
    pub call: usize,
    pub to: may::sync::mpsc::Sender<(usize, Finished)>,
}

impl Done {
    pub(super) fn send(self, report: CallReport, result: Result<(), String>) {
        let _ = self.to.send((self.call, (report, result)));
    }
}

/// The calls handed over since the loop's last round, or why the loop is gone.
#[derive(Default)]
struct Inbox {
    handed: Vec<Handed>,
    /// Set when the loop ended with an error: a call handed over after it ends at once.
    gone: Option<String>,
}

type SharedInbox = Arc<Mutex<Inbox>>;

fn lock(inbox: &SharedInbox) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

/// The loop is gone: every call waiting in the inbox ends with `why`, and so does every call
/// handed over from now on.
fn close(inbox: &SharedInbox, why: &str) {
    let stranded = {
        let mut inbox = lock(inbox);
        inbox.gone = Some(why.to_owned());
        std::mem::take(&mut inbox.handed)
    };
    for h in stranded {
        h.done.send(h.report, Err(why.to_owned()));
    }
}

/// The loop of one load; stopped and joined when dropped.
pub struct Streams {
    inbox: SharedInbox,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Streams {
    /// Starts the loop thread.
    pub fn start() -> std::io::Result<Streams> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let inbox = SharedInbox::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (queue, stopped) = (inbox.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sim-streams".into())
            .spawn(move || {
                let inbox = queue.clone();
                // A panic drops the calls the loop held (their coroutines hear it from their
                // channels); the inbox is closed so that none handed over later waits either.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Loop::new(poll, queue, stopped).run()
                }));
                if ran.is_err() {
                    close(&inbox, "the streams' loop panicked");
                }
            })?;
        Ok(Streams {
            inbox,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Hands a call's stream to the loop. If the loop is gone or cannot be woken, the call
    /// ends at once with that error: its coroutine never waits for a loop that will not run it.
    pub(super) fn submit(&self, handed: Handed) {
        {
            let mut inbox = lock(&self.inbox);
            if let Some(why) = &inbox.gone {
                handed.done.send(handed.report, Err(why.clone()));
                return;
            }
            inbox.handed.push(handed);
        }
        if let Err(e) = self.waker.wake() {
            let stranded = std::mem::take(&mut lock(&self.inbox).handed);
            for h in stranded {
                h.done
                    .send(h.report, Err(format!("the streams' loop: {e}")));
            }
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Stream {
    ws: WebSocket<Socket>,
    caller: Caller,
    report: CallReport,
    done: Done,
    /// Its next turn with nothing to read (the heap holds an entry for it).
    wake_at: Instant,
}

struct Loop {
    poll: Poll,
    inbox: SharedInbox,
    stop: Arc<AtomicBool>,
    streams: Vec<Option<Stream>>,
    free: Vec<usize>,
    /// (due, stream index): an entry whose stream now holds another due time is stale.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Loop {
    fn new(poll: Poll, inbox: SharedInbox, stop: Arc<AtomicBool>) -> Loop {
        Loop {
            poll,
            inbox,
            stop,
            streams: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    // Nothing can be driven without the poller: end every call with the error.
                    self.end_all(&format!("the streams' poller failed: {e}"));
                    return;
                }
                continue;
            }
            let mut arrived = false;
            for event in events.iter() {
                if event.token() == WAKER {
                    arrived = true;
                    continue;
                }
                let index = event.token().0;
                if let Some(Some(stream)) = self.streams.get_mut(index) {
                    if let Some(socket) = stream.ws.get_mut().looped() {
                        socket.became_readable();
                    }
                    self.turn(index, Instant::now());
                }
            }
            self.due(Instant::now());
            if arrived {
                self.admit();
            }
            let idle = self.streams.len() == self.free.len();
            if idle && self.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Turns the streams whose time has come.
    fn due(&mut self, now: Instant) {
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if matches!(self.streams.get(index), Some(Some(s)) if s.wake_at == at) {
                self.turn(index, now);
            }
        }
    }

    /// Registers the streams handed over since the last round and gives each its first turn.
    fn admit(&mut self) {
        let handed = std::mem::take(&mut lock(&self.inbox).handed);
        for Handed {
            mut ws,
            caller,
            report,
            done,
        } in handed
        {
            let index = self.free.pop().unwrap_or_else(|| {
                self.streams.push(None);
                self.streams.len() - 1
            });
            let registered = match ws.get_mut().looped() {
                Some(socket) => self.poll.registry().register(
                    socket.stream_mut(),
                    Token(index),
                    Interest::READABLE | Interest::WRITABLE,
                ),
                None => Err(std::io::Error::other("not a loop's socket")),
            };
            if let Err(e) = registered {
                self.free.push(index);
                done.send(report, Err(format!("the streams' loop: {e}")));
                continue;
            }
            self.streams[index] = Some(Stream {
                ws,
                caller,
                report,
                done,
                wake_at: Instant::now(),
            });
            self.turn(index, Instant::now());
        }
    }

    /// One turn of a stream: it is either due again at a time it names, or over.
    fn turn(&mut self, index: usize, now: Instant) {
        let Some(Some(stream)) = self.streams.get_mut(index) else {
            return;
        };
        let turned = stream.caller.turn(&mut stream.ws, &mut stream.report, now);
        match turned {
            Ok(Some(at)) => {
                // A time already past comes back as the next round's, not a busy loop.
                let at = at.max(now + Duration::from_micros(100));
                if stream.wake_at != at {
                    stream.wake_at = at;
                    self.timers.push(Reverse((at, index)));
                }
            }
            Ok(None) => self.finish(index, Ok(())),
            Err(e) => self.finish(index, Err(e)),
        }
    }

    /// The call is over: its socket leaves the poller and closes, its report goes back.
    fn finish(&mut self, index: usize, result: Result<(), String>) {
        let Some(mut stream) = self.streams.get_mut(index).and_then(Option::take) else {
            return;
        };
        if let Some(socket) = stream.ws.get_mut().looped() {
            let _ = self.poll.registry().deregister(socket.stream_mut());
        }
        drop(stream.ws);
        stream.done.send(stream.report, result);
        self.free.push(index);
    }

    /// The loop cannot go on: every call it holds or was handed ends with `why`, and so does
    /// every call handed over from now on.
    fn end_all(&mut self, why: &str) {
        for index in 0..self.streams.len() {
            self.finish(index, Err(why.to_owned()));
        }
        close(&self.inbox, why);
    }
}

/// Opens one call of a load on the calling coroutine (the webhook, the handshake, `connected`
/// and `start`) and hands its stream to the loop; the coroutine is then free. The call's report
/// goes to `done` when the call is over, or at once if it could not be opened.
pub fn open_looped_call(plan: &CallPlan, streams: &Streams, done: Done) {
    let mut report = new_report(plan);
    let opened = begin_stream(plan, &mut report).and_then(|(mut ws, caller)| {
        match ws.get_mut().make_looped() {
            Ok(true) => Ok((ws, caller)),
            Ok(false) => Err("a TLS stream cannot go on the loop".to_owned()),
            Err(e) => Err(format!("moving the stream to the loop: {e}")),
        }
    });
    match opened {
        Ok((ws, caller)) => streams.submit(Handed {
            ws,
            caller,
            report,
            done,
        }),
        Err(e) => done.send(report, Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::Role;

    /// A call handed to a loop that is gone (its poller failed, or it panicked) ends at once with
    /// the reason, and its socket with it; a coroutine never waits for a loop that will not run.
    #[test]
    fn a_call_handed_to_a_loop_that_is_gone_ends_at_once_with_why() {
        let streams = Streams::start().unwrap();
        close(&streams.inbox, "the streams' poller failed: test");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = may::net::TcpStream::connect(addr).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let mut ws = WebSocket::from_raw_socket(Socket::Plain(socket), Role::Client, None);
        assert!(ws.get_mut().make_looped().unwrap());
        let plan = CallPlan::new(addr, vec![0; 800]);
        let (to, finished) = may::sync::mpsc::channel();
        streams.submit(Handed {
            ws,
            caller: Caller::new(&plan, "CA1".into()),
            report: new_report(&plan),
            done: Done { call: 0, to },
        });
        let (_, (_, result)) = finished
            .recv_timeout(std::time::Duration::from_secs(1))
            .expect("answered at once, not left waiting");
        assert_eq!(result, Err("the streams' poller failed: test".to_owned()));
    }
}
