//! Path checks and resolution, as xenstored's `canonicalize`: allowed
//! characters, no `//`, no trailing `/`, relative paths under the
//! caller's home `/local/domain/<domid>`, and the length limits.

use alloc::format;
use alloc::string::String;

use crate::wire::{XsError, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};
use crate::DomId;

/// The special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A domain's home, `/local/domain/<domid>` (`XS_GET_DOMAIN_PATH`).
pub fn domain_path(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// xenstored's `valid_chars`: letters, digits and `-/_@`. No `.`, so a
/// relative path cannot climb out of its home with `..`.
fn valid_chars(path: &[u8]) -> bool {
    path.iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-/_@".contains(c))
}

/// Resolves `raw` (one NUL-free argument) for a caller in `domid`:
/// relative paths go under the caller's home; `@` paths are accepted only
/// when `allow_special` (watches, permissions). `EINVAL` on bad
/// characters, empty path, `//`, trailing `/`, an absolute path longer
/// than [`XENSTORE_ABS_PATH_MAX`], or (for unprivileged callers) a part
/// below `/local/domain/<n>/` of [`XENSTORE_REL_PATH_MAX`] or more, as
/// xenstored's `path-max` quota.
pub fn canonicalize(
    raw: &[u8],
    domid: DomId,
    privileged: bool,
    allow_special: bool,
) -> Result<String, XsError> {
    if raw.is_empty() || !valid_chars(raw) || (raw[0] == b'@' && !allow_special) {
        return Err(XsError::Einval);
    }
    // valid_chars admitted ASCII only.
    let text = core::str::from_utf8(raw).map_err(|_| XsError::Einval)?;
    let name = match raw[0] {
        b'/' | b'@' => String::from(text),
        _ => format!("{}/{text}", domain_path(domid)),
    };
    let bad_shape = (name.ends_with('/') && name != "/") || name.contains("//");
    if bad_shape || name.len() > XENSTORE_ABS_PATH_MAX {
        return Err(XsError::Einval);
    }
    if !privileged && name.len() - local_prefix_len(&name) >= XENSTORE_REL_PATH_MAX {
        return Err(XsError::Einval);
    }
    Ok(name)
}

/// Length of a leading `/local/domain/<n>/` (up to five digits, as
/// xenstored's `sscanf("%5u")`), else 0.
fn local_prefix_len(name: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest.bytes().take(5).take_while(u8::is_ascii_digit).count();
    if digits > 0 && rest.as_bytes().get(digits) == Some(&b'/') {
        PREFIX.len() + digits + 1
    } else {
        0
    }
}

/// The parent of an absolute path (`/` for top-level nodes and for `/`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of an absolute path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `child` under `dir`.
pub fn join(dir: &str, child: &str) -> String {
    if dir == "/" {
        format!("/{child}")
    } else {
        format!("{dir}/{child}")
    }
}

/// Whether `path` is `dir` or below it (xenstored's `is_child` without a
/// depth limit).
pub fn is_under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Parses a decimal domid as xenstored's `parse_domid` (at most 65535,
/// digits only), or `EINVAL`.
pub fn parse_domid(raw: &[u8]) -> Result<u32, XsError> {
    let text = core::str::from_utf8(raw).map_err(|_| XsError::Einval)?;
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Einval);
    }
    text.parse::<u32>()
        .ok()
        .filter(|d| *d <= 0xFFFF)
        .ok_or(XsError::Einval)
}
