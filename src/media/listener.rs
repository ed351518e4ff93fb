//! The dedicated media listener on `MEDIA_PORT`: tungstenite's own handshake on any path, then
//! the same socket and session as the main port's `/media`.

use super::session::{media_socket, MediaStream};
use super::{authorize, Grant};
use crate::app::App;
use crate::http::OpenConnection;
use crate::tls::ServerTls;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};
use tungstenite::HandshakeError;

/// Time allowed for a client to complete the WebSocket handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts media sockets until the process ends, one coroutine each.
// tungstenite's handshake callback must return its `ErrorResponse`, a whole HTTP response.
#[allow(clippy::result_large_err)]
pub fn start(
    listener: may::net::TcpListener,
    tls: Option<Arc<ServerTls>>,
    app: Arc<App>,
) -> may::coroutine::JoinHandle<()> {
    may::go!(move || loop {
        let (stream, peer) = match crate::http::accept(&listener, tls.as_deref()) {
            Ok(accepted) => accepted,
            Err(e) => {
                crate::warn!("media.accept_failed", error = e);
                may::coroutine::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let app = app.clone();
        let builder =
            may::coroutine::Builder::new().stack_size(crate::http::CONNECTION_STACK_WORDS);
        let spawned = may::go!(builder, move || {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
            let mut grant: Option<Grant> = None;
            let check = |request: &WsRequest, response: WsResponse| {
                let query = request.uri().query().unwrap_or("");
                let authorization = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                match authorize(&app, query, authorization) {
                    Ok(g) => {
                        grant = Some(g);
                        Ok(response)
                    }
                    Err(why) => {
                        crate::warn!("media.refused", peer = peer, detail = why);
                        let body = serde_json::json!({"error": "unauthorized", "detail": why});
                        let mut refusal = ErrorResponse::new(Some(body.to_string()));
                        *refusal.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
                        Err(refusal)
                    }
                }
            };
            let mut attempt = tungstenite::accept_hdr(MediaStream::Direct(stream), check);
            // `WouldBlock` is the socket's timeout, or part of a TLS record: go on until the
            // handshake's deadline.
            while let Err(HandshakeError::Interrupted(midway)) = attempt {
                if Instant::now() >= deadline {
                    attempt = Err(HandshakeError::Failure(tungstenite::Error::Io(
                        std::io::ErrorKind::TimedOut.into(),
                    )));
                    break;
                }
                attempt = midway.handshake();
            }
            // The error holds the callback (and its borrow of `grant`): keep only its text.
            let accepted = attempt.map_err(|e| e.to_string());
            match (accepted, grant) {
                // tungstenite's socket is left for ours once the 101 is out. Bytes it read past
                // the request would go with it, but a client sends frames only after the 101
                // (RFC 6455 §4.1), and there are none before it.
                (Ok(ws), Some(grant)) => {
                    let ws = media_socket(ws.into_inner(), Vec::new());
                    super::serve(&app, ws, grant, OpenConnection::uncounted())
                }
                (Err(e), _) => crate::info!("media.handshake_failed", peer = peer, error = e),
                (Ok(_), None) => {}
            }
        });
        if let Err(e) = spawned {
            crate::error!("media.spawn_failed", error = e);
        }
    })
}
