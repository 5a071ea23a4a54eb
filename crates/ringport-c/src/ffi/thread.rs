//! The non-I/O calls the seeds make: threads, events, waits, critical
//! sections, `Sleep`, `GetSystemInfo`, `GlobalAlloc`/`GlobalFree` and the
//! last error. A wait that blocks frees the caller's running slot on the
//! port it dequeues from, as Windows does.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{fail, guard, SendPtr, BOOL, DWORD, FALSE, TRUE};
use crate::error::{self, code};
use crate::registry::{self, Object};
use crate::sync::{self, CriticalSection, WaitKind, WaitResult, Waitable};

/// `GetLastError`: the calling thread's last error.
///
/// ```c
/// if (!GetQueuedCompletionStatus(port, &n, &key, &ov, 100) && GetLastError() == WAIT_TIMEOUT) idle();
/// ```
#[no_mangle]
pub extern "C" fn GetLastError() -> DWORD {
    error::last()
}

/// `SetLastError`.
///
/// ```c
/// SetLastError(ERROR_SUCCESS);
/// ```
#[no_mangle]
pub extern "C" fn SetLastError(dwErrCode: DWORD) {
    error::set(dwErrCode);
}

/// A thread's start function (`LPTHREAD_START_ROUTINE`).
pub type ThreadStart = unsafe extern "C" fn(*mut c_void) -> DWORD;

static THREAD_IDS: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static THREAD_ID: std::cell::Cell<DWORD> = const { std::cell::Cell::new(0) };
}

fn this_thread_id() -> DWORD {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(THREAD_IDS.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// `GetCurrentThreadId`.
///
/// ```c
/// printf("worker %lu\n", (unsigned long)GetCurrentThreadId());
/// ```
#[no_mangle]
pub extern "C" fn GetCurrentThreadId() -> DWORD {
    this_thread_id()
}

/// `CreateThread`: runs `lpStartAddress(lpParameter)` on a new thread; the
/// handle is signalled when it returns (`WaitForSingleObject`). The stack
/// size is honoured when given; `CREATE_SUSPENDED` is not supported. NULL
/// on failure.
///
/// ```c
/// HANDLE t = CreateThread(NULL, 0, worker, port, 0, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn CreateThread(
    _lpThreadAttributes: *mut c_void,
    dwStackSize: usize,
    lpStartAddress: Option<ThreadStart>,
    lpParameter: *mut c_void,
    dwCreationFlags: DWORD,
    lpThreadId: *mut DWORD,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let Some(start) = lpStartAddress else {
            return fail(code::ERROR_INVALID_PARAMETER, std::ptr::null_mut());
        };
        if dwCreationFlags & 0x4 != 0 {
            // CREATE_SUSPENDED
            return fail(code::ERROR_NOT_SUPPORTED, std::ptr::null_mut());
        }
        let done = Arc::new(Waitable::new(WaitKind::Thread, false));
        let id = THREAD_IDS.fetch_add(1, Ordering::Relaxed);
        let param = SendPtr(lpParameter);
        let signal = done.clone();
        let mut builder = std::thread::Builder::new();
        if dwStackSize > 0 {
            builder = builder.stack_size(dwStackSize.max(64 * 1024));
        }
        let spawned = builder.spawn(move || {
            THREAD_ID.with(|t| t.set(id));
            let param = param;
            // SAFETY: CreateThread's contract: the caller's start function,
            // called with the parameter it gave.
            let code = unsafe { start(param.0) };
            signal.signal(Some(code));
        });
        if spawned.is_err() {
            return fail(code::ERROR_NOT_ENOUGH_MEMORY, std::ptr::null_mut());
        }
        // SAFETY: NULL or the caller's out-parameter.
        if let Some(out) = unsafe { lpThreadId.as_mut() } {
            *out = id;
        }
        registry::insert(Object::Waitable(done)) as *mut c_void
    })
}

/// `GetExitCodeThread`: `STILL_ACTIVE` (259) while the thread runs.
///
/// ```c
/// DWORD code; GetExitCodeThread(t, &code);
/// ```
#[no_mangle]
pub unsafe extern "C" fn GetExitCodeThread(hThread: *mut c_void, lpExitCode: *mut DWORD) -> BOOL {
    guard(FALSE, || match registry::object(hThread as usize) {
        Some(Object::Waitable(w)) if w.kind() == WaitKind::Thread => {
            // SAFETY: NULL or the caller's out-parameter.
            match unsafe { lpExitCode.as_mut() } {
                Some(out) => {
                    *out = w.exit_code();
                    TRUE
                }
                None => fail(code::ERROR_INVALID_PARAMETER, FALSE),
            }
        }
        _ => fail(code::ERROR_INVALID_HANDLE, FALSE),
    })
}

