//! A few OS threads that make the blocking Exotel API requests, so that no coroutine ever blocks
//! in the kernel (docs/ARCHITECTURE.md §2). Each job carries the account it is for (the
//! environment's, or a phone's from `/phones`), so one pool serves every line.
//!
//! Two ways in: [`ApiPool::connect_call`] waits for the answer with a timeout (`POST /call`, on
//! a coroutine), and a job that no thread has started by the time its caller gives up is never
//! sent: the caller has already answered, and a late `Calls/connect` would ring a customer
//! nobody is waiting for. [`ApiPool::send`] hands the answer to a function instead (the
//! campaign dialer, which wrote the attempt down first and must hear how every one went).

use super::client::{ConnectCall, ExotelClient, ExotelError, PlacedCall};
use may::sync::{mpmc, mpsc};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const QUEUED: u8 = 0;
const SENDING: u8 = 1;
const ABANDONED: u8 = 2;

/// Where a job's answer goes.
enum Reply {
    /// A caller waiting with a timeout; `state` says whether it still waits.
    Waiting {
        state: Arc<AtomicU8>,
        answer: mpsc::Sender<Result<PlacedCall, ExotelError>>,
    },
    /// A function run on the pool thread with the answer.
    Then(Box<dyn FnOnce(Result<PlacedCall, ExotelError>) + Send>),
}

struct Job {
    client: Arc<ExotelClient>,
    call: ConnectCall,
    reply: Reply,
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
    jobs: mpmc::Sender<Job>,
}

impl ApiPool {
    /// Starts `threads` API threads (at least one).
    pub fn start(threads: usize) -> ApiPool {
        let (jobs, queue) = mpmc::channel::<Job>();
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("exotel-api-{n}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        run(job);
                    }
                })
                .expect("cannot start an Exotel API thread");
        }
        ApiPool { jobs }
    }

    /// Places a call through `client`'s account on a pool thread and waits up to the client's
    /// timeout for the answer. Callable from a coroutine (it parks the coroutine, not the
    /// worker thread).
    pub fn connect_call(
        &self,
        client: &Arc<ExotelClient>,
        call: ConnectCall,
    ) -> Result<PlacedCall, PoolError> {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (answer, answered) = mpsc::channel();
        let job = Job {
            client: client.clone(),
            call,
            reply: Reply::Waiting {
                state: state.clone(),
                answer,
            },
        };
        if self.jobs.send(job).is_err() {
            return Err(PoolError::NotSent);
        }
        match answered.recv_timeout(client.timeout()) {
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

    /// Places a call through `client`'s account and runs `then` with Exotel's answer on the
    /// pool thread. Never waits; `then` always runs (with `TimedOut` when the request got no
    /// answer), unless the pool has stopped, which answers `NotSent` here.
    pub fn send(
        &self,
        client: &Arc<ExotelClient>,
        call: ConnectCall,
        then: impl FnOnce(Result<PlacedCall, ExotelError>) + Send + 'static,
    ) -> Result<(), PoolError> {
        self.jobs
            .send(Job {
                client: client.clone(),
                call,
                reply: Reply::Then(Box::new(then)),
            })
            .map_err(|_| PoolError::NotSent)
    }
}

fn run(job: Job) {
    match job.reply {
        Reply::Waiting { state, answer } => {
            let claimed = state
                .compare_exchange(QUEUED, SENDING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if claimed {
                let _ = answer.send(job.client.connect_call(&job.call));
            }
        }
        Reply::Then(then) => then(job.client.connect_call(&job.call)),
    }
}
