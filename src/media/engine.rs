//! Media event loops (`MEDIA_LOOPS`, one per core by default): each thread carries many calls'
//! sessions over non-blocking sockets, woken by edge-triggered readiness (`mio`, epoll on
//! Linux) and by one timer heap, instead of one coroutine per call parked in a read with a
//! timeout. Per caller frame that is one `recv` and a share of one `epoll_wait`; per outbound
//! chunk one `send`; no per-frame `setsockopt`, scheduler hand-off or timer registration, and no
//! stack per call (docs/ARCHITECTURE.md §2).
//!
//! The session is the same sans-I/O [`Session::turn`] a coroutine runs: the loop calls it when
//! its socket has bytes, when the time it asked for comes (pacing, pings, limits), or when a
//! full socket drains. Its socket ([`LoopSocket`]) never waits; it writes down how long the
//! session wants to wait or to hold a caller ahead of real time, and the loop keeps the time.
//!
//! A relayed call (`BOT=relay`) lives here too: its bot's socket is on the same poller (token
//! `2k + 1` beside the caller's `2k`), and either socket's readiness gives the session a turn,
//! which reads both. Opening the relay waits (DNS, TCP, the handshake), so the session asks the
//! loop for it ([`Session::take_dial`]): the call is parked, a coroutine dials, and the loop
//! hands the outcome back ([`Session::dialed`]) through its inbox. No pump coroutines, no
//! wake-ups through may's scheduler per frame.
//!
//! Owns: the loop threads, the hand-over of sockets to them, each call's place in a loop until
//! its close handshakes (the caller's and the bot's) are done, the dials in flight. The call's
//! set-up and end are `media::begin` and `media::end`, the same as on a coroutine.

