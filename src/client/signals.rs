//! Signals as events of the parent's poll loop.
//!
//! SIGINT, SIGTERM and SIGHUP are blocked before the fork and read from a
//! signalfd registered with mio, so they arrive between two events like any
//! other input and the loop can end the session properly (tell the server,
//! reap the child, restore the terminal) instead of dying wherever it was.
//! The child inherits the blocked mask and must undo it ([`unblock`]).

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals the parent handles itself.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Blocks the handled signals and returns the mask that was in force, for
/// the child to restore.
pub fn block() -> nix::Result<SigSet> {
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled()), Some(&mut old))?;
    Ok(old)
}

/// A non-blocking descriptor that becomes readable when a handled signal is
/// pending.
pub fn signal_fd() -> nix::Result<SignalFd> {
    SignalFd::with_flags(&handled(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// In the child: restores the mask from before [`block`]. With
/// `ignore_interrupt`, SIGINT is ignored: the interactive child reads Ctrl-C
/// as a key, and the rare SIGINT that slips in between two prompts must not
/// end the input.
pub fn unblock(old: &SigSet, ignore_interrupt: bool) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
    let handler = if ignore_interrupt {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: installs no Rust handler, only the kernel's ignore or default
    // action, so no code runs in signal context.
    let _ = unsafe { signal(Signal::SIGINT, handler) };
}
