//! A socket read by a coroutine of its own, so that one session on a coroutine can wait on two
//! sockets at once (Exotel's and a relayed bot's) and be woken by whichever speaks first. Only
//! a relayed call on a coroutine (a TLS caller, or `MEDIA_LOOPS=0`) uses pumps: on an event
//! loop both sockets wait in the loop's poller (`media::engine`).
//!
//! may's blocking `read` cannot be interrupted (`WaitIoWaker::wakeup` does not make it return),
//! so a session that must also hear its bot cannot block on Exotel's socket. Instead each socket
//! gets a *pump*: a coroutine that reads the socket into a fixed ring and unparks the session.
//! The session reads the ring through [`Pumped`], which waits by parking the session's
//! coroutine (`may::coroutine::park_timeout`) until a pump unparks it or the wait runs out, and
//! then answers `WouldBlock` like a socket read that timed out.
//!
//! Owns: the pump coroutine, its ring, the wake-up. Must not parse anything: bytes in, bytes out.
//! Allocates only when a socket is pumped, never per read.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Bytes a pump holds for the session before it stops reading the socket (TCP then pushes back).
pub const RING_BYTES: usize = 16 * 1024;
/// Bytes a pump reads from the socket at a time.
const READ_BYTES: usize = 4 * 1024;

/// How writes behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Wait for room in the socket, up to its write timeout (Exotel's socket: what is sent is
    /// already paced, and a caller that stops reading for long has gone).
    Blocking,
    /// Never wait: `WouldBlock` when the socket is full, and the caller keeps the rest (a bot's
    /// socket: a slow bot must never hold up the caller's side).
    NonBlocking,
}

/// A fixed ring of bytes.
struct Ring {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Appends as much of `data` as fits; returns how much.
    fn push(&mut self, data: &[u8]) -> usize {
        let cap = self.buf.len();
        let n = data.len().min(self.room());
        let tail = (self.head + self.len) % cap;
        let first = n.min(cap - tail);
        self.buf[tail..tail + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Moves up to `out.len()` bytes out; returns how many.
    fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let cap = self.buf.len();
        let n = out.len().min(self.len);
        let first = n.min(cap - self.head);
        out[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        out[first..n].copy_from_slice(&self.buf[..n - first]);
        self.head = (self.head + n) % cap;
        self.len -= n;
        n
    }
}

/// What the pump and the session share.
struct Inbox {
    ring: Ring,
    /// The socket is done: end of stream (`None` inside) or an error's kind.
    ended: Option<Option<ErrorKind>>,
    /// The session dropped its end: the pump stops.
    closed: bool,
    /// The pump is parked until the ring has room.
    pump_waiting: bool,
}

struct Shared {
    inbox: Mutex<Inbox>,
    /// The session's coroutine, unparked when bytes arrive.
    session: may::coroutine::Coroutine,
    /// The pump's coroutine, unparked when the ring has room again.
    pump: OnceLock<may::coroutine::Coroutine>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics while holding the lock; a poisoned lock still holds valid bytes.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A socket whose reads come from its pump. Dropping it shuts the socket down, which ends the
/// pump.
pub struct Pumped {
    socket: may::net::TcpStream,
    shared: Arc<Shared>,
    /// How long a read with nothing to give parks the session (`None`: until woken).
    wait: Option<Duration>,
    writes: Writes,
}

impl Pumped {
    /// Starts a pump on `socket`. Must be called on the coroutine that will read (the session):
    /// that is the coroutine the pump wakes.
    pub fn start(socket: may::net::TcpStream, writes: Writes) -> io::Result<Pumped> {
        let reader = socket.try_clone()?;
        // A clone keeps the original's timeouts (the media listener's handshake timeout, for
        // one): the pump waits for as long as the socket is open.
        reader.set_read_timeout(None)?;
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox {
                ring: Ring::new(RING_BYTES),
                ended: None,
                closed: false,
                pump_waiting: false,
            }),
            session: may::coroutine::current(),
            pump: OnceLock::new(),
        });
        let for_pump = shared.clone();
        // A pump's stack holds one read loop: 16 KiB is plenty (its buffer is on the heap).
        let builder = may::coroutine::Builder::new().stack_size(16 * 1024 / size_of::<usize>());
        may::go!(builder, move || {
            pump(reader, &for_pump);
            leave_parking();
        })?;
        Ok(Pumped {
            socket,
            shared,
            wait: None,
            writes,
        })
    }

