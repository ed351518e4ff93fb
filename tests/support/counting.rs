//! A global allocator that tells a hook of every allocation and reallocation, for the tests
//! that count what the media path allocates per frame (`tests/alloc.rs`, `tests/alloc_relay.rs`),
//! and the relay's counting window they share. Included by path, not through `support`: only
//! those files install it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Calls `on_allocation` before each allocation and reallocation, then the system allocator.
pub struct Counting {
    pub on_allocation: fn(),
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.on_allocation)();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.on_allocation)();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The relay's window, on a coroutine and on a loop alike (20 ms frames): frames before it
/// opens, frames it holds at least, and chunks of the bot's echo (200 ms each) that must go out
/// to the caller inside it.
pub const RELAY_WARM_UP: u64 = 50;
pub const RELAY_MEASURED: u64 = 150;
pub const RELAY_MIN_OUT_IN_WINDOW: u64 = 10;
