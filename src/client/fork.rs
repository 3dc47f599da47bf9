//! The one place the client forks, and the one place a process ends without
//! running destructors.
//!
//! Forking is only sound while the process has a single thread: a lock held
//! by another thread at the moment of the fork would stay locked forever in
//! the child. [`fork_child`] checks that contract instead of trusting it, and
//! its child runs a function returning `!`, so the child can never fall back
//! into the parent's code (and, say, answer the parent's socket).

use std::io;
use std::os::fd::RawFd;

use nix::libc;
use nix::unistd::{ForkResult, Pid, fork};

/// Forks. The parent gets the child's PID; the child runs `child(data)`,
/// which never returns. `data` is dropped in the parent as soon as the fork
/// is done, which is how the child's ends of pipes get closed in the parent
/// at once. (A plain function and its data rather than a closure: a closure
/// bound `FnOnce() -> !` is not stable Rust.)
///
/// Fails, without forking, when the process has more than one thread.
pub fn fork_child<T>(data: T, child: fn(T) -> !) -> io::Result<Pid> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork with {threads} threads running"
        )));
    }
    // SAFETY: the process has exactly one thread (checked just above), so no
    // other thread can hold a lock (allocator, stdio) that the child would
    // inherit locked; the child runs `child`, which cannot return into the
    // caller's code.
    match unsafe { fork() }? {
        ForkResult::Child => child(data),
        ForkResult::Parent { child: pid } => Ok(pid),
    }
}

/// Closes descriptors the child inherited but must not keep (the socket, the
/// parent's ends of the pipes), so that the parent's close is the real one.
pub fn close_inherited(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: called only in a forked child, which never returns into the
        // code that owns these descriptors, so nothing uses or closes them
        // after this.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Ends the process now, without unwinding, running destructors or atexit
/// handlers: in a forked child those belong to the parent (its buffered
/// stdout, its terminal guard) and must not run twice.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and cannot fail; it only ends the
    // process.
    unsafe { libc::_exit(status) }
}