use super::looped::LoopSocket;
use super::session::{waits_for_close, EndReason, MediaStream, Scratch, Session, SessionStats};
use super::{Ending, Grant};
use crate::bot::relay::{ConnectError, Dial, Relay, WaitsIn};
use crate::http::OpenConnection;
use crate::websocket::ServerSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Turns one call gets per wake-up before the others have theirs (a caller whose socket holds
/// many frames waits for the next round, not the whole loop for it).
pub const MAX_TURNS_PER_WAKE: usize = 32;
/// A call whose caller has not read for this long (its socket full) is ended, as a
/// coroutine's write times out.
pub const WRITE_STALL: Duration = Duration::from_secs(5);
/// How long an ended call waits for the caller's close frame after its own.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The longest a session goes without a turn (it asks for at most 200 ms itself).
const MAX_WAIT: Duration = Duration::from_millis(200);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
const WAKER: Token = Token(usize::MAX);

/// A call's two sockets on the poller: Exotel's, and a relayed bot's.
fn caller_token(index: usize) -> Token {
    Token(index * 2)
}

fn bot_token(index: usize) -> Token {
    Token(index * 2 + 1)
}

/// What a loop needs of the server: to set a call up and to write its end (`media::begin` and
/// `media::end`, for the server's `App`). A trait, so that this module does not import the app
/// that holds its loops.
pub trait CallHost: Send + Sync + 'static {
    fn begin(
        &self,
        ws: ServerSocket<MediaStream>,
        grant: Grant,
    ) -> (Session<'_, MediaStream>, Ending);
    fn end(&self, ending: Ending, reason: &EndReason, stats: &SessionStats);
    /// Whether writing this end may wait for the disk (then it is written off the loop).
    fn end_may_wait(&self, ending: &Ending, stats: &SessionStats) -> bool;
}

/// A call handed to a loop: its upgraded socket (already [`MediaStream::Looped`]), who it is,
/// and its place among the HTTP connections.
pub struct Arrival {
    pub ws: ServerSocket<MediaStream>,
    pub grant: Grant,
    pub open: OpenConnection,
}

/// The loops of one server.
#[derive(Default)]
pub struct MediaLoops {
    loops: OnceLock<Vec<LoopHandle>>,
    next: AtomicUsize,
}

struct LoopHandle {
    inbox: Arc<Mutex<Inbox>>,
    waker: Arc<Waker>,
}

/// What reaches a loop from other threads: calls handed to it, and relays its dials opened.
#[derive(Default)]
struct Inbox {
    arrivals: Vec<Arrival>,
    dialed: Vec<Dialed>,
}

/// A relay dialed for one of the loop's calls, on a coroutine of its own (the dial waits for
/// DNS, TCP and the handshake; the loop must not).
struct Dialed {
    index: usize,
    /// Which dial: the call at `index` may have ended and its place been taken meanwhile.
    dial_id: u64,
    dial: Dial,
    opened: Result<Relay, ConnectError>,
}

fn lock(inbox: &Mutex<Inbox>) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

impl MediaLoops {
    /// Starts `threads` loops for `host`'s calls (none for 0), each resting `rest` when it
    /// found little to do (`MEDIA_LOOP_REST_MS`, [`crate::config::DEFAULT_LOOP_REST`]). Once
    /// per server.
    pub fn start<H: CallHost>(
        &self,
        host: &Arc<H>,
        threads: usize,
        rest: Duration,
    ) -> std::io::Result<()> {
        let mut handles = Vec::with_capacity(threads);
        for k in 0..threads {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let inbox = Arc::new(Mutex::new(Inbox::default()));
            let (host, shared) = (host.clone(), (inbox.clone(), waker.clone()));
            std::thread::Builder::new()
                .name(format!("media-loop-{k}"))
                .spawn(move || Loop::new(&host, poll, shared, rest).run())?;
            handles.push(LoopHandle { inbox, waker });
        }
        let _ = self.loops.set(handles);
        Ok(())
    }

    /// Whether calls go to loops.
    pub fn running(&self) -> bool {
        self.loops.get().is_some_and(|l| !l.is_empty())
    }

    /// Hands a call to the next loop in turn.
    pub fn submit(&self, arrival: Arrival) {
        let Some(loops) = self.loops.get().filter(|l| !l.is_empty()) else {
            return;
        };
        let handle = &loops[self.next.fetch_add(1, Ordering::Relaxed) % loops.len()];
        lock(&handle.inbox).arrivals.push(arrival);
        if let Err(e) = handle.waker.wake() {
            crate::error!("media.loop_wake_failed", error = e);
        }
    }
}

/// Where a call is in its life on the loop.
enum Phase {
    Live,
    /// Its relay being dialed (this dial): no turns until it is open or has failed.
    Dialing(u64),
    /// Its own close frames sent; waiting until then for the bot's and, when `caller`, the
    /// caller's.
    Closing {
        until: Instant,
        caller: bool,
    },
}

/// One call on a loop.
struct LoopCall<'a> {
    session: Session<'a, MediaStream>,
    /// Taken when the call ends.
    ending: Option<Ending>,
    /// Its place among the HTTP connections, given back when it leaves the loop.
    _open: OpenConnection,
    phase: Phase,
    /// When its next turn is due with nothing to read (the timer heap holds an entry for it).
    wake_at: Option<Instant>,
    /// Not read before this (a caller ahead of real time).
    hold_until: Option<Instant>,
    /// Since when its socket has been full.
    stalled_since: Option<Instant>,
    /// The socket became writable since the last turn.
    writable: bool,
    /// A relayed bot's socket was put on the poller (counted in `Loop::relayed`).
    relayed: bool,
}

impl<'a> LoopCall<'a> {
    /// A call just set up: live, nothing due yet, not relayed.
    fn new(
        session: Session<'a, MediaStream>,
        ending: Option<Ending>,
        open: OpenConnection,
    ) -> Self {
        LoopCall {
            session,
            ending,
            _open: open,
            phase: Phase::Live,
            wake_at: None,
            hold_until: None,
            stalled_since: None,
            writable: false,
            relayed: false,
        }
    }

    fn socket(&mut self) -> &mut LoopSocket {
        self.session
            .io_mut()
            .looped()
            .expect("a call on a loop has a looped socket")
    }
}