/// `CreateEventA` (and `CreateEventW`): a manual- or auto-reset event.
/// Names are not supported (an unnamed event is made). NULL on failure.
///
/// ```c
/// HANDLE stop = CreateEvent(NULL, TRUE, FALSE, NULL);
/// ```
#[no_mangle]
pub extern "C" fn CreateEventA(
    _lpEventAttributes: *mut c_void,
    bManualReset: BOOL,
    bInitialState: BOOL,
    _lpName: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let kind = if bManualReset != FALSE {
            WaitKind::ManualEvent
        } else {
            WaitKind::AutoEvent
        };
        let event = Arc::new(Waitable::new(kind, bInitialState != FALSE));
        registry::insert(Object::Waitable(event)) as *mut c_void
    })
}

/// `CreateEventW`: as [`CreateEventA`].
///
/// ```c
/// HANDLE e = CreateEventW(NULL, FALSE, FALSE, NULL);
/// ```
#[no_mangle]
pub extern "C" fn CreateEventW(
    lpEventAttributes: *mut c_void,
    bManualReset: BOOL,
    bInitialState: BOOL,
    lpName: *const c_void,
) -> *mut c_void {
    CreateEventA(lpEventAttributes, bManualReset, bInitialState, lpName)
}

/// The event a handle names.
fn event(h: *mut c_void) -> Option<Arc<Waitable>> {
    match registry::object(h as usize) {
        Some(Object::Waitable(w)) if w.kind() != WaitKind::Thread => Some(w),
        _ => None,
    }
}

/// `SetEvent`.
///
/// ```c
/// SetEvent(stop);
/// ```
#[no_mangle]
pub extern "C" fn SetEvent(hEvent: *mut c_void) -> BOOL {
    guard(FALSE, || match event(hEvent) {
        Some(e) => {
            e.signal(None);
            TRUE
        }
        None => fail(code::ERROR_INVALID_HANDLE, FALSE),
    })
}

/// `ResetEvent`.
///
/// ```c
/// ResetEvent(stop);
/// ```
#[no_mangle]
pub extern "C" fn ResetEvent(hEvent: *mut c_void) -> BOOL {
    guard(FALSE, || match event(hEvent) {
        Some(e) => {
            e.reset();
            TRUE
        }
        None => fail(code::ERROR_INVALID_HANDLE, FALSE),
    })
}

const WAIT_OBJECT_0: DWORD = 0;
const WAIT_FAILED: DWORD = 0xFFFF_FFFF;

/// Waits on handles: `WAIT_OBJECT_0 + i`, `WAIT_TIMEOUT`, or `WAIT_FAILED`.
fn wait_on(handles: &[usize], all: bool, ms: DWORD) -> DWORD {
    let mut objects = Vec::with_capacity(handles.len());
    for h in handles {
        match registry::object(*h) {
            Some(Object::Waitable(w)) => objects.push(w),
            _ => return fail(code::ERROR_INVALID_HANDLE, WAIT_FAILED),
        }
    }
    let refs: Vec<&Waitable> = objects.iter().map(|w| &**w).collect();
    match sync::wait(&refs, all, super::port::timeout_of(ms)) {
        WaitResult::Signalled(i) => WAIT_OBJECT_0 + i as DWORD,
        WaitResult::TimedOut => code::WAIT_TIMEOUT,
    }
}

/// `WaitForSingleObject` on a thread (until it exits) or an event:
/// `WAIT_OBJECT_0`, `WAIT_TIMEOUT`, or `WAIT_FAILED` with
/// `ERROR_INVALID_HANDLE`. While it blocks, the caller's running slot on
/// its port is free for another worker.
///
/// ```c
/// WaitForSingleObject(thread, INFINITE);
/// ```
#[no_mangle]
pub extern "C" fn WaitForSingleObject(hHandle: *mut c_void, dwMilliseconds: DWORD) -> DWORD {
    guard(WAIT_FAILED, || {
        wait_on(&[hHandle as usize], false, dwMilliseconds)
    })
}

/// `WaitForMultipleObjects` on threads and events (at most 64, as on
/// Windows).
///
/// ```c
/// WaitForMultipleObjects(n, workers, TRUE, INFINITE);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WaitForMultipleObjects(
    nCount: DWORD,
    lpHandles: *const *mut c_void,
    bWaitAll: BOOL,
    dwMilliseconds: DWORD,
) -> DWORD {
    guard(WAIT_FAILED, || {
        if lpHandles.is_null() || nCount == 0 || nCount > 64 {
            return fail(code::ERROR_INVALID_PARAMETER, WAIT_FAILED);
        }
        // SAFETY: the caller's array of `nCount` handles.
        let handles = unsafe { std::slice::from_raw_parts(lpHandles, nCount as usize) };
        let handles: Vec<usize> = handles.iter().map(|h| *h as usize).collect();
        wait_on(&handles, bWaitAll != FALSE, dwMilliseconds)
    })
}

