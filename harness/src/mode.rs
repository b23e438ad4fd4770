//! IP families and cluster modes. A mode is a value with its families in order; nothing else in the
//! code spells out which family comes first.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP family, spelled as the Kubernetes API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { Self::IPv4 } else { Self::IPv6 }
    }

    /// Family of an address or CIDR written as text (`10.0.0.1`, `fd00::/64`).
    pub fn of_text(text: &str) -> Option<Self> {
        let addr = text.split('/').next()?;
        addr.parse::<IpAddr>().ok().map(|ip| Self::of(&ip))
    }

    /// Lower-case name used in check names (`dns-ipv6`), as cilium-cli names its actions.
    pub fn slug(self) -> &'static str {
        match self {
            Self::IPv4 => "ipv4",
            Self::IPv6 => "ipv6",
        }
    }

    pub fn api_name(self) -> &'static str {
        match self {
            Self::IPv4 => "IPv4",
            Self::IPv6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// The four cluster modes dualstack builds and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Ipv4,
    Ipv6,
    /// Dual-stack with IPv4 as the primary family.
    Dual,
    /// Dual-stack with IPv6 listed first in podSubnet and serviceSubnet.
    DualIpv6Primary,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Ipv4, Mode::Ipv6, Mode::Dual, Mode::DualIpv6Primary];

    /// The cluster's families, primary first.
    pub fn families(self) -> &'static [IpFamily] {
        match self {
            Self::Ipv4 => &[IpFamily::IPv4],
            Self::Ipv6 => &[IpFamily::IPv6],
            Self::Dual => &[IpFamily::IPv4, IpFamily::IPv6],
            Self::DualIpv6Primary => &[IpFamily::IPv6, IpFamily::IPv4],
        }
    }

    pub fn primary(self) -> IpFamily {
        self.families()[0]
    }

    pub fn is_dual(self) -> bool {
        self.families().len() == 2
    }

    /// The mode whose families are exactly `families`, in order.
    pub fn from_families(families: &[IpFamily]) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.families() == families)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Dual => "dual",
            Self::DualIpv6Primary => "dual-ipv6-primary",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode name that is not one of the four.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown mode '{0}' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownMode(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("ipv4", Ok(Mode::Ipv4))]
    #[case("ipv6", Ok(Mode::Ipv6))]
    #[case("dual", Ok(Mode::Dual))]
    #[case("dual-ipv6-primary", Ok(Mode::DualIpv6Primary))]
    #[case("IPv4", Err(UnknownMode("IPv4".into())))]
    #[case("dualstack", Err(UnknownMode("dualstack".into())))]
    #[case("", Err(UnknownMode(String::new())))]
    #[case("dual ", Err(UnknownMode("dual ".into())))]
    fn parses_mode_names(#[case] input: &str, #[case] expected: Result<Mode, UnknownMode>) {
        assert_eq!(input.parse::<Mode>(), expected);
    }

    #[rstest]
    #[case(Mode::Ipv4, &[IpFamily::IPv4])]
    #[case(Mode::Ipv6, &[IpFamily::IPv6])]
    #[case(Mode::Dual, &[IpFamily::IPv4, IpFamily::IPv6])]
    #[case(Mode::DualIpv6Primary, &[IpFamily::IPv6, IpFamily::IPv4])]
    fn families_round_trip(#[case] mode: Mode, #[case] families: &[IpFamily]) {
        assert_eq!(mode.families(), families);
        assert_eq!(Mode::from_families(families), Some(mode));
        assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
    }

    #[test]
    fn unknown_mode_message_lists_the_valid_ones() {
        let err = "v6".parse::<Mode>().err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("unknown mode 'v6' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)"));
    }
}
