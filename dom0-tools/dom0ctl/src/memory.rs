//! `mem-set` and `mem-max`, as xl has them (`tools/xl/xl_mem.c`): a size
//! in xl's notation, sent as KiB; the agent checks it against the
//! domain's `memory/static-max` and `memory/target` (protocol 2.6).

use std::io::Write;

use mgmt::{DomainRef, Mib, Reply, Request};

use crate::cli::MemArgs;
use crate::client::{unexpected, Client};
use crate::commands::print;
use crate::error::CliError;

/// xl's `parse_mem_size_kb`: a whole number with at most one unit
/// letter, `b`, `k`, `m`, `g` or `t` (either case), MiB without one; the
/// size in KiB (bytes round down).
pub fn parse_mem_size_kib(text: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid memory size: {text} (e.g. 64m, 512k, 1g; MiB without a unit)");
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "b" => return Ok(n >> 10),
        "k" => 0,
        "" | "m" => 10,
        "g" => 20,
        "t" => 30,
        _ => return Err(invalid()),
    };
    n.checked_mul(1 << shift).ok_or_else(invalid)
}

/// `mem-set DOMAIN SIZE`: the domain's balloon target.
pub fn mem_set(client: &mut Client, args: MemArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    let request = Request::MemSet {
        domain: domain.clone(),
        target_kib: args.size,
    };
    match client.call(request)? {
        Reply::Done => print(
            out,
            &format!("Set the memory target of {domain} to {}.\n", Mib(args.size)),
        ),
        other => Err(unexpected(&other)),
    }
}

/// `mem-max DOMAIN SIZE`: the most memory the domain may have.
pub fn mem_max(client: &mut Client, args: MemArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    let request = Request::MemMax {
        domain: domain.clone(),
        max_kib: args.size,
    };
    match client.call(request)? {
        Reply::Done => print(
            out,
            &format!(
                "Set the maximum memory of {domain} to {}.\n",
                Mib(args.size)
            ),
        ),
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mem_size_kib as parse;

    #[test]
    fn sizes_as_xl_reads_them() {
        assert_eq!(parse("64"), Ok(64 << 10));
        assert_eq!(parse("64m"), Ok(64 << 10));
        assert_eq!(parse("64M"), Ok(64 << 10));
        assert_eq!(parse("1g"), Ok(1 << 20));
        assert_eq!(parse("2T"), Ok(2 << 30));
        assert_eq!(parse("512k"), Ok(512));
        assert_eq!(parse("4096b"), Ok(4));
        assert_eq!(parse("1000b"), Ok(0));
        for bad in [
            "",
            "m",
            "12mb",
            "MiB",
            "-4m",
            "1.5g",
            "12x",
            " 12",
            "99999999999999999999t",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse("lots").unwrap_err(),
            "invalid memory size: lots (e.g. 64m, 512k, 1g; MiB without a unit)"
        );
    }
}
