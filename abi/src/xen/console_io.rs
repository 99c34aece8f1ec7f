//! `HYPERVISOR_console_io` commands, `xen/include/public/xen.h`.
//!
//! `console_io(cmd, count, buffer)`: arg1 = command, arg2 = byte count,
//! arg3 = guest virtual address of the bytes.

/// `CONSOLEIO_write`: write `count` bytes to the hypervisor console.
/// Returns 0 (Xen writes all bytes) or a negative errno.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read`: read up to `count` bytes of console input (privileged
/// domain only); returns the number of bytes read.
pub const CONSOLEIO_READ: u32 = 1;
