//! Error numbers, `xen/include/public/errno.h`.
//!
//! Hypercalls return `-value` in RAX on error. The values are Xen's, which
//! on x86 equal Linux's. Grant-table operations report per-entry
//! `GNTST_*` codes instead (see [`super::grant_table`]).

/// A Xen error number (`XEN_E*`), as the positive value the header defines.
#[allow(clippy::upper_case_acronyms)] // Xen's names, so they grep across both trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// No such process.
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Arg list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file number.
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left on device.
    ENOSPC = 28,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Math argument out of domain of func.
    EDOM = 33,
    /// Math result not representable.
    ERANGE = 34,
    /// Resource deadlock would occur.
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// No record locks available.
    ENOLCK = 37,
    /// Function not implemented.
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired.
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// Interrupted system call should be restarted.
    ERESTART = 85,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Message too large..
    EMSGSIZE = 90,
    /// Operation not supported on transport endpoint.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Transport endpoint is already connected.
    EISCONN = 106,
    /// Transport endpoint is not connected.
    ENOTCONN = 107,
    /// Connection timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

/// `XEN_EWOULDBLOCK`: Operation would block.  Aliases EAGAIN (alias of [`Errno::EAGAIN`]).
pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
/// `XEN_EDEADLOCK`: Resource deadlock would occur. Aliases EDEADLK (alias of [`Errno::EDEADLK`]).
pub const EDEADLOCK: Errno = Errno::EDEADLK;

impl Errno {
    /// Every error number, in ascending order.
    pub const ALL: [Errno; 49] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::ENXIO,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EXDEV,
        Errno::ENODEV,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::ENFILE,
        Errno::EMFILE,
        Errno::ENOSPC,
        Errno::EROFS,
        Errno::EMLINK,
        Errno::EDOM,
        Errno::ERANGE,
        Errno::EDEADLK,
        Errno::ENAMETOOLONG,
        Errno::ENOLCK,
        Errno::ENOSYS,
        Errno::ENOTEMPTY,
        Errno::ENODATA,
        Errno::ETIME,
        Errno::EBADMSG,
        Errno::EOVERFLOW,
        Errno::EILSEQ,
        Errno::ERESTART,
        Errno::ENOTSOCK,
        Errno::EMSGSIZE,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
        Errno::EADDRNOTAVAIL,
        Errno::ENOBUFS,
        Errno::EISCONN,
        Errno::ENOTCONN,
        Errno::ETIMEDOUT,
        Errno::ECONNREFUSED,
    ];

    /// The positive value from errno.h.
    pub const fn value(self) -> i32 {
        self as i32
    }

    /// The hypercall return value for this error: `-value`, as RAX holds it.
    pub const fn to_return(self) -> i64 {
        -(self as i64)
    }

    /// The error a negative hypercall return value stands for, if any.
    pub fn from_return(ret: i64) -> Option<Errno> {
        Self::ALL.iter().copied().find(|e| e.to_return() == ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_errno_h() {
        assert_eq!(Errno::EPERM.value(), 1);
        assert_eq!(Errno::EAGAIN.value(), 11);
        assert_eq!(EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::EACCES.value(), 13);
        assert_eq!(Errno::EINVAL.value(), 22);
        assert_eq!(Errno::ENOSYS.value(), 38);
        assert_eq!(Errno::ETIME.value(), 62);
        assert_eq!(Errno::EOPNOTSUPP.value(), 95);
        assert_eq!(Errno::ECONNREFUSED.value(), 111);
    }

    #[test]
    fn return_value_round_trips() {
        for e in Errno::ALL {
            assert!(e.to_return() < 0);
            assert_eq!(Errno::from_return(e.to_return()), Some(e));
        }
        assert_eq!(Errno::from_return(0), None);
        assert_eq!(Errno::from_return(-1000), None);
        assert!(Errno::ALL.windows(2).all(|w| w[0].value() < w[1].value()));
    }
}