/// What a call's drive asks of the loop.
enum Next {
    /// A turn at this time, or sooner on readiness.
    At(Instant),
    /// More to read now: another round.
    Again,
    /// Its relay to open, away from the loop; no turns until then.
    Dial(Dial),
    /// No turn until the dial in flight hands the call back.
    Parked,
    /// Gone: deregister and drop.
    Done,
}

struct Loop<'a, H: CallHost> {
    host: &'a Arc<H>,
    poll: Poll,
    inbox: Arc<Mutex<Inbox>>,
    /// Wakes this loop: for a dial's coroutine, when it is done.
    waker: Arc<Waker>,
    /// The last dial's number.
    dials: u64,
    calls: Vec<Option<LoopCall<'a>>>,
    free: Vec<usize>,
    /// (due, call index): an entry whose call now holds another due time is stale, skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    ready: Vec<usize>,
    again: Vec<usize>,
    /// The buffers every call's turn works in, one call at a time.
    scratch: Box<Scratch>,
    /// How long to rest after a round that found little to do, while no call is relayed.
    rest: Duration,
    /// Calls whose bot's socket is on this poller. While there are any the loop does not rest:
    /// an in-process bot's audio is sent by the timer heap, but a relayed bot's arrives by
    /// readiness, and would wait out the rest twice per turnaround (the caller's frame on its
    /// way to the bot, the bot's answer on its way back; docs/ARCHITECTURE.md §7).
    relayed: usize,
}

impl<'a, H: CallHost> Loop<'a, H> {
    fn new(
        host: &'a Arc<H>,
        poll: Poll,
        (inbox, waker): (Arc<Mutex<Inbox>>, Arc<Waker>),
        rest: Duration,
    ) -> Loop<'a, H> {
        Loop {
            host,
            poll,
            inbox,
            waker,
            dials: 0,
            calls: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            // Room for a full poll's events and as many calls again, made once: their first
            // pushes came during calls, on a loop starved of CPU, as allocations on the media
            // path (tests/alloc.rs).
            ready: Vec::with_capacity(2 * EVENTS),
            again: Vec::with_capacity(EVENTS),
            scratch: Box::default(),
            rest,
            relayed: 0,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            self.drop_stale_timers();
            let timeout = if self.again.is_empty() {
                self.timers.peek().map(|Reverse((at, _))| {
                    crate::timer::whole_millis(at.saturating_duration_since(Instant::now()))
                })
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    crate::error!("media.loop_poll_failed", error = e);
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let mut arrived = false;
            let mut taken = 0;
            for event in events.iter() {
                taken += 1;
                match event.token() {
                    WAKER => arrived = true,
                    token => self.note_readiness(token, event),
                }
            }
            let now = Instant::now();
            let busy = taken >= EVENTS || !self.again.is_empty();
            let mut ready = std::mem::take(&mut self.ready);
            ready.append(&mut self.again);
            for index in ready.drain(..) {
                self.drive(index, now);
            }
            self.ready = ready;
            self.due(now);
            if arrived {
                self.admit(now);
            }
            if !busy && self.relayed == 0 && self.calls.len() > self.free.len() {
                let spent = now.elapsed();
                if spent < self.rest {
                    std::thread::sleep(self.rest - spent);
                }
            }
        }
    }

    /// Marks what readiness says of a call's socket (the caller's, or its bot's) and queues the
    /// call for a turn this round.
    fn note_readiness(&mut self, token: Token, event: &mio::event::Event) {
        let (index, bot) = (token.0 / 2, token.0 % 2 == 1);
        let Some(Some(call)) = self.calls.get_mut(index) else {
            return;
        };
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        if bot {
            // Its writable edge needs only a turn: the relay flushes at each.
            if let (true, Some(socket)) = (readable, call.session.relay_socket()) {
                socket.became_readable();
            }
        } else {
            if readable {
                call.socket().became_readable();
            }
            if event.is_writable() {
                call.writable = true;
            }
        }
        self.ready.push(index);
    }

