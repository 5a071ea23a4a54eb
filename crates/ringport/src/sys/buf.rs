//! Buffers an operation owns while the kernel uses them: [`IoBuf`] for what
//! a send reads, [`IoBufMut`] for what a receive writes. `Vec<u8>` is both;
//! `bytes::Bytes`, `Arc<[u8]>`, `Box<[u8]>` and `&'static [u8]` can be sent
//! (a broadcast shares one buffer among many sends instead of copying it per
//! client); [`RawBuf`] is caller-owned memory (for a C caller's buffers).
//! Whatever its type, the buffer comes back in the operation's completion
//! ([`Completion::take_buf`](crate::Completion::take_buf)), whatever the
//! result.

use std::any::{Any, TypeId};
use std::sync::Arc;

/// Memory a send may hand to the kernel: `len()` initialised bytes at
/// `as_ptr()`.
///
/// ```
/// use ringport::IoBuf;
/// let shared: std::sync::Arc<[u8]> = b"hello".as_slice().into();
/// assert_eq!(IoBuf::as_slice(&shared), b"hello");
/// ```
///
/// # Safety
/// `as_ptr()..as_ptr() + len()` must be initialised memory owned by (or
/// borrowed for `'static` by) the value, which stays valid and unchanged while
/// the value is not used mutably or dropped, including when the value is
/// moved: the kernel reads it while the operation owns the value.
pub unsafe trait IoBuf: Send + 'static {
    /// The first byte.
    fn as_ptr(&self) -> *const u8;
    /// How many bytes are initialised (what a send sends).
    fn len(&self) -> usize;
    /// Whether there is nothing to send.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The initialised bytes.
    fn as_slice(&self) -> &[u8] {
        // SAFETY: per the trait's contract `len()` bytes at `as_ptr()` are
        // initialised and live as long as `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}

/// Memory a receive may hand to the kernel: it writes into the spare
/// capacity `len()..capacity()`, and the port then extends `len()` by the
/// bytes written.
///
/// ```
/// use ringport::IoBufMut;
/// let buf = Vec::<u8>::with_capacity(64);
/// assert_eq!(IoBufMut::capacity(&buf), 64);
/// ```
///
/// # Safety
/// As [`IoBuf`], for `as_mut_ptr()..as_mut_ptr() + capacity()`, writable;
/// `set_len` must make exactly the given number of bytes the initialised
/// ones.
pub unsafe trait IoBufMut: IoBuf {
    /// The first byte, writable.
    fn as_mut_ptr(&mut self) -> *mut u8;
    /// How many bytes fit.
    fn capacity(&self) -> usize;
    /// Sets the number of initialised bytes.
    ///
    /// # Safety
    /// `len <= capacity()`, and the first `len` bytes are initialised.
    unsafe fn set_len(&mut self, len: usize);
}

// SAFETY: a Vec's heap block does not move when the Vec does; `len` bytes
// of it are initialised.
unsafe impl IoBuf for Vec<u8> {
    fn as_ptr(&self) -> *const u8 {
        Vec::as_ptr(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

// SAFETY: as above; the spare capacity is writable and `set_len` is Vec's.
unsafe impl IoBufMut for Vec<u8> {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        Vec::as_mut_ptr(self)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    unsafe fn set_len(&mut self, len: usize) {
        // SAFETY: the caller guarantees `len <= capacity` and initialised.
        unsafe { Vec::set_len(self, len) }
    }
}

// SAFETY: immutable shared heap memory, kept alive by the value.
unsafe impl IoBuf for bytes::Bytes {
    fn as_ptr(&self) -> *const u8 {
        <[u8]>::as_ptr(self)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: as above.
unsafe impl IoBuf for Arc<[u8]> {
    fn as_ptr(&self) -> *const u8 {
        <[u8]>::as_ptr(self)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: a boxed slice's heap block does not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn as_ptr(&self) -> *const u8 {
        <[u8]>::as_ptr(self)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: static memory never moves or goes away.
unsafe impl IoBuf for &'static [u8] {
    fn as_ptr(&self) -> *const u8 {
        <[u8]>::as_ptr(self)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// Memory owned by the caller rather than by Rust: a pointer, the bytes
/// initialised and the capacity. What a C caller's `WSABUF` becomes.
///
/// ```
/// let mut mem = [0u8; 16];
/// // SAFETY: `mem` outlives every use of `raw` in this example.
/// let raw = unsafe { ringport::RawBuf::new(mem.as_mut_ptr(), 0, mem.len()) };
/// assert_eq!(ringport::IoBufMut::capacity(&raw), 16);
/// ```
#[derive(Debug)]
pub struct RawBuf {
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

impl RawBuf {
    /// A buffer over `cap` bytes at `ptr`, the first `len` initialised.
    ///
    /// # Safety
    /// `ptr..ptr + cap` must be valid for reads and writes, the first `len`
    /// bytes initialised, and stay so — not freed, moved or used by anyone
    /// else — until the operation that owns this `RawBuf` has completed and
    /// its completion was dequeued (Win32's contract for overlapped I/O).
    pub unsafe fn new(ptr: *mut u8, len: usize, cap: usize) -> RawBuf {
        RawBuf {
            ptr,
            len: len.min(cap),
            cap,
        }
    }

    /// The pointer it was made with.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

// SAFETY: the memory belongs to the caller, who promised (`RawBuf::new`)
// that nobody else touches it while the operation owns it.
unsafe impl Send for RawBuf {}

// SAFETY: `RawBuf::new`'s contract is this trait's.
unsafe impl IoBuf for RawBuf {
    fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn len(&self) -> usize {
        self.len
    }
}

// SAFETY: as above, writable per `RawBuf::new`.
unsafe impl IoBufMut for RawBuf {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    unsafe fn set_len(&mut self, len: usize) {
        self.len = len;
    }
}

/// An operation's buffer, handed back in its completion: whatever type it
/// was posted with. Reads as bytes, can be sent again as it is
/// ([`IoBuf`]), and turns back into its own type with
/// [`downcast`](Self::downcast).
///
/// ```
/// use ringport::{op, Buffer, CompletionPort, Outcome};
/// # use std::io::Write;
/// # let port = CompletionPort::new(1)?;
/// # let l = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let mut peer = std::net::TcpStream::connect(l.local_addr()?)?;
/// # let conn = port.associate(l.accept()?.0, 1)?;
/// # peer.write_all(b"abc")?;
/// port.submit(op::Recv::new(&conn, Vec::with_capacity(8)))?;
/// if let Outcome::Received(3, buf) = port.get(None)?.take_outcome() {
///     assert_eq!(&buf[..], b"abc");
///     let v: Vec<u8> = buf.downcast().unwrap();
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Buffer(pub(crate) Buf);

impl Buffer {
    /// The buffer as the type it was posted with, or itself back if that is
    /// not `B`.
    pub fn downcast<B: 'static>(self) -> Result<B, Buffer> {
        self.0.take().map_err(Buffer)
    }

    /// The bytes as a `Vec`: the buffer itself if it is one, else a copy.
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Buf::Vec(v) => v,
            other => other.bytes().to_vec(),
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.0.len())
            .finish()
    }
}

// SAFETY: the bytes are those of the buffer inside, whose own `IoBuf`
// contract (heap memory that does not move with the value) carries over.
unsafe impl IoBuf for Buffer {
    fn as_ptr(&self) -> *const u8 {
        self.0.bytes().as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// An operation's buffer, whatever its type: a `Vec` as is (the common
/// case, no allocation), anything else boxed.
pub(crate) enum Buf {
    Vec(Vec<u8>),
    Other(Box<dyn ErasedBuf>),
}

/// What the port needs of a buffer it does not know the type of.
pub(crate) trait ErasedBuf: Send {
    fn ptr(&self) -> *const u8;
    fn len(&self) -> usize;
    /// Writable memory and capacity, for a receive (`None` for send-only
    /// types).
    fn spare(&mut self) -> Option<(*mut u8, usize)>;
    /// Marks `n` more bytes initialised.
    ///
    /// # Safety
    /// The `n` bytes after `len()` were written.
    unsafe fn grow(&mut self, n: usize);
    /// The type of the buffer in the box.
    fn inner_type(&self) -> TypeId;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// The memory a vectored operation hands the kernel, appended to `out`
    /// as (pointer, length): the spare capacity (`spare`: a receive) or the
    /// initialised bytes (a send) of each part, in order.
    fn slices(&mut self, spare: bool, out: &mut Vec<(*mut u8, usize)>) {
        if spare {
            out.extend(self.spare());
        } else {
            out.push((self.ptr().cast_mut(), self.len()));
        }
    }
    /// Initialised bytes over all parts.
    fn total(&self) -> usize {
        self.len()
    }
}

/// Several buffers of one type that a vectored operation owns as one
/// (`WSASend` / `WSARecv` with several `WSABUF`s). As a single buffer it
/// reads as empty; the completion hands back the `Vec<B>`.
struct Many<B>(Vec<B>);

impl<B: IoBuf> ErasedBuf for Many<B> {
    fn ptr(&self) -> *const u8 {
        std::ptr::NonNull::dangling().as_ptr()
    }
    fn len(&self) -> usize {
        0
    }
    fn spare(&mut self) -> Option<(*mut u8, usize)> {
        None
    }
    unsafe fn grow(&mut self, _n: usize) {}
    fn inner_type(&self) -> TypeId {
        TypeId::of::<Vec<B>>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.0)
    }
    fn slices(&mut self, _spare: bool, out: &mut Vec<(*mut u8, usize)>) {
        out.extend(self.0.iter().map(|b| (b.as_ptr().cast_mut(), b.len())));
    }
    fn total(&self) -> usize {
        self.0.iter().map(IoBuf::len).sum()
    }
}

/// As [`Many`], to receive into: the bytes a receive got fill the parts'
/// spare capacities in order.
struct ManyMut<B>(Vec<B>);

impl<B: IoBufMut> ErasedBuf for ManyMut<B> {
    fn ptr(&self) -> *const u8 {
        std::ptr::NonNull::dangling().as_ptr()
    }
    fn len(&self) -> usize {
        0
    }
    fn spare(&mut self) -> Option<(*mut u8, usize)> {
        None
    }
    unsafe fn grow(&mut self, mut n: usize) {
        for b in &mut self.0 {
            let room = b.capacity().saturating_sub(b.len());
            let took = room.min(n);
            let len = b.len() + took;
            // SAFETY: the caller guarantees the kernel wrote `n` bytes
            // across the parts' spare capacities in order (a scatter
            // receive), so the first `took` bytes of this one were written.
            unsafe { b.set_len(len) };
            n -= took;
            if n == 0 {
                break;
            }
        }
    }
    fn inner_type(&self) -> TypeId {
        TypeId::of::<Vec<B>>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.0)
    }
    fn slices(&mut self, spare: bool, out: &mut Vec<(*mut u8, usize)>) {
        for b in &mut self.0 {
            let (len, cap) = (b.len(), b.capacity());
            if spare {
                // SAFETY (of the arithmetic): `len <= capacity`, in the
                // allocation.
                out.push((b.as_mut_ptr().wrapping_add(len), cap.saturating_sub(len)));
            } else {
                out.push((b.as_mut_ptr(), len));
            }
        }
    }
    fn total(&self) -> usize {
        self.0.iter().map(IoBuf::len).sum()
    }
}

/// A send-only buffer type in the box.
struct ReadOnly<B>(B);
/// A receive buffer type in the box.
struct Writable<B>(B);

impl<B: IoBuf> ErasedBuf for ReadOnly<B> {
    fn ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn spare(&mut self) -> Option<(*mut u8, usize)> {
        None
    }
    unsafe fn grow(&mut self, _n: usize) {}
    fn inner_type(&self) -> TypeId {
        TypeId::of::<B>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.0)
    }
}

impl<B: IoBufMut> ErasedBuf for Writable<B> {
    fn ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn spare(&mut self) -> Option<(*mut u8, usize)> {
        let len = self.0.len();
        let cap = self.0.capacity();
        // SAFETY (of the pointer arithmetic): `len <= capacity` by the
        // trait's contract, so the result stays in the allocation.
        Some((
            self.0.as_mut_ptr().wrapping_add(len),
            cap.saturating_sub(len),
        ))
    }
    unsafe fn grow(&mut self, n: usize) {
        let len = (self.0.len() + n).min(self.0.capacity());
        // SAFETY: the caller guarantees the bytes were written.
        unsafe { self.0.set_len(len) }
    }
    fn inner_type(&self) -> TypeId {
        TypeId::of::<B>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.0)
    }
}

/// Moves `b` into a `Vec<u8>` if that is its type.
fn as_vec<B: 'static>(b: B) -> Result<Vec<u8>, B> {
    let mut slot = Some(b);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
        Some(v) => Ok(v.take().unwrap_or_default()),
        None => Err(slot.take().expect("still there")),
    }
}

impl Buf {
    /// A buffer to send from (a buffer handed back by a completion is sent
    /// as the buffer inside it).
    pub(crate) fn read_only<B: IoBuf>(b: B) -> Buf {
        let b = match as_vec(b) {
            Ok(v) => return Buf::Vec(v),
            Err(b) => b,
        };
        let mut slot = Some(b);
        match (&mut slot as &mut dyn Any).downcast_mut::<Option<Buffer>>() {
            Some(inner) => inner.take().expect("just put").0,
            None => Buf::Other(Box::new(ReadOnly(slot.take().expect("still there")))),
        }
    }

    /// A buffer to receive into.
    pub(crate) fn writable<B: IoBufMut>(b: B) -> Buf {
        match as_vec(b) {
            Ok(v) => Buf::Vec(v),
            Err(b) => Buf::Other(Box::new(Writable(b))),
        }
    }

    /// Several buffers to send from as one (a gather send).
    pub(crate) fn many<B: IoBuf>(parts: Vec<B>) -> Buf {
        Buf::Other(Box::new(Many(parts)))
    }

    /// Several buffers to receive into as one (a scatter receive).
    pub(crate) fn many_writable<B: IoBufMut>(parts: Vec<B>) -> Buf {
        Buf::Other(Box::new(ManyMut(parts)))
    }

    /// The memory a vectored operation hands the kernel (see
    /// `ErasedBuf::slices`), appended to `out`.
    pub(crate) fn slices(&mut self, spare: bool, out: &mut Vec<(*mut u8, usize)>) {
        match self {
            Buf::Vec(v) if spare => {
                let room = v.spare_capacity_mut();
                out.push((room.as_mut_ptr().cast(), room.len()));
            }
            Buf::Vec(v) => out.push((v.as_mut_ptr(), v.len())),
            Buf::Other(b) => b.slices(spare, out),
        }
    }

    /// Initialised bytes, over all parts of several buffers.
    pub(crate) fn total(&self) -> usize {
        match self {
            Buf::Vec(v) => v.len(),
            Buf::Other(b) => b.total(),
        }
    }

    /// The initialised bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Buf::Vec(v) => v,
            Buf::Other(b) => {
                // SAFETY: `IoBuf`'s contract: `len` initialised bytes at
                // `ptr`, alive while `b` is borrowed.
                unsafe { std::slice::from_raw_parts(b.ptr(), b.len()) }
            }
        }
    }

    /// Initialised bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::Vec(v) => v.len(),
            Buf::Other(b) => b.len(),
        }
    }

    /// The spare capacity a receive writes into: pointer and length.
    /// `None` for a send-only buffer.
    pub(crate) fn spare(&mut self) -> Option<(*mut u8, usize)> {
        match self {
            Buf::Vec(v) => {
                let spare = v.spare_capacity_mut();
                Some((spare.as_mut_ptr().cast(), spare.len()))
            }
            Buf::Other(b) => b.spare(),
        }
    }

    /// Whether a receive has room to write into.
    pub(crate) fn has_spare(&mut self) -> bool {
        self.spare().is_some_and(|(_, n)| n > 0)
    }

    /// Marks `n` more bytes initialised, after the kernel wrote them into
    /// the spare capacity.
    ///
    /// # Safety
    /// The `n` bytes at the start of the spare capacity were written.
    pub(crate) unsafe fn grow(&mut self, n: usize) {
        match self {
            Buf::Vec(v) => {
                let len = (v.len() + n).min(v.capacity());
                // SAFETY: per the caller, those bytes were written.
                unsafe { v.set_len(len) }
            }
            // SAFETY: as above.
            Buf::Other(b) => unsafe { b.grow(n) },
        }
    }

    /// The buffer as the type it was given as, if that is `B`.
    pub(crate) fn take<B: 'static>(self) -> Result<B, Buf> {
        match self {
            Buf::Vec(v) => {
                let mut slot = Some(v);
                match (&mut slot as &mut dyn Any).downcast_mut::<Option<B>>() {
                    Some(b) => Ok(b.take().expect("just put")),
                    None => Err(Buf::Vec(slot.take().expect("still there"))),
                }
            }
            Buf::Other(b) if b.inner_type() == TypeId::of::<B>() => {
                Ok(*b.into_any().downcast::<B>().expect("type checked"))
            }
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_receive_fills_the_parts_in_order() {
        let mut bufs = Buf::many_writable(vec![Vec::with_capacity(2), Vec::with_capacity(8)]);
        let mut room = Vec::new();
        bufs.slices(true, &mut room);
        assert_eq!(room.iter().map(|r| r.1).collect::<Vec<_>>(), [2, 8]);
        for (i, (ptr, len)) in room.iter().enumerate() {
            // SAFETY: the parts' spare capacities, written as a kernel
            // would before the result is committed.
            unsafe { std::ptr::write_bytes(*ptr, b'a' + i as u8, *len) };
        }
        // SAFETY: 5 bytes were written across the spare capacities above.
        unsafe { bufs.grow(5) };
        assert_eq!(
            (bufs.total(), bufs.len()),
            (5, 0),
            "one buffer reads as empty"
        );
        let parts: Vec<Vec<u8>> = bufs.take().ok().unwrap();
        assert_eq!(parts, [b"aa".to_vec(), b"bbb".to_vec()]);
    }

    #[test]
    fn a_gather_send_hands_every_part_to_the_kernel() {
        let mut bufs = Buf::many(vec![bytes::Bytes::from_static(b"ab"), bytes::Bytes::new()]);
        let mut parts = Vec::new();
        bufs.slices(false, &mut parts);
        assert_eq!(parts.iter().map(|r| r.1).collect::<Vec<_>>(), [2, 0]);
        assert_eq!(bufs.total(), 2);
        assert!(bufs.take::<Vec<bytes::Bytes>>().is_ok());
    }
}
