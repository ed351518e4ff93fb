use super::*;
use crate::media::session::{media_socket, Held, SessionContext, SessionSettings};
use std::io::{ErrorKind, Read, Write};

/// Writes `write` blocks until the socket takes no more; how many bytes it took.
fn fill_until_blocked(mut write: impl FnMut(&[u8]) -> std::io::Result<usize>) -> usize {
    let block = vec![0u8; 64 * 1024];
    let mut filled = 0usize;
    loop {
        match write(&block) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return filled,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Reads `filled` bytes off `caller` (within 5 s), as a caller who reads again.
fn drain(caller: &mut std::net::TcpStream, filled: usize) {
    caller.set_nonblocking(true).unwrap();
    let mut sink = vec![0u8; 256 * 1024];
    let mut read = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    while read < filled && Instant::now() < deadline {
        match caller.read(&mut sink) {
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

type Bots = fn(&crate::bot::CallStart<'_>) -> Box<dyn crate::bot::Bot>;

fn echo(_: &crate::bot::CallStart<'_>) -> Box<dyn crate::bot::Bot> {
    Box::new(crate::bot::echo::EchoBot::new(400))
}

/// A call on a loop socket over real loopback TCP, with the echo bot, and its caller's end.
fn looped_call<'a>(
    name: &str,
    (bots, settings, metrics): (&'a Bots, &'a SessionSettings, &'a crate::metrics::Metrics),
    t0: Instant,
) -> (LoopCall<'a>, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let caller = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    let ws = media_socket(
        MediaStream::Looped(LoopSocket::from_std(ours).unwrap()),
        Vec::new(),
    );
    let session = Session::new(
        ws,
        crate::calls::CallLogId::parse(name).unwrap(),
        SessionContext {
            bots: Held::Lent(bots),
            on_start: Held::Lent(&|_, _| Ok(())),
            settings,
            metrics,
            recorder: None,
            relay: None,
        },
        Vec::new(),
        Arc::new(std::sync::atomic::AtomicU8::new(0)),
        t0,
    );
    (
        LoopCall::new(session, None, OpenConnection::uncounted()),
        caller,
    )
}

/// A turn that reads a frame and finds the socket drained (a short read, no whole frame left)
/// does what the next turn would have done only to find nothing: the call is waiting after
/// one turn per frame, not two. Frames that arrive together are all read in one step.
#[test]
fn a_frame_read_from_a_drained_socket_settles_in_the_same_turn() {
    let (bots, settings, metrics) = (
        echo as Bots,
        SessionSettings::default(),
        crate::metrics::Metrics::new(),
    );
    let t0 = Instant::now();
    let (mut call, mut caller) = looped_call("settle", (&bots, &settings, &metrics), t0);
    caller
        .write_all(&crate::sim::wire::start_frame("MZ1", 8000))
        .unwrap();
    let mut scratch = Box::default();
    let frames = |call: &LoopCall<'_>| call.session.stats.frames_in;
    for k in 0..3 {
        caller
            .write_all(&crate::sim::wire::media_frame("MZ1", k, 100))
            .unwrap();
        let before = frames(&call);
        let deadline = Instant::now() + Duration::from_secs(5);
        while frames(&call) == before {
            assert!(Instant::now() < deadline, "frame {k} was never read");
            // Readiness, as the loop would have it when bytes arrive after the call waited.
            if call.socket().waiting() {
                call.socket().became_readable();
            }
            call.socket().waited = false;
            call.session.turn_in(Instant::now(), &mut scratch);
        }
        // The turn that read the frame left the call waiting: no second turn is needed.
        assert!(
            call.socket().waiting(),
            "frame {k}: not settled in its turn"
        );
    }
    // Two frames in one read: the first turn leaves the second to the next, which settles.
    let two = [
        crate::sim::wire::media_frame("MZ1", 3, 100),
        crate::sim::wire::media_frame("MZ1", 4, 100),
    ]
    .concat();
    caller.write_all(&two).unwrap();
    let before = frames(&call);
    let deadline = Instant::now() + Duration::from_secs(5);
    while frames(&call) < before + 2 {
        assert!(Instant::now() < deadline, "the two frames were never read");
        if call.socket().waiting() {
            call.socket().became_readable();
        }
        assert!(matches!(
            step(&mut call, Instant::now(), &mut scratch),
            Ok(Next::At(_))
        ));
    }
    assert!(call.socket().waiting());
}

/// A socket the caller stopped reading, filled for real: the call takes no turns, ends
/// `WRITE_STALL` after it filled; once the caller reads again, the call goes on.
#[test]
fn a_full_socket_ends_its_call_after_the_write_stall_and_a_drained_one_goes_on() {
    let (bots, settings, metrics) = (
        echo as Bots,
        SessionSettings::default(),
        crate::metrics::Metrics::new(),
    );
    let t0 = Instant::now();
    let (mut call, mut caller) = looped_call("stall", (&bots, &settings, &metrics), t0);
    // Fill the socket until it takes no more, as a caller who stopped reading leaves it.
    let filled = fill_until_blocked(|block| call.socket().write(block));
    assert!(call.socket().write_blocked && filled > 0);
    let mut scratch = Box::default();
    call.stalled_since = Some(t0);

    let at = |r: Result<Next, EndReason>| match r {
        Ok(Next::At(at)) => Some(at),
        _ => None,
    };
    // Still full a second later: no turn, the next look when the stall runs out.
    assert_eq!(
        at(step(&mut call, t0 + Duration::from_secs(1), &mut scratch)),
        Some(t0 + WRITE_STALL)
    );
    assert!(call.stalled_since.is_some());
    // At the stall's end the call is over.
    let ended = step(&mut call, t0 + WRITE_STALL, &mut scratch);
    assert!(
        matches!(&ended, Err(EndReason::SocketError(e)) if e.contains("read nothing for 5 s")),
        "{:?}",
        ended.err()
    );

    // The same socket drained by its caller: the next writable edge lifts the stall and the
    // call takes its turns again.
    drain(&mut caller, filled);
    call.writable = true;
    let later = t0 + Duration::from_secs(3);
    assert!(at(step(&mut call, later, &mut scratch)).is_some());
    assert!(call.stalled_since.is_none(), "the stall was lifted");
    assert!(!call.socket().write_blocked);
    caller.write_all(b"").unwrap();
}