    pub fn socket(&self) -> &may::net::TcpStream {
        &self.socket
    }

    /// How long a read waits for bytes before answering `WouldBlock` (zero: not at all).
    pub fn set_wait(&mut self, wait: Option<Duration>) {
        self.wait = wait;
    }
}

/// Call before a coroutine that parked (`may::coroutine::park*`) ends. may's `Park::subscribe`
/// may run the parked coroutine inline when it was unparked while parking (`fast_wake_up`,
/// may 0.3 park.rs), holding the park's `wait_kernel` flag meanwhile. A coroutine that finishes
/// inside that call drops its own `Park`, whose `Drop` waits for `wait_kernel` to clear: it
/// never does, and the worker thread spins in `sched_yield` for good (seen under load: gdb
/// showed a worker in `drop_in_place<may::park::Park>` under `Park::subscribe`). Yielding
/// once returns to the scheduler first, so the coroutine ends outside any `subscribe`.
pub fn leave_parking() {
    may::coroutine::yield_now();
}

/// The pump: socket → ring, waking the session, until the socket ends or the session leaves.
fn pump(mut socket: may::net::TcpStream, shared: &Shared) {
    let _ = shared.pump.set(may::coroutine::current());
    let mut buf = vec![0u8; READ_BYTES];
    let ended = loop {
        let n = match socket.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.kind()),
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let mut inbox = shared.lock();
            if inbox.closed {
                return;
            }
            let pushed = inbox.ring.push(data);
            data = &data[pushed..];
            inbox.pump_waiting = !data.is_empty();
            drop(inbox);
            if pushed > 0 {
                shared.session.unpark();
            }
            if !data.is_empty() {
                may::coroutine::park();
            }
        }
    };
    shared.lock().ended = Some(ended);
    shared.session.unpark();
}

impl Read for Pumped {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut waited = false;
        loop {
            {
                let mut inbox = self.shared.lock();
                if inbox.ring.len > 0 {
                    let n = inbox.ring.pop_into(out);
                    if std::mem::take(&mut inbox.pump_waiting) {
                        if let Some(pump) = self.shared.pump.get() {
                            pump.unpark();
                        }
                    }
                    return Ok(n);
                }
                match inbox.ended {
                    Some(None) => return Ok(0),
                    Some(Some(kind)) => return Err(kind.into()),
                    None => {}
                }
            }
            match self.wait {
                _ if waited => return Err(ErrorKind::WouldBlock.into()),
                Some(wait) if wait.is_zero() => return Err(ErrorKind::WouldBlock.into()),
                Some(wait) => may::coroutine::park_timeout(wait),
                // Woken for the other socket: keep waiting for this one.
                None => {
                    may::coroutine::park();
                    continue;
                }
            }
            waited = true;
        }
    }
}

impl Write for Pumped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.writes {
            // A write timeout is the socket's own error; `MediaStream` turns it into the
            // `WouldBlock` tungstenite resumes after, as for an unpumped socket.
            Writes::Blocking => self.socket.write(buf),
            // may's sockets are non-blocking underneath: writing to the std socket never waits.
            Writes::NonBlocking => self.socket.inner().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Pumped {
    fn drop(&mut self) {
        let waiting = {
            let mut inbox = self.shared.lock();
            inbox.closed = true;
            std::mem::take(&mut inbox.pump_waiting)
        };
        if waiting {
            if let Some(pump) = self.shared.pump.get() {
                pump.unpark();
            }
        }
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    #[test]
    fn the_ring_wraps_and_keeps_order() {
        let mut ring = Ring::new(8);
        assert_eq!(ring.push(b"abcdef"), 6);
        let mut out = [0u8; 4];
        assert_eq!(ring.pop_into(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(ring.push(b"ghijklmn"), 6, "only the room is taken");
        let mut all = [0u8; 16];
        let n = ring.pop_into(&mut all);
        assert_eq!(&all[..n], b"efghijkl");
        assert_eq!(ring.pop_into(&mut all), 0);
    }
}
