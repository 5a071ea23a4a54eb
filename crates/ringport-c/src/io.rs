//! Posting operations on associated descriptors, cancelling them and
//! closing descriptors: the safe half of `WSARecv`, `WSASend`, `AcceptEx`,
//! `ConnectEx`, `ReadFile`, `WriteFile`, `CancelIoEx` and `closesocket`
//! (the FFI layer turns the caller's pointers into buffers first).
//!
//! Every operation carries the address of its OVERLAPPED as its user value
//! and is tracked on its descriptor ([`Tracker`](crate::registry::Tracker)) until it is dequeued.

use std::os::fd::RawFd;

use ringport::{Handle, OpId, Operation};

use crate::error::{self, code};
use crate::registry::{self, Finish, Tracked};

/// Why an operation could not be posted.
#[derive(Debug, PartialEq, Eq)]
pub enum PostError {
    /// The descriptor is not associated with a port.
    NotAssociated,
    /// The port refused it: the Winsock code.
    Refused(u32),
}

/// Posts the operation `make` builds on `fd`'s handle, tracked under
/// `overlapped` (the op's user value; `make` must set it).
///
/// # Errors
/// [`PostError::NotAssociated`], or the port's refusal (closed handle or
/// port, a buffer without room).
pub fn submit<O: Operation>(
    fd: RawFd,
    overlapped: usize,
    finish: Option<Finish>,
    make: impl FnOnce(&Handle) -> O,
) -> Result<OpId, PostError> {
    registry::with_fd(fd, |a| {
        // The tracker stays locked until the op is recorded, so that its
        // completion, dequeued at once by another thread, finds it.
        let mut ops = a.tracker().ops.lock();
        let id = a
            .port
            .submit(make(&a.handle))
            .map_err(|e| PostError::Refused(error::wsa_from_errno(error::errno_of(&e))))?;
        ops.push(Tracked {
            id,
            overlapped,
            finish,
        });
        Ok(id)
    })
    .unwrap_or(Err(PostError::NotAssociated))
}

/// Cancels `fd`'s operations posted with `overlapped` (all of them if
/// `None`): `CancelIoEx`. Each still completes, as cancelled.
///
/// # Errors
/// `ERROR_INVALID_HANDLE` when `fd` is not associated; `ERROR_NOT_FOUND`
/// when an OVERLAPPED was given and no operation in flight has it.
pub fn cancel(fd: RawFd, overlapped: Option<usize>) -> Result<(), u32> {
    registry::with_fd(fd, |a| {
        let ops = a.tracker().ops.lock();
        let mut found = false;
        for t in ops.iter() {
            if overlapped.is_none_or(|o| o == t.overlapped) {
                // NotFound: it completed meanwhile; its completion says so.
                let _ = a.port.cancel(t.id);
                found = true;
            }
        }
        if found || overlapped.is_none() {
            Ok(())
        } else {
            Err(code::ERROR_NOT_FOUND)
        }
    })
    .unwrap_or(Err(code::ERROR_INVALID_HANDLE))
}

/// What `closesocket` / `CloseHandle` found a descriptor to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Closing {
    /// Associated: its operations are cancelled, and the descriptor closes
    /// after the last of them completed.
    Associated,
    /// The accept socket of an AcceptEx in flight: the accept is cancelled
    /// and its completion closes the descriptor.
    AcceptTarget,
    /// Neither: the caller closes it now.
    Plain,
}

/// Lets go of `fd` for `closesocket` / `CloseHandle`.
pub fn close(fd: RawFd) -> Closing {
    if let Some(assoc) = registry::dissociate(fd) {
        // Dropping the last Handle cancels its operations; the port closes
        // the descriptor once they have all completed.
        drop(assoc);
        return Closing::Associated;
    }
    if registry::close_accept_target(fd) {
        return Closing::AcceptTarget;
    }
    Closing::Plain
}