/// `Sleep`: the caller's running slot is free while it sleeps.
///
/// ```c
/// Sleep(10);
/// ```
#[no_mangle]
pub extern "C" fn Sleep(dwMilliseconds: DWORD) {
    guard((), || sync::sleep(dwMilliseconds));
}

/// `CRITICAL_SECTION`, Win64 layout (40 bytes); the lock itself is
/// allocated by `InitializeCriticalSection` and pointed at by `DebugInfo`.
#[repr(C)]
pub struct CRITICAL_SECTION {
    /// The lock (a `Box` made by `InitializeCriticalSection`).
    pub DebugInfo: *mut c_void,
    /// Unused.
    pub LockCount: i32,
    /// Unused.
    pub RecursionCount: i32,
    /// Unused.
    pub OwningThread: *mut c_void,
    /// Unused.
    pub LockSemaphore: *mut c_void,
    /// Unused.
    pub SpinCount: usize,
}

/// `InitializeCriticalSection`.
///
/// ```c
/// CRITICAL_SECTION cs; InitializeCriticalSection(&cs);
/// ```
#[no_mangle]
pub unsafe extern "C" fn InitializeCriticalSection(lpCriticalSection: *mut CRITICAL_SECTION) {
    guard((), || {
        // SAFETY: NULL or the caller's CRITICAL_SECTION.
        let Some(cs) = (unsafe { lpCriticalSection.as_mut() }) else {
            return fail(code::ERROR_INVALID_PARAMETER, ());
        };
        cs.DebugInfo = Box::into_raw(Box::<CriticalSection>::default()).cast();
        cs.LockCount = -1;
        cs.RecursionCount = 0;
        cs.OwningThread = std::ptr::null_mut();
        cs.LockSemaphore = std::ptr::null_mut();
        cs.SpinCount = 0;
    })
}

/// `InitializeCriticalSectionAndSpinCount`: the spin count is not used.
///
/// ```c
/// InitializeCriticalSectionAndSpinCount(&cs, 4000);
/// ```
#[no_mangle]
pub unsafe extern "C" fn InitializeCriticalSectionAndSpinCount(
    lpCriticalSection: *mut CRITICAL_SECTION,
    _dwSpinCount: DWORD,
) -> BOOL {
    if lpCriticalSection.is_null() {
        return fail(code::ERROR_INVALID_PARAMETER, FALSE);
    }
    // SAFETY: the caller's CRITICAL_SECTION, non-NULL.
    unsafe { InitializeCriticalSection(lpCriticalSection) };
    TRUE
}

/// The lock of an initialised critical section.
///
/// # Safety
/// `cs` is NULL or a CRITICAL_SECTION; if initialised, its lock lives until
/// `DeleteCriticalSection`.
unsafe fn lock_of<'a>(cs: *mut CRITICAL_SECTION) -> Option<&'a CriticalSection> {
    // SAFETY: per the caller; DebugInfo is NULL or our boxed lock.
    unsafe {
        cs.as_ref()
            .and_then(|cs| cs.DebugInfo.cast::<CriticalSection>().as_ref())
    }
}

/// `EnterCriticalSection` (recursive). If another thread holds it, the
/// wait frees the caller's running slot on its port.
///
/// ```c
/// EnterCriticalSection(&cs); /* ... */ LeaveCriticalSection(&cs);
/// ```
#[no_mangle]
pub unsafe extern "C" fn EnterCriticalSection(lpCriticalSection: *mut CRITICAL_SECTION) {
    guard((), || {
        // SAFETY: the caller's CRITICAL_SECTION.
        match unsafe { lock_of(lpCriticalSection) } {
            Some(l) => l.enter(),
            None => fail(code::ERROR_INVALID_PARAMETER, ()),
        }
    })
}

/// `TryEnterCriticalSection`.
///
/// ```c
/// if (TryEnterCriticalSection(&cs)) { /* ... */ LeaveCriticalSection(&cs); }
/// ```
#[no_mangle]
pub unsafe extern "C" fn TryEnterCriticalSection(lpCriticalSection: *mut CRITICAL_SECTION) -> BOOL {
    guard(FALSE, || {
        // SAFETY: the caller's CRITICAL_SECTION.
        match unsafe { lock_of(lpCriticalSection) } {
            Some(l) => BOOL::from(l.try_enter()),
            None => fail(code::ERROR_INVALID_PARAMETER, FALSE),
        }
    })
}

