//! The process's descriptor table, grown once at start so that no call waits for it to grow.
//!
//! Owns: nothing but that one step; the server (`lib.rs`), `test-bot` and `simulate` call it
//! with what they expect to open.

use crate::warn;

/// Grows the process's descriptor table at start to hold `descriptors`.
///
/// Linux doubles the table when a new descriptor does not fit, and in a process with threads
/// each doubling waits for an RCU grace period (`expand_fdtable` calls `synchronize_rcu`):
/// milliseconds, in whichever thread opened that descriptor. Here that is a may worker
/// accepting a connection, connecting a relayed bot or duplicating a socket for a pump or a
/// media loop, and every coroutine queued on the worker waits with it. Measured: the relay's
/// connect to its bot took 6–16 ms instead of 0.3 ms for the one call in a hundred whose pump
/// crossed 256 descriptors, and the pacer then kept that call that much behind for its whole
/// length (`bench/relay-latency`'s p99). The table never shrinks, so one descriptor at the
/// top, opened and closed before any call, makes every later doubling unnecessary. It costs
/// kernel memory (8 bytes a slot, 256 KiB for 32,768), not resident memory.
pub fn reserve_table(descriptors: u64) -> Result<(), nix::Error> {
    use nix::fcntl::{fcntl, FcntlArg};
    let top = i32::try_from(descriptors.saturating_sub(1)).unwrap_or(i32::MAX);
    let fd = fcntl(std::io::stderr(), FcntlArg::F_DUPFD_CLOEXEC(top))?;
    nix::unistd::close(fd)
}

/// For the tools that open many sockets (`simulate`, `test-bot`): raises the open-file limit to
/// its hard limit and grows the table for `descriptors`, so that a load's own stalls do not show
/// up as the server's latency.
pub fn prepare(descriptors: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            if let Err(e) = reserve_table(descriptors.min(soft)) {
                warn!(
                    "descriptors.table_not_grown",
                    slots = descriptors,
                    error = e
                );
            }
        }
        Err(e) => warn!("descriptors.limit_unknown", error = e),
    }
}
