//! Exit codes, documented in the README and in `--help`, and the one mapping from errors to them.

pub const OK: u8 = 0;
pub const CONFORMANCE_FAILURES: u8 = 1;
pub const USAGE: u8 = 2;
pub const ENVIRONMENT: u8 = 3;
pub const INTERRUPTED: u8 = 130;
pub const TERMINATED: u8 = 143;

/// The exit code of a run that ended with `error`.
pub fn of(error: &harness::Error) -> u8 {
    if error.is_bad_input() { USAGE } else { ENVIRONMENT }
}

/// The exit code of a finished run: conformance failures or none.
pub fn of_verdict(passed: bool) -> u8 {
    if passed { OK } else { CONFORMANCE_FAILURES }
}