/// `LeaveCriticalSection` (ignored if the caller does not hold it).
///
/// ```c
/// LeaveCriticalSection(&cs);
/// ```
#[no_mangle]
pub unsafe extern "C" fn LeaveCriticalSection(lpCriticalSection: *mut CRITICAL_SECTION) {
    guard((), || {
        // SAFETY: the caller's CRITICAL_SECTION.
        match unsafe { lock_of(lpCriticalSection) } {
            Some(l) => {
                if !l.leave() {
                    error::set(code::ERROR_INVALID_PARAMETER);
                }
            }
            None => fail(code::ERROR_INVALID_PARAMETER, ()),
        }
    })
}

/// `DeleteCriticalSection`: frees its lock (nobody may hold it).
///
/// ```c
/// DeleteCriticalSection(&cs);
/// ```
#[no_mangle]
pub unsafe extern "C" fn DeleteCriticalSection(lpCriticalSection: *mut CRITICAL_SECTION) {
    guard((), || {
        // SAFETY: NULL or the caller's CRITICAL_SECTION.
        let Some(cs) = (unsafe { lpCriticalSection.as_mut() }) else {
            return;
        };
        let lock = std::mem::replace(&mut cs.DebugInfo, std::ptr::null_mut());
        if !lock.is_null() {
            // SAFETY: made by Box::into_raw in InitializeCriticalSection and
            // taken out of the section just now, so freed once.
            drop(unsafe { Box::from_raw(lock.cast::<CriticalSection>()) });
        }
    })
}

/// Win32 `SYSTEM_INFO`, Win64 layout.
#[repr(C)]
pub struct SYSTEM_INFO {
    /// Processor architecture (9: AMD64, 12: ARM64) and a reserved word.
    pub wProcessorArchitecture: u16,
    /// Reserved.
    pub wReserved: u16,
    /// The page size.
    pub dwPageSize: DWORD,
    /// Lowest application address.
    pub lpMinimumApplicationAddress: *mut c_void,
    /// Highest application address.
    pub lpMaximumApplicationAddress: *mut c_void,
    /// One bit per processor.
    pub dwActiveProcessorMask: usize,
    /// CPUs this process may run on.
    pub dwNumberOfProcessors: DWORD,
    /// Obsolete.
    pub dwProcessorType: DWORD,
    /// Allocation granularity.
    pub dwAllocationGranularity: DWORD,
    /// Processor level.
    pub wProcessorLevel: u16,
    /// Processor revision.
    pub wProcessorRevision: u16,
}

/// `GetSystemInfo`: `dwNumberOfProcessors` is the number of CPUs this
/// process may run on.
///
/// ```c
/// SYSTEM_INFO si; GetSystemInfo(&si);
/// for (DWORD i = 0; i < si.dwNumberOfProcessors * 2; i++) CreateThread(...);
/// ```
#[no_mangle]
pub unsafe extern "C" fn GetSystemInfo(lpSystemInfo: *mut SYSTEM_INFO) {
    guard((), || {
        // SAFETY: NULL or the caller's SYSTEM_INFO.
        let Some(si) = (unsafe { lpSystemInfo.as_mut() }) else {
            return;
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        si.wProcessorArchitecture = if cfg!(target_arch = "aarch64") { 12 } else { 9 };
        si.wReserved = 0;
        si.dwPageSize = 4096;
        si.lpMinimumApplicationAddress = 0x10000 as *mut c_void;
        si.lpMaximumApplicationAddress = 0x7FFF_FFFE_FFFF_usize as *mut c_void;
        si.dwActiveProcessorMask = if cpus >= 64 {
            usize::MAX
        } else {
            (1 << cpus) - 1
        };
        si.dwNumberOfProcessors = cpus as DWORD;
        si.dwProcessorType = 8664;
        si.dwAllocationGranularity = 65536;
        si.wProcessorLevel = 6;
        si.wProcessorRevision = 0;
    })
}

/// `GlobalAlloc`: zeroed memory from the C heap (every flag gives
/// fixed, zeroed memory). NULL on failure.
///
/// ```c
/// PER_HANDLE_DATA *h = (PER_HANDLE_DATA *)GlobalAlloc(GPTR, sizeof *h);
/// ```
#[no_mangle]
pub extern "C" fn GlobalAlloc(_uFlags: u32, dwBytes: usize) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: calloc takes sizes only.
        let p = unsafe { libc::calloc(1, dwBytes.max(1)) };
        if p.is_null() {
            return fail(code::ERROR_NOT_ENOUGH_MEMORY, p);
        }
        p
    })
}

/// `GlobalFree`: frees what `GlobalAlloc` returned; NULL.
///
/// ```c
/// GlobalFree(h);
/// ```
#[no_mangle]
pub unsafe extern "C" fn GlobalFree(hMem: *mut c_void) -> *mut c_void {
    // SAFETY: GlobalFree's contract: NULL or a block from GlobalAlloc
    // (calloc), freed once.
    unsafe { libc::free(hMem) };
    std::ptr::null_mut()
}