    /// Drops the entries at the top of the timer heap that no call holds any more (its call
    /// asked for another time since, or is gone): the loop would otherwise wake for them,
    /// find nothing due and rest, once for each turn that moved its call's time.
    fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if self.timer_is_current(at, index) {
                break;
            }
            self.timers.pop();
        }
    }

    fn timer_is_current(&self, at: Instant, index: usize) -> bool {
        matches!(self.calls.get(index), Some(Some(c)) if c.wake_at == Some(at))
    }

    /// Runs the calls whose time has come.
    fn due(&mut self, now: Instant) {
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.timer_is_current(at, index) {
                self.drive(index, now);
            }
        }
    }

    /// Takes what other threads handed over since the last round: new calls, opened relays.
    fn admit(&mut self, now: Instant) {
        let Inbox { arrivals, dialed } = std::mem::take(&mut *lock(&self.inbox));
        self.set_up(arrivals, now);
        for dialed in dialed {
            self.relay_dialed(dialed, now);
        }
    }

    /// Sets up newly handed calls.
    fn set_up(&mut self, arrivals: Vec<Arrival>, now: Instant) {
        for Arrival { ws, grant, open } in arrivals {
            let host: &'a H = self.host;
            let id = grant.call_log_id.clone();
            let began =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.begin(ws, grant)));
            // The other calls of this loop go on; this one's socket closes with the panic.
            let Ok((session, ending)) = began else {
                crate::error!("media.setup_panicked", callLogId = id);
                continue;
            };
            let index = self.free.pop().unwrap_or_else(|| {
                self.calls.push(None);
                self.calls.len() - 1
            });
            let mut call = LoopCall::new(session, Some(ending), open);
            let registered = self.poll.registry().register(
                call.socket().stream_mut(),
                caller_token(index),
                Interest::READABLE | Interest::WRITABLE,
            );
            self.calls[index] = Some(call);
            match registered {
                Ok(()) => self.drive(index, now),
                Err(e) => {
                    crate::error!("media.loop_register_failed", callLogId = id, error = e);
                    self.end(index, EndReason::SocketError(e.to_string()), now, true);
                }
            }
        }
    }

    /// Gives a call its turns, then decides when it is next due.
    fn drive(&mut self, index: usize, now: Instant) {
        let Some(Some(call)) = self.calls.get_mut(index) else {
            return;
        };
        let scratch = &mut self.scratch;
        let turns = std::panic::AssertUnwindSafe(|| step(call, now, scratch));
        let (next, closable) = match std::panic::catch_unwind(turns) {
            Ok(next) => (next, true),
            Err(_) => {
                let id = call.session.call_log_id.clone();
                crate::error!("media.session_panicked", callLogId = id);
                // The session is in no state to close: its socket is dropped instead.
                let reason = EndReason::SocketError("the session panicked".into());
                (Err(reason), false)
            }
        };
        match next {
            Ok(Next::At(at)) => self.schedule(index, at),
            Ok(Next::Again) => self.again.push(index),
            Ok(Next::Dial(dial)) => self.dial(index, dial),
            Ok(Next::Parked) => {}
            Ok(Next::Done) => self.remove(index),
            Err(reason) => self.end(index, reason, now, closable),
        }
    }

    /// Opens a call's relay on a coroutine of its own, which hands it back through the inbox.
    /// The call takes no turns meanwhile: the caller's frames wait in its socket, as they
    /// wait on a coroutine that dials.
    fn dial(&mut self, index: usize, dial: Dial) {
        let Some(Some(call)) = self.calls.get_mut(index) else {
            return;
        };
        self.dials += 1;
        let dial_id = self.dials;
        call.phase = Phase::Dialing(dial_id);
        call.wake_at = None;
        let (inbox, waker) = (self.inbox.clone(), self.waker.clone());
        let builder = may::coroutine::Builder::new()
            .name("relay-dial".into())
            .stack_size(crate::http::CONNECTION_STACK_WORDS);
        let hand_back = move |dial: Dial, opened| {
            lock(&inbox).dialed.push(Dialed {
                index,
                dial_id,
                dial,
                opened,
            });
            if let Err(e) = waker.wake() {
                crate::error!("media.loop_wake_failed", error = e);
            }
        };
        // Kept for the fallback should no coroutine start (a dial is one per call, not per frame).
        let kept = dial.clone();
        let back = hand_back.clone();
        let spawned = may::go!(builder, move || {
            // A panic must still hand the call back: parked, it would hold its slot for good.
            let open = std::panic::AssertUnwindSafe(|| Relay::open(&dial, WaitsIn::Loop));
            let opened = std::panic::catch_unwind(open)
                .unwrap_or_else(|_| Err(ConnectError::Unreachable("the dial panicked".into())));
            back(dial, opened);
        });
        if let Err(e) = spawned {
            let id = call.session.call_log_id.clone();
            crate::error!("relay.dial_failed", callLogId = id, error = e);
            hand_back(
                kept,
                Err(ConnectError::Unreachable(format!(
                    "no coroutine to dial on: {e}"
                ))),
            );
        }
    }

    /// A dial is done: the call goes on with its relay (its socket now on this poller) or its
    /// fallback.
    fn relay_dialed(&mut self, dialed: Dialed, now: Instant) {
        let Dialed {
            index,
            dial_id,
            dial,
            opened,
        } = dialed;
        let Some(Some(call)) = self.calls.get_mut(index) else {
            return;
        };
        if !matches!(call.phase, Phase::Dialing(id) if id == dial_id) {
            return;
        }
        call.phase = Phase::Live;
        // A fallback bot starts here (`on_start`, the user's code for a library's bot).
        let session = &mut call.session;
        let installed = std::panic::AssertUnwindSafe(|| session.dialed(&dial, opened));
        if std::panic::catch_unwind(installed).is_err() {
            let id = call.session.call_log_id.clone();
            crate::error!(
                "media.session_panicked",
                callLogId = id,
                detail = "in dialed"
            );
            let reason = EndReason::SocketError("the session panicked".into());
            self.end(index, reason, now, false);
            return;
        }
        if let Some(socket) = call.session.relay_socket() {
            let registered = self.poll.registry().register(
                socket.stream_mut(),
                bot_token(index),
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = registered {
                // The bot's frames are then read at the call's turns (every 200 ms at most).
                let id = call.session.call_log_id.clone();
                crate::error!("media.loop_register_failed", callLogId = id, error = e);
            }
            if !call.relayed {
                call.relayed = true;
                self.relayed += 1;
            }
        }
        self.drive(index, now);
    }

    /// Due at `at`. A call that keeps its due time (a hold, a stall, a close being waited for,
    /// asked again at each readiness) keeps its one heap entry: a second one would give it a
    /// second turn at that time.
    fn schedule(&mut self, index: usize, at: Instant) {
        if let Some(Some(call)) = self.calls.get_mut(index) {
            if call.wake_at != Some(at) {
                call.wake_at = Some(at);
                self.timers.push(Reverse((at, index)));
            }
        }
    }

    /// The call is over: closes it (`Session::finish`, which also tells its bot, unless a panic
    /// left it in no state to be closed), writes its end (`media::end`), then waits for the
    /// caller's close frame, briefly. A panic in either (a bot's `on_stop` is the user's code)
    /// costs this call only.
    fn end(&mut self, index: usize, reason: EndReason, now: Instant, closable: bool) {
        let Some(Some(call)) = self.calls.get_mut(index) else {
            return;
        };
        let id = call.session.call_log_id.clone();
        let mut closes = closable && waits_for_close(&reason);
        if closable {
            let scratch = &mut self.scratch;
            let session = &mut call.session;
            let finish = std::panic::AssertUnwindSafe(|| session.finish_in(&reason, scratch));
            if std::panic::catch_unwind(finish).is_err() {
                crate::error!(
                    "media.session_panicked",
                    callLogId = id,
                    detail = "in finish"
                );
                closes = false;
            }
        }
        let stats = std::mem::take(&mut call.session.stats);
        if let Some(ending) = call.ending.take() {
            let host = self.host;
            let written = std::panic::AssertUnwindSafe(|| end_call(host, ending, reason, stats));
            if std::panic::catch_unwind(written).is_err() {
                crate::error!("media.end_panicked", callLogId = id);
            }
        }
        // A relayed bot was sent its close too: its answer is read toward as the caller's is.
        let bot_closes = closable && call.session.relay_socket().is_some();
        if !closes && !bot_closes {
            self.remove(index);
            return;
        }
        call.phase = Phase::Closing {
            until: now + CLOSE_WAIT,
            caller: closes,
        };
        self.drive(index, now);
    }

    fn remove(&mut self, index: usize) {
        if let Some(mut call) = self.calls.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(call.socket().stream_mut());
            call.socket().shutdown();
            if let Some(bot) = call.session.relay_socket() {
                let _ = self.poll.registry().deregister(bot.stream_mut());
            }
            if call.relayed {
                self.relayed -= 1;
            }
            drop(call);
            self.free.push(index);
        }
    }
}

