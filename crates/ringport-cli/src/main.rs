//! The `ringport` command (skeleton; being written).
#![forbid(unsafe_code)]

fn main() {}
