//! Verdict helpers: an action passes, fails, is skipped, or is judged by a condition; each states
//! what was expected and what was seen.

use crate::checks::Outcome;
use crate::mode::{IpFamily, Mode};
use reports::Status;

fn outcome(status: Status, expected: String, actual: String, message: String) -> Outcome {
    Outcome { status, expected, actual, message, diagnostics: String::new(), retried: Vec::new() }
}

pub fn pass(expected: impl Into<String>, actual: impl Into<String>) -> Outcome {
    outcome(Status::Passed, expected.into(), actual.into(), String::new())
}

pub fn fail(expected: impl Into<String>, actual: impl Into<String>) -> Outcome {
    let actual = actual.into();
    outcome(Status::Failed, expected.into(), actual.clone(), actual)
}

pub fn skip(reason: impl Into<String>) -> Outcome {
    outcome(Status::Skipped, String::new(), String::new(), reason.into())
}

pub fn verdict(ok: bool, expected: impl Into<String>, actual: impl Into<String>) -> Outcome {
    if ok { pass(expected, actual) } else { fail(expected, actual) }
}

/// A set of addresses in words: `none`, or the addresses.
pub fn listed<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

/// The verdict on one family of an ordered list of addresses or CIDRs: exactly one entry of that
/// family, at the family's position in the mode. Each family's action judges its own family only.
pub fn ordered(mode: Mode, family: IpFamily, subject: &str, values: &[String]) -> Outcome {
    let position = mode.families().iter().position(|f| *f == family).unwrap_or(0);
    let ok = crate::objects::family_at_its_position(values, mode, family);
    verdict(ok, format!("{subject}: one {family} entry, at position {position}"), format!("{subject}: {}", listed(values)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Mode::Dual, IpFamily::IPv6, &["10.244.1.2", "fd00:10:244:1::2"], Status::Passed)]
    #[case(Mode::Dual, IpFamily::IPv6, &["fd00:10:244:1::2", "10.244.1.2"], Status::Failed)]
    #[case(Mode::Dual, IpFamily::IPv4, &["10.244.1.2"], Status::Passed)]
    #[case(Mode::Dual, IpFamily::IPv6, &["10.244.1.2"], Status::Failed)]
    #[case(Mode::DualIpv6Primary, IpFamily::IPv4, &["fd00:10:244:1::2", "10.244.1.2"], Status::Passed)]
    fn ordered_judges_its_own_family(#[case] mode: Mode, #[case] family: IpFamily, #[case] values: &[&str], #[case] status: Status) {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let got = ordered(mode, family, "podIPs", &values);
        assert_eq!(got.status, status, "{got:?}");
        assert_eq!(got.expected, format!("podIPs: one {family} entry, at position {}", mode.families().iter().position(|f| *f == family).unwrap_or(0)));
    }

    #[test]
    fn a_failure_says_what_it_saw() {
        let got = fail("A echo = [10.96.0.5]", "[] rcode 3");
        assert_eq!((got.status, got.message.as_str(), got.actual.as_str()), (Status::Failed, "[] rcode 3", "[] rcode 3"));
    }
}
