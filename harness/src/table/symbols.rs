//! Family symbols (`primary`, `secondary`, `IPv4`, `IPv6`) and address placeholders (`$ip(F)`,
//! `$ip2(F)`, `$outside(F)`, `$kubernetes-ip`) of the Service tables, and how a mode resolves them.

use crate::mode::{IpFamily, Mode};

pub const FAMILY_SYMBOLS: [&str; 4] = ["primary", "secondary", "IPv4", "IPv6"];

/// Placeholders usable in `create`, `update` and `clusterIPs` expectations.
/// `$ip(F)`/`$ip2(F)`: distinct free addresses of family F in the service range (static band);
/// `$outside(F)`: an address of family F outside any service range; `$kubernetes-ip`: the address of
/// the `kubernetes` Service (always in use). F is primary, secondary, IPv4 or IPv6.
pub fn parse_placeholder(text: &str) -> Option<Result<Placeholder, String>> {
    let rest = text.strip_prefix('$')?;
    if rest == "kubernetes-ip" {
        return Some(Ok(Placeholder::KubernetesIp));
    }
    let parsed = (|| {
        let (kind, arg) = rest.strip_suffix(')').and_then(|r| r.split_once('(')).ok_or("expected $kind(FAMILY)")?;
        if !FAMILY_SYMBOLS.contains(&arg) {
            return Err(format!("unknown family '{arg}' (expected one of {})", FAMILY_SYMBOLS.join(", ")));
        }
        let family = arg.to_string();
        match kind {
            "ip" => Ok(Placeholder::Free { family, index: 0 }),
            "ip2" => Ok(Placeholder::Free { family, index: 1 }),
            "outside" => Ok(Placeholder::Outside { family }),
            other => Err(format!("unknown placeholder kind '{other}' (expected ip, ip2, outside)")),
        }
    })();
    Some(parsed.map_err(|e| format!("placeholder '{text}': {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placeholder {
    Free { family: String, index: u8 },
    Outside { family: String },
    KubernetesIp,
}

/// Concrete family of a symbol for a mode. `secondary` on a single-stack cluster is the family the
/// cluster does not have (selectorless headless Services name it).
pub fn family_of_symbol(symbol: &str, mode: Mode) -> Option<IpFamily> {
    let other = |f: IpFamily| if f == IpFamily::IPv4 { IpFamily::IPv6 } else { IpFamily::IPv4 };
    match symbol {
        "primary" => Some(mode.primary()),
        "secondary" => Some(mode.families().get(1).copied().unwrap_or_else(|| other(mode.primary()))),
        "IPv4" => Some(IpFamily::IPv4),
        "IPv6" => Some(IpFamily::IPv6),
        _ => None,
    }
}

/// A family symbol written as its concrete family for `mode`; any other text as it is.
pub fn resolve_symbol(symbol: &str, mode: Mode) -> String {
    family_of_symbol(symbol, mode).map_or_else(|| symbol.to_string(), |f| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("primary", Mode::DualIpv6Primary, Some(IpFamily::IPv6))]
    #[case("secondary", Mode::DualIpv6Primary, Some(IpFamily::IPv4))]
    #[case("secondary", Mode::Ipv4, Some(IpFamily::IPv6))]
    #[case("IPv4", Mode::Ipv6, Some(IpFamily::IPv4))]
    #[case("ipv4", Mode::Ipv6, None)]
    fn family_symbols(#[case] symbol: &str, #[case] mode: Mode, #[case] family: Option<IpFamily>) {
        assert_eq!(family_of_symbol(symbol, mode), family);
    }
}
