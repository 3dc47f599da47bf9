//! Handing freed heap back to the kernel.
//!
//! glibc's allocator keeps freed memory for reuse and returns only the top
//! of the heap by itself. After a burst that held much and freed it in
//! scattered pieces (a storm of arrivals in a big room, each member's
//! batch of presence written at the tick), the holes stay resident: the
//! server's size would be that of its busiest moment forever.
//! `malloc_trim` gives every whole free page back (`madvise`), which is
//! what an allocator with background purging (jemalloc) does by itself.

unsafe extern "C" {
    /// glibc: release free memory from the heap; returns 1 if any was.
    fn malloc_trim(pad: usize) -> i32;
}

/// Gives every whole free page of the heap back to the kernel. It costs a
/// walk over the free lists, so it is called after bursts, not per turn.
pub fn give_back() {
    // SAFETY: malloc_trim takes no pointer and only reorganises the
    // allocator's own free lists under its own lock; with a pad of 0 it
    // keeps nothing extra at the top of the heap. Any thread may call it.
    unsafe {
        malloc_trim(0);
    }
}
