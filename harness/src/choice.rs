//! The choices a flag names (`--kube-proxy nftables`, `--load-balancer none`): each variant's
//! name both ways, and one error for a name that is none of them.

/// `FromStr` and `Display` for an enum of choices: `named_choices!(Type, "what it is", { Variant =>
/// "name", ... })`. An unknown name is `unknown what it is 'x' (expected one of: a, b)`.
macro_rules! named_choices {
    ($type:ty, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                match text {
                    $($name => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} '{other}' (expected one of: {})", $what, [$($name),+].join(", "))),
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }
    };
}

pub(crate) use named_choices;

#[cfg(test)]
mod tests {
    use crate::kind::KubeProxyMode;
    use crate::network_policy::PolicyAgent;

    #[test]
    fn a_choice_reads_and_prints_its_name_and_an_unknown_one_lists_them() {
        assert_eq!("nftables".parse::<KubeProxyMode>(), Ok(KubeProxyMode::Nftables));
        assert_eq!(PolicyAgent::KubeNetworkPolicies.to_string(), "kube-network-policies");
        assert_eq!("ipvs".parse::<KubeProxyMode>(), Err("unknown kube-proxy mode 'ipvs' (expected one of: iptables, nftables, none)".to_string()));
    }
}