/// The call's end, written where it cannot hold up the loop: a caller who pressed the
/// do-not-call key is put on the list by the store, which may wait for the disk, so that end
/// is written on a thread of its own.
fn end_call<H: CallHost>(host: &Arc<H>, ending: Ending, reason: EndReason, stats: SessionStats) {
    if !host.end_may_wait(&ending, &stats) {
        host.end(ending, &reason, &stats);
        return;
    }
    let host = host.clone();
    let spawned = std::thread::Builder::new()
        .name("media-call-end".into())
        .spawn(move || host.end(ending, &reason, &stats));
    if let Err(e) = spawned {
        crate::error!("media.end_thread_failed", error = e);
    }
}

/// A call's turns at `now`, until it waits. `Err` when the call is over.
fn step(
    call: &mut LoopCall<'_>,
    now: Instant,
    scratch: &mut Box<Scratch>,
) -> Result<Next, EndReason> {
    match call.phase {
        Phase::Live => {}
        Phase::Dialing(_) => return Ok(Next::Parked),
        Phase::Closing { until, caller } => {
            return Ok(
                match call.session.read_toward_close(caller) || now >= until {
                    true => Next::Done,
                    false => Next::At(until),
                },
            )
        }
    }
    if let Some(next) = drain_stalled(call, now)? {
        return Ok(next);
    }
    if let Some(hold) = call.hold_until.filter(|h| now < *h) {
        return Ok(Next::At(hold));
    }
    call.hold_until = None;
    for _ in 0..MAX_TURNS_PER_WAKE {
        call.socket().waited = false;
        if let Some(reason) = call.session.turn_in(now, scratch) {
            return Err(reason);
        }
        if let Some(dial) = call.session.take_dial() {
            return Ok(Next::Dial(dial));
        }
        let more_from_bot = call.session.relay_has_more();
        let socket = call.socket();
        if let Some(hold) = socket.hold.take() {
            let until = now + hold;
            call.hold_until = Some(until);
            return Ok(Next::At(until));
        }
        if socket.write_blocked {
            call.stalled_since = Some(now);
            return Ok(Next::At(now + WRITE_STALL));
        }
        if socket.waiting() && !more_from_bot {
            let wait = socket.wait.unwrap_or(MAX_WAIT).min(MAX_WAIT);
            return Ok(Next::At(now + wait));
        }
    }
    Ok(Next::Again)
}

/// A call whose socket was full: writes what its WebSocket holds once it drains, and ends the
/// call after [`WRITE_STALL`]. `Some` while it is still full.
fn drain_stalled(call: &mut LoopCall<'_>, now: Instant) -> Result<Option<Next>, EndReason> {
    let Some(since) = call.stalled_since else {
        return Ok(None);
    };
    if std::mem::take(&mut call.writable) {
        call.socket().write_blocked = false;
        call.session.flush()?;
        if !call.socket().write_blocked {
            call.stalled_since = None;
            return Ok(None);
        }
    }
    if now.duration_since(since) >= WRITE_STALL {
        return Err(EndReason::SocketError(format!(
            "the caller read nothing for {} s (its socket stayed full)",
            WRITE_STALL.as_secs()
        )));
    }
    Ok(Some(Next::At(since + WRITE_STALL)))
}

#[cfg(test)]
mod tests;
