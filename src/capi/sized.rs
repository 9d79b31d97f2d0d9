//! Structs a caller fills carry their size as their first field, so the
//! ABI can grow: the library reads only the bytes the caller's header
//! declared, and a field added later reads as zero (its default) for a
//! caller compiled before it existed.

use super::result::Failure;

/// A `#[repr(C)]` struct whose first field is `struct_size: usize`.
///
/// # Safety
/// Implementors are `#[repr(C)]`, start with a `usize` size field, and
/// every field is valid when all its bytes are zero (raw pointers, integers,
/// `lively_bool`).
pub(crate) unsafe trait SizedStruct: Copy {
    /// The C name, for messages (`"lively_filter"`).
    const NAME: &'static str;
    /// The size when `struct_size` was introduced (ABI `LIVELY_0.1`): the
    /// smallest a caller can have compiled against. Fields appended later
    /// lie beyond it.
    const MIN_SIZE: usize;
}

/// The size a caller declared in `p`'s first field, checked against what
/// this library reads.
///
/// # Safety
/// `p` is non-NULL and points to at least a `usize`.
unsafe fn declared_size<T: SizedStruct>(p: *const T) -> Result<usize, Failure> {
    // SAFETY: per the function's contract (read unaligned: C may pack).
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    let max = std::mem::size_of::<T>();
    if size < T::MIN_SIZE {
        return Err(Failure::invalid(format!(
            "{}.struct_size: {size}, expected {max} (initialize it with {}_INIT)",
            T::NAME,
            T::NAME.to_ascii_uppercase()
        )));
    }
    Ok(size)
}

/// Copies a caller's struct: the `struct_size` bytes it declared, the rest
/// zero. A size beyond ours means the caller was built against a newer
/// header, asking for fields this library cannot honour.
///
/// # Safety
/// `p` is NULL or points to a struct of at least its declared size.
pub(crate) unsafe fn read_sized<T: SizedStruct>(p: *const T) -> Result<Option<T>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, per the contract.
    let size = unsafe { declared_size(p) }?;
    let max = std::mem::size_of::<T>();
    if size > max {
        return Err(Failure::invalid(format!(
            "{}.struct_size: {size}, but this libos_lively knows {max} bytes: \
             the program was built against a newer os_lively.h; upgrade the library",
            T::NAME
        )));
    }
    // SAFETY: all-zero is valid per `SizedStruct`; `size` bytes are
    // readable per the contract and fit in `T`.
    unsafe {
        let mut v: T = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&raw mut v).cast::<u8>(), size);
        Ok(Some(v))
    }
}

/// Writes `value` into a caller's struct, at most the size it declared;
/// `struct_size` then says how many bytes were written (ours, when the
/// caller's header is newer).
///
/// # Safety
/// `p` is non-NULL and points to a writable struct of its declared size.
pub(crate) unsafe fn write_sized<T: SizedStruct>(p: *mut T, value: T) -> Result<(), Failure> {
    // SAFETY: non-NULL, per the contract.
    let size = unsafe { declared_size(p.cast_const()) }?;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `n` bytes fit in both; the size field is then overwritten.
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const value).cast::<u8>(), p.cast::<u8>(), n);
        p.cast::<usize>().write_unaligned(n);
    }
    Ok(())
}
