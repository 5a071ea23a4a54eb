//! Reads and writes without an offset (`Read`, `Write`) on pipes, FIFOs and
//! eventfds, on both backends.

mod common;

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd, OwnedFd};

use common::{next, port};
use ringport::{op, BackendKind, OpKind};

both_backends!(
    read_and_write_round_trip_through_a_pipe,
    read_waits_for_data_then_sees_the_end,
    read_on_a_pipe_is_not_espipe,
    write_to_a_pipe_without_reader_is_epipe,
    reads_and_writes_keep_their_order,
    read_and_write_a_fifo,
    read_an_eventfd_counter,
    read_cancelled_returns_the_buffer,
);

/// A pipe: its read end and its write end (close-on-exec).
fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, filled by the call.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two new descriptors that nothing else owns.
    let owned = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((owned.0.into(), owned.1.into()))
}

fn read_and_write_round_trip_through_a_pipe(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (r, w) = pipe().unwrap();
    let (r, w) = (port.associate(r, 1).unwrap(), port.associate(w, 2).unwrap());
    port.submit(op::Write::new(&w, b"across".to_vec()).user(5))
        .unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.key(), c.user()), (OpKind::Write, 2, 5));
    assert_eq!(c.result().unwrap(), 6);
    assert_eq!(c.take_buf::<Vec<u8>>(), Some(b"across".to_vec()));
    port.submit(op::Read::new(&r, Vec::with_capacity(64)))
        .unwrap();
    let c = next(&port);
    assert_eq!(
        (c.kind(), c.result().unwrap(), c.data()),
        (OpKind::Read, 6, &b"across"[..])
    );
}

fn read_waits_for_data_then_sees_the_end(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (r, mut w) = pipe().unwrap();
    let r = port.associate(r, 1).unwrap();
    port.submit(op::Read::new(&r, Vec::with_capacity(64)))
        .unwrap();
    assert!(
        port.get(Some(std::time::Duration::from_millis(20)))
            .is_err(),
        "nothing yet"
    );
    w.write_all(b"late").unwrap();
    assert_eq!(next(&port).data(), b"late");
    drop(w);
    port.submit(op::Read::new(&r, Vec::with_capacity(64)))
        .unwrap();
    assert_eq!(next(&port).result().unwrap(), 0, "every writer closed");
}

/// The report: `read_at` on a pipe failed with ESPIPE on epoll;
/// `Read` takes no offset.
fn read_on_a_pipe_is_not_espipe(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (r, mut w) = pipe().unwrap();
    let r = port.associate(r, 1).unwrap();
    w.write_all(b"x").unwrap();
    port.submit(op::Read::new(&r, Vec::with_capacity(8)))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.result().unwrap(), 1, "{c:?}");
}

fn write_to_a_pipe_without_reader_is_epipe(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (r, w) = pipe().unwrap();
    drop(r);
    let w = port.associate(w, 1).unwrap();
    port.submit(op::Write::new(&w, b"lost".to_vec())).unwrap();
    let mut c = next(&port);
    assert_eq!(c.error_code(), Some(libc::EPIPE), "{c:?}");
    assert_eq!(c.take_buf::<Vec<u8>>(), Some(b"lost".to_vec()));
}

fn reads_and_writes_keep_their_order(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let (mut r, w) = pipe().unwrap();
    let w = port.associate(w, 1).unwrap();
    // More than the pipe holds (64 KiB), so some writes wait for room.
    const N: usize = 40;
    let chunks: Vec<Vec<u8>> = (0..N).map(|i| common::pattern(i as u64, 4096)).collect();
    for c in &chunks {
        port.submit(op::Write::new(&w, c.clone())).unwrap();
    }
    let reader = std::thread::spawn(move || {
        let mut all = vec![0u8; N * 4096];
        r.read_exact(&mut all).unwrap();
        all
    });
    for _ in 0..N {
        assert_eq!(next(&port).result().unwrap(), 4096);
    }
    assert_eq!(reader.join().unwrap(), chunks.concat());
}

fn read_and_write_a_fifo(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let path = std::env::temp_dir().join(format!("ringport-fifo-{}-{kind}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; no memory is retained.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Read-write opens do not wait for the other end.
    let rw = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    let (r, w) = (
        port.associate(rw(), 1).unwrap(),
        port.associate(rw(), 2).unwrap(),
    );
    port.submit(op::Write::new(&w, b"fifo".to_vec())).unwrap();
    assert_eq!(next(&port).result().unwrap(), 4);
    port.submit(op::Read::new(&r, Vec::with_capacity(16)))
        .unwrap();
    assert_eq!(next(&port).data(), b"fifo");
    std::fs::remove_file(&path).unwrap();
}

fn read_an_eventfd_counter(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    // SAFETY: no pointers; the new descriptor is owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` was just created and nothing else owns it.
    let efd = port
        .associate(unsafe { OwnedFd::from_raw_fd(fd) }, 1)
        .unwrap();
    port.submit(op::Read::new(&efd, Vec::with_capacity(8)))
        .unwrap();
    for add in [3u64, 4] {
        port.submit(op::Write::new(&efd, add.to_ne_bytes().to_vec()))
            .unwrap();
    }
    let mut total = 0;
    let mut writes = 0;
    while writes < 2 || total == 0 {
        let c = next(&port);
        match c.kind() {
            OpKind::Write => {
                assert_eq!(c.result().unwrap(), 8);
                writes += 1;
            }
            OpKind::Read => {
                assert_eq!(c.result().unwrap(), 8);
                total += u64::from_ne_bytes(c.data().try_into().unwrap());
            }
            other => panic!("{other}"),
        }
    }
    if total < 7 {
        // The read ran between the two writes: read the rest.
        port.submit(op::Read::new(&efd, Vec::with_capacity(8)))
            .unwrap();
        total += u64::from_ne_bytes(next(&port).data().try_into().unwrap());
    }
    assert_eq!(total, 7);
}

fn read_cancelled_returns_the_buffer(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (r, _w) = pipe().unwrap();
    let r = port.associate(r, 1).unwrap();
    let id = port
        .submit(op::Read::new(&r, Vec::with_capacity(16)))
        .unwrap();
    port.cancel(id).unwrap();
    let mut c = next(&port);
    assert!(c.is_cancelled(), "{c:?}");
    assert_eq!(c.take_buf::<Vec<u8>>().map(|b| b.capacity()), Some(16));
}
