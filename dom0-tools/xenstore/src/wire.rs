//! Xen's store wire protocol (`xen/include/public/io/xs_wire.h`): the
//! header, types, errors and limits are `abi::xen::xs_wire`'s, shared
//! with the guests' client; here is what the server adds with `alloc`
//! (whole messages, error payloads, argument splitting).

use alloc::vec::Vec;

pub use abi::xen::xs_wire::{
    Header, MsgType, XsError, HEADER_SIZE, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX,
    XENSTORE_REL_PATH_MAX,
};

/// One whole message: header then payload. `payload.len()` must fit in
/// [`XENSTORE_PAYLOAD_MAX`].
pub fn encode_message(msg_type: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= XENSTORE_PAYLOAD_MAX);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let header = Header {
        msg_type: msg_type as u32,
        req_id,
        tx_id,
        len,
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// The `XS_ERROR` payload of `e`: its `xsd_errors` string and a NUL.
pub fn error_payload(e: XsError) -> Vec<u8> {
    let mut out = Vec::from(e.as_str().as_bytes());
    out.push(0);
    out
}

/// Splits a payload into its NUL-terminated strings, as xenstored's
/// `get_strings`: bytes after the last NUL are not a string. Returns the
/// strings (without their NULs) and whether the payload ended in a NUL.
pub fn split_strings(payload: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out: Vec<&[u8]> = payload.split(|b| *b == 0).collect();
    // `split` yields the (possibly empty) tail after the last NUL.
    let tail = out.pop().unwrap_or_default();
    (out, tail.is_empty() && !payload.is_empty())
}

/// The single NUL-terminated argument of `payload` (xenstored's `onearg`:
/// exactly one NUL, at the end), or `EINVAL`.
pub fn one_arg(payload: &[u8]) -> Result<&[u8], XsError> {
    match payload.split_last() {
        Some((0, arg)) if !arg.contains(&0) => Ok(arg),
        _ => Err(XsError::Einval),
    }
}
