//! The `acgs` binary: parse the command line, run, exit with a code.
fn main() {}
