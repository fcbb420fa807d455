//! Where a large received byte string is read to: memory the embedding program chooses.
//!
//! A sender writes each large byte string of a message as a WebSocket fragment of its own
//! (`transport/direct.rs`), and the receiver reads that fragment from the socket straight into
//! a buffer asked of the [landing hook](land_with) (`transport/inlet.rs`). A program that has
//! no hook gets a plain heap buffer, never zero-filled. The Python package installs one that
//! lands the bytes in a fresh Python `bytes` object when the reading thread may allocate one,
//! so a 1 MiB argument or answer reaches Python with no copy after the kernel's.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

/// Fragments at least this long are landed through the hook (shorter ones cost less to copy
/// than to ask for); the same as the sender's threshold for writing a byte string on its own.
pub const LAND_FROM: usize = super::shared::GATHER_FROM;

/// A buffer a received byte string is read into, from the [landing hook](land_with).
///
/// # Safety
///
/// [`buffer`](Self::buffer) must return the same `len` bytes (as asked of the hook) each time,
/// owned by `self` and touched by nobody else until [`into_bytes`](Self::into_bytes), which
/// must return exactly them.
///
/// # Example
///
/// ```
/// use std::mem::MaybeUninit;
/// use pulsing::value::{land_with, Bytes, Landing};
///
/// struct Boxed(Box<[MaybeUninit<u8>]>);
///
/// // SAFETY: the same boxed bytes every time, returned whole.
/// unsafe impl Landing for Boxed {
///     fn buffer(&mut self) -> &mut [MaybeUninit<u8>] {
///         &mut self.0
///     }
///     unsafe fn into_bytes(self: Box<Self>) -> Bytes {
///         // SAFETY: the caller wrote every byte.
///         let bytes: Box<[u8]> = unsafe { std::mem::transmute(self.0) };
///         Bytes::from(bytes)
///     }
/// }
///
/// fn land(len: usize) -> Option<Box<dyn Landing>> {
///     Some(Box::new(Boxed(Box::new_uninit_slice(len))))
/// }
/// assert!(land_with(land), "the first hook installed");
/// ```
pub unsafe trait Landing: Send + 'static {
    /// The buffer: as many bytes as the hook was asked for, not yet written.
    fn buffer(&mut self) -> &mut [MaybeUninit<u8>];

    /// The written buffer as the byte string's `Bytes`.
    ///
    /// # Safety
    ///
    /// Every byte of [`buffer`](Self::buffer) has been written.
    unsafe fn into_bytes(self: Box<Self>) -> Bytes;
}

/// The hook: a buffer of `len` bytes for a received byte string, or `None` for the default.
pub type LandFn = fn(len: usize) -> Option<Box<dyn Landing>>;

static HOOK: OnceLock<LandFn> = OnceLock::new();

/// Installs `hook` for every connection of this process, once. Returns whether it was installed
/// (false if a hook already was).
///
/// The hook runs on the thread that reads the socket, in the middle of a read: it must not
/// block for long, and may decline (`None`) on threads where its memory is dear.
///
/// # Errors
///
/// None: a second hook is refused with `false`.
///
/// # Example
///
/// ```
/// use pulsing::value::land_with;
/// // Decline every time: the default (a heap buffer) is used.
/// land_with(|_len| None);
/// ```
pub fn land_with(hook: LandFn) -> bool {
    HOOK.set(hook).is_ok()
}

/// Where a received fragment of `len` bytes is read to: the hook's buffer for a large one it
/// takes, else a heap buffer (uninitialised: the reader writes it all).
pub(crate) fn land(len: usize) -> Landed {
    if len >= LAND_FROM {
        if let Some(landing) = HOOK.get().and_then(|hook| hook(len)) {
            return Landed::Hooked(landing);
        }
    }
    Landed::Heap(BytesMut::with_capacity(len))
}

/// A fragment's buffer while it is read.
pub(crate) enum Landed {
    Heap(BytesMut),
    Hooked(Box<dyn Landing>),
}

impl Landed {
    /// The bytes not yet written, from `at` on.
    pub(crate) fn rest(&mut self, at: usize) -> &mut [MaybeUninit<u8>] {
        match self {
            Landed::Heap(b) => &mut b.spare_capacity_mut()[at..],
            Landed::Hooked(l) => &mut l.buffer()[at..],
        }
    }

    /// The first `at` bytes, written.
    pub(crate) fn written(&mut self, at: usize) -> &mut [u8] {
        let head = &mut self.rest(0)[..at];
        // SAFETY: the reader wrote the first `at` bytes before asking for them.
        unsafe { &mut *(head as *mut [MaybeUninit<u8>] as *mut [u8]) }
    }

    /// The buffer, all `len` bytes written.
    ///
    /// # Safety
    ///
    /// Every byte of the buffer has been written.
    pub(crate) unsafe fn into_bytes(self, len: usize) -> Bytes {
        match self {
            Landed::Heap(mut b) => {
                // SAFETY: the caller wrote all `len` bytes (within the capacity asked for).
                unsafe { b.set_len(len) };
                b.freeze()
            }
            // SAFETY: the caller wrote the whole buffer.
            Landed::Hooked(l) => unsafe { l.into_bytes() },
        }
    }
}

impl std::fmt::Debug for Landed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Landed::Heap(_) => "Landed::Heap",
            Landed::Hooked(_) => "Landed::Hooked",
        })
    }
}
