//! The epoll emulation backend (not written yet).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::Builder;
use crate::completion::OpId;
use crate::handle::HandleInner;
use crate::shared::Shared;

#[derive(Default)]
pub(crate) struct Scratch {}

#[derive(Default)]
pub(crate) struct FdState {}

pub(crate) struct Driver {}

impl Driver {
    pub(crate) fn new(_b: &Builder) -> io::Result<Driver> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the epoll backend is not built yet",
        ))
    }
}

impl super::Backend for Driver {
    fn register(&self, _sh: &Shared, _handle: &Arc<HandleInner>) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&self, _handle: &HandleInner) {}
    fn start(&self, _sh: &Shared, _id: OpId, _defer: bool) {}
    fn cancel(&self, _sh: &Shared, _id: OpId) {}
    fn cancel_handle(&self, _sh: &Shared, _handle: &HandleInner) {}
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn poll(&self, _sh: &Shared, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn wake(&self) {}
}
