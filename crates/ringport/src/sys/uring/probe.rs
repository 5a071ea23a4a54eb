//! Can io_uring be used here, with every operation the port needs?

use std::io;

use io_uring::{opcode, IoUring, Probe};

/// The opcodes the backend itself uses (wake-ups, cancellation); the ops
/// name theirs.
const OWN: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "NOP"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// The running kernel's (major, minor) version; (0, 0) if unknown.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Whether a multishot receive can be capped at a total byte count
/// (`sqe->optlen`, Linux 6.17). Older kernels ignore the field, so this
/// cannot be probed by trying: a receive with a budget is then lowered to
/// one single-shot receive at a time.
pub(super) fn recv_total_cap() -> bool {
    kernel_version() >= (6, 17)
}

/// Multishot receive and cancel-by-descriptor need Linux 6.0.
pub(super) fn kernel_version_ok() -> io::Result<()> {
    let (major, minor) = kernel_version();
    if (major, minor) >= (6, 0) || major == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("Linux {major}.{minor} lacks multishot receive (needs 6.0)"),
        ))
    }
}

/// Sets up the ring with the cheap-notification flags, falling back to plain
/// flags on kernels that refuse them. Single-thread mode adds
/// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1) and has no fallback.
pub(super) fn build_ring(entries: u32, single_thread: bool) -> io::Result<IoUring> {
    let cq = entries.saturating_mul(8);
    let mut builder = IoUring::builder();
    builder
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_clamp()
        .setup_cqsize(cq);
    if single_thread {
        // The owner thread enables the ring when it first polls.
        builder
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled();
        return builder.build(entries).map_err(explain);
    }
    let tuned = builder.build(entries);
    let ring = match tuned {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_clamp()
            .setup_cqsize(cq)
            .build(entries)
            .map_err(explain)?,
        Err(e) => return Err(explain(e)),
    };
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks EXT_ARG or NODROP (needs Linux 5.11+)",
        ));
    }
    Ok(ring)
}

/// Fails unless the kernel supports every opcode the backend and the ops
/// (`ops`) use.
/// Whether the kernel has opcode `code` (for optional features).
pub(super) fn supports(ring: &IoUring, code: u8) -> bool {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(code)
}

pub(super) fn check_opcodes(ring: &IoUring, ops: &[(u8, &str)]) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring probe failed: {e}")))?;
    let missing: Vec<&str> = OWN
        .iter()
        .chain(ops)
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks opcodes: {}", missing.join(", ")),
        ))
    }
}

/// Says why `io_uring_setup` failed, keeping the OS error code.
fn explain(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring",
        Some(libc::EPERM) => {
            "io_uring is forbidden here (kernel.io_uring_disabled, or a seccomp filter)"
        }
        Some(libc::EACCES) => "io_uring is restricted to a group this process is not in",
        Some(libc::ENOMEM) => "not enough locked memory for the ring (RLIMIT_MEMLOCK)",
        _ => "io_uring_setup failed",
    };
    io::Error::new(e.kind(), format!("{why}: {e}"))
}
