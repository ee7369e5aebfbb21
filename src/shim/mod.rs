//! Infrastructure stand-ins for air-gapped or minimal deployments (DESIGN.md §5): `acgs shim
//! nats` speaks the NATS core client protocol well enough for the official clients; `acgs shim
//! redis` speaks RESP2/RESP3 for the commands acgs and the usual tools need, kept in redb. They
//! let a deployment run with no third-party image at all; they are not a replacement for the
//! real servers at scale.
//!
//! Each shim is a library module with `run(listener, shutdown)` (tests start it on port 0) and
//! a `clap::Args` struct plus `serve` for the command line; `src/cli.rs` wires them into the one
//! subcommand enum.

pub mod nats;
pub mod redis;

/// Parses a size in bytes: `1048576`, or with a binary unit `512KiB`, `1MiB` (`K`/`KB`/`M`/`MB`
/// mean the same powers of 1,024). Used as a clap `value_parser`, hence the `String` error.
pub fn parse_size(input: &str) -> Result<usize, String> {
    let s = input.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(format!("invalid size {input:?}: expected a number of bytes, e.g. 1048576 or 1MiB"));
    }
    let number: usize = number.parse().map_err(|_| format!("invalid size {input:?}: number too large"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1024,
        "M" | "MB" | "MiB" => 1024 * 1024,
        "G" | "GB" | "GiB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size {input:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("invalid size {input:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1048576"), Ok(1024 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("64 MB"), Ok(64 * 1024 * 1024));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
