//! The HTTP layer through its library API, with services the binary does not have: a handler
//! that panics must cost one 500 answer, not the connection's neighbours or the server.

mod support;

use exotel_voicebot::http::{Limits, Request, Response, Server, Service};
use std::sync::Arc;
use support::{request_bytes, Conn};

struct Panicky;

impl Service for Panicky {
    fn call(&self, request: &Request) -> Response {
        match request.path.as_str() {
            "/panic" => panic!("handler bug for {}", request.path),
            // A handler may use 32 KiB of stack of its own on top of the server's frames.
            "/deep" => Response::text(200, "text/plain", use_stack(32).to_string()),
            _ => Response::text(200, "text/plain", "fine"),
        }
    }
}

/// Recurses `kib` times with a 1 KiB local in each frame.
#[inline(never)]
fn use_stack(kib: u32) -> u32 {
    std::hint::black_box(&[kib as u8; 1024]);
    if kib == 0 {
        0
    } else {
        use_stack(kib - 1) + 1
    }
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let _accept = server.start(Arc::new(Panicky), Limits::default());

    let mut conn = Conn::open(addr);
    conn.send(&request_bytes("GET", "/panic", &[], b""));
    conn.read_response().assert_error(500, "internal");
    // The same connection keeps working after the 500.
    conn.send(&request_bytes("GET", "/ok", &[], b""));
    assert_eq!(conn.read_response().body, b"fine");
    // And so do new ones, many times over.
    for _ in 0..50 {
        let mut c = Conn::open(addr);
        c.send(&request_bytes("GET", "/panic", &[], b""));
        assert_eq!(c.read_response().status, 500);
    }
    let mut c = Conn::open(addr);
    c.send(&request_bytes("GET", "/deep", &[], b""));
    assert_eq!(c.read_response().body, b"32");
}
