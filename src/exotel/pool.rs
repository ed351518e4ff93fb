//! A few OS threads that make the blocking Exotel API requests, so that no coroutine ever blocks
//! in the kernel (docs/ARCHITECTURE.md §2). A coroutine hands a job over a `may` channel and waits for the
//! answer with a timeout.
//!
//! A job that no thread has started by the time its caller gives up is never sent: the caller has
//! already answered, and a late `Calls/connect` would ring a customer nobody is waiting for.

use super::client::{ConnectCall, ExotelClient, ExotelError, PlacedCall};
use may::sync::{mpmc, mpsc};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

const QUEUED: u8 = 0;
const SENDING: u8 = 1;
const ABANDONED: u8 = 2;

struct Job {
    call: ConnectCall,
    state: Arc<AtomicU8>,
    reply: mpsc::Sender<Result<PlacedCall, ExotelError>>,
}

/// Why `/call` got no placed call.
#[derive(Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Exotel answered, or could not be reached, and said no.
    Exotel(ExotelError),
    /// Every API thread was busy until the deadline; nothing was sent to Exotel.
    NotSent,
    /// The request was sent and no answer came in time: the call may have been placed.
    NoAnswer,
}

/// The pool. Cloning shares it.
#[derive(Clone)]
pub struct ApiPool {
    client: Arc<ExotelClient>,
    jobs: mpmc::Sender<Job>,
}

impl ApiPool {
    pub fn start(client: ExotelClient, threads: usize) -> ApiPool {
        let client = Arc::new(client);
        let (jobs, queue) = mpmc::channel::<Job>();
        for n in 0..threads.max(1) {
            let (client, queue) = (client.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("exotel-api-{n}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        let claimed = job
                            .state
                            .compare_exchange(QUEUED, SENDING, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok();
                        if claimed {
                            let _ = job.reply.send(client.connect_call(&job.call));
                        }
                    }
                })
                .expect("cannot start an Exotel API thread");
        }
        ApiPool { client, jobs }
    }

    /// Places a call on a pool thread and waits up to the client's timeout for the answer.
    /// Callable from a coroutine (it parks the coroutine, not the worker thread).
    pub fn connect_call(&self, call: ConnectCall) -> Result<PlacedCall, PoolError> {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, answer) = mpsc::channel();
        let job = Job {
            call,
            state: state.clone(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return Err(PoolError::NotSent);
        }
        match answer.recv_timeout(self.client.timeout()) {
            Ok(result) => result.map_err(|e| match e {
                ExotelError::TimedOut => PoolError::NoAnswer,
                other => PoolError::Exotel(other),
            }),
            Err(_) => {
                // Too late: make sure no thread starts it now.
                match state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Err(PoolError::NotSent),
                    Err(_) => Err(PoolError::NoAnswer),
                }
            }
        }
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }
}
