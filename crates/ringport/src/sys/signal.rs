//! Signals as a readable descriptor: the signals chosen are blocked (so
//! they are not delivered the usual way) and a `signalfd` reports them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::epoll::syscall;

/// Bytes of one signal record a `signalfd` read gives
/// (`struct signalfd_siginfo`).
pub(crate) const SIGINFO_LEN: usize = std::mem::size_of::<libc::signalfd_siginfo>();

/// Blocks `signals` in the calling thread (threads it starts later inherit
/// the mask) and returns a close-on-exec `signalfd` reporting them.
pub(crate) fn signal_fd(signals: &[i32]) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is a valid value; `sigemptyset` then
    // initialises it as the C library wants.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &sig in signals {
        // SAFETY: as above; an invalid number fails with EINVAL.
        syscall!(unsafe { libc::sigaddset(&mut set, sig) })?;
    }
    // SAFETY: reads the set during the call; no old mask is asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: reads the set during the call.
    let fd = syscall!(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The signal number in a signal record (`ssi_signo`, its first field).
pub(crate) fn signal_number(record: &[u8]) -> Option<i32> {
    if record.len() < SIGINFO_LEN {
        return None;
    }
    Some(u32::from_ne_bytes(record[..4].try_into().ok()?) as i32)
}

/// The sending process in a signal record (`ssi_pid`, at byte 12).
pub(crate) fn signal_sender(record: &[u8]) -> Option<u32> {
    if record.len() < SIGINFO_LEN {
        return None;
    }
    Some(u32::from_ne_bytes(record[12..16].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_record_reads_back() {
        let mut rec = vec![0u8; SIGINFO_LEN];
        rec[..4].copy_from_slice(&(libc::SIGTERM as u32).to_ne_bytes());
        rec[12..16].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(signal_number(&rec), Some(libc::SIGTERM));
        assert_eq!(signal_sender(&rec), Some(77));
        assert_eq!(signal_number(&rec[..10]), None, "a short read is no record");
    }

    #[test]
    fn the_sender_is_where_the_kernel_puts_it() {
        // SAFETY: an all-zero signalfd_siginfo is a valid value.
        let info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let base = (&raw const info) as usize;
        assert_eq!((&raw const info.ssi_pid) as usize - base, 12);
        assert_eq!((&raw const info.ssi_signo) as usize - base, 0);
    }
}
