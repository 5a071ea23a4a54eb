//! The IOCP server framework (placeholder; being written).
#![forbid(unsafe_code)]
