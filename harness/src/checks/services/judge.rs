//! Judging a Service row: the server's answer against the row's expectation for the cluster's
//! mode, with every difference named.

use super::execute::{Answer, Placeholders};
use crate::detect::ClusterFacts;
use crate::mode::{IpFamily, Mode};
use crate::table::services::{Expectation, Rejection};
use crate::table::symbols::{family_of_symbol, resolve_symbol};
use serde_json::Value;
use std::net::IpAddr;

/// What one scenario did and whether it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    /// Each way the actual outcome differs from the expected one.
    pub differences: Vec<String>,
}

impl Verdict {
    /// The case's outcome, with `diagnostics` for its system-out.
    pub fn outcome(self, diagnostics: String) -> crate::checks::Outcome {
        crate::checks::Outcome {
            status: if self.passed { reports::Status::Passed } else { reports::Status::Failed },
            expected: self.expected,
            actual: self.actual,
            message: self.differences.join("; "),
            diagnostics,
            retried: Vec::new(),
        }
    }
}

fn describe_rejection(r: &Rejection) -> String {
    let causes: Vec<String> = r.causes.iter().map(|c| format!("{} ~ \"{}\"", c.field, c.message)).collect();
    format!("rejected {}{} [{}]", r.status, r.reason.as_ref().map(|x| format!(" {x}")).unwrap_or_default(), causes.join("; "))
}

fn describe_spec(spec: &Value) -> String {
    let field = |k: &str| spec.get(k).map_or_else(|| "unset".to_string(), |v| v.to_string().replace('"', ""));
    format!(
        "accepted: policy={} families={} clusterIPs={}{}",
        field("ipFamilyPolicy"),
        field("ipFamilies"),
        field("clusterIPs"),
        spec.get("ports")
            .and_then(Value::as_array)
            .map(|ports| {
                let node_ports = ports.iter().filter(|p| p.get("nodePort").is_some()).count();
                if node_ports > 0 { format!(" nodePorts={node_ports}") } else { String::new() }
            })
            .unwrap_or_default()
    )
}

fn describe_expectation(e: &Expectation, mode: Mode, facts: &ClusterFacts, book: &Placeholders) -> String {
    if let Some(r) = &e.rejected {
        return describe_rejection(r);
    }
    let mut parts = vec!["accepted:".to_string()];
    if let Some(p) = &e.policy {
        parts.push(format!("policy={p}"));
    }
    if let Some(f) = &e.families {
        let concrete: Vec<String> = f.iter().map(|s| resolve_symbol(s, mode)).collect();
        parts.push(format!("families=[{}]", concrete.join(",")));
    }
    if let Some(ips) = &e.cluster_ips {
        let concrete: Vec<String> = ips
            .iter()
            .map(|s| match family_of_symbol(s, mode) {
                Some(f) => format!("{f} in {}", facts.service_cidr(f).map_or("no range".into(), |r| r.to_string())),
                None => book.lookup(s).unwrap_or(s).to_string(),
            })
            .collect();
        parts.push(format!("clusterIPs=[{}]", concrete.join(",")));
    }
    if !e.unset.is_empty() {
        parts.push(format!("unset=[{}]", e.unset.join(",")));
    }
    if let Some(n) = e.node_ports {
        parts.push(format!("nodePorts={n}"));
    }
    parts.join(" ")
}

/// Compares the answer with the expectation for `mode`.
pub fn judge(
    expectation: &Expectation,
    mode: Mode,
    facts: &ClusterFacts,
    book: &Placeholders,
    answer: &Answer,
    before: Option<&Value>,
) -> Verdict {
    let expected = describe_expectation(expectation, mode, facts, book);
    let mut differences = Vec::new();
    let actual = match answer {
        Answer::Rejected(status) => {
            let causes: Vec<String> = status
                .details
                .as_ref()
                .map(|d| d.causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect())
                .unwrap_or_default();
            format!("rejected {} {}: {}", status.code, status.reason, if causes.is_empty() { status.message.clone() } else { causes.join("; ") })
        }
        Answer::Accepted { spec } => describe_spec(spec),
    };
    match (&expectation.rejected, answer) {
        (Some(_), Answer::Accepted { .. }) => differences.push("expected a rejection, the server accepted".into()),
        (None, Answer::Rejected(status)) => differences.push(format!("expected acceptance, the server rejected: {}", status.message)),
        (Some(want), Answer::Rejected(status)) => {
            if want.status != status.code {
                differences.push(format!("HTTP status {} instead of {}", status.code, want.status));
            }
            if let Some(reason) = &want.reason
                && reason != &status.reason
            {
                differences.push(format!("reason {} instead of {reason}", status.reason));
            }
            let causes = status.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
            for cause in &want.causes {
                let found = causes.iter().any(|c| c.field == cause.field && c.message.contains(&cause.message));
                if !found {
                    differences.push(format!("no cause on {} containing \"{}\"", cause.field, cause.message));
                }
            }
        }
        (None, Answer::Accepted { spec }) => judge_accepted(expectation, mode, facts, book, spec, before, &mut differences),
    }
    Verdict { passed: differences.is_empty(), expected, actual, differences }
}

fn judge_accepted(
    e: &Expectation,
    mode: Mode,
    facts: &ClusterFacts,
    book: &Placeholders,
    spec: &Value,
    before: Option<&Value>,
    differences: &mut Vec<String>,
) {
    let strings = |key: &str| -> Option<Vec<String>> {
        spec.get(key)?.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    };
    if let Some(policy) = &e.policy {
        let got = spec.get("ipFamilyPolicy").and_then(Value::as_str);
        if got != Some(policy.as_str()) {
            differences.push(format!("ipFamilyPolicy {} instead of {policy}", got.unwrap_or("unset")));
        }
    }
    if let Some(families) = &e.families {
        let want: Vec<String> = families.iter().map(|s| resolve_symbol(s, mode)).collect();
        let got = strings("ipFamilies").unwrap_or_default();
        if got != want {
            differences.push(format!("ipFamilies {got:?} instead of {want:?}"));
        }
    }
    if let Some(ips) = &e.cluster_ips {
        let got = strings("clusterIPs").unwrap_or_default();
        if got.len() != ips.len() {
            differences.push(format!("{} clusterIPs {got:?} instead of {}", got.len(), ips.len()));
        }
        let previous = before.and_then(|b| b.get("clusterIPs")).and_then(Value::as_array);
        for (i, (want, have)) in ips.iter().zip(got.iter()).enumerate() {
            if let Some(family) = family_of_symbol(want, mode) {
                match (have.parse::<IpAddr>(), facts.service_cidr(family)) {
                    (Ok(ip), Some(range)) if IpFamily::of(&ip) == family && range.contains(&ip) => {}
                    (Ok(ip), Some(range)) => {
                        differences.push(format!("clusterIPs[{i}] {ip} is not an {family} address inside {range}"))
                    }
                    (Ok(ip), None) => differences.push(format!("clusterIPs[{i}] {ip}: the cluster has no {family} service range")),
                    (Err(_), _) => differences.push(format!("clusterIPs[{i}] {have} is not an {family} address")),
                }
            } else if want == "kept" {
                let old = previous.and_then(|p| p.get(i)).and_then(Value::as_str);
                if old != Some(have.as_str()) {
                    differences.push(format!("clusterIPs[{i}] {have} changed (was {})", old.unwrap_or("unset")));
                }
            } else {
                let want_text = book.lookup(want).unwrap_or(want);
                if want_text != have {
                    differences.push(format!("clusterIPs[{i}] {have} instead of {want_text}"));
                }
            }
        }
        if let Some(first) = got.first() {
            let cluster_ip = spec.get("clusterIP").and_then(Value::as_str);
            if cluster_ip != Some(first.as_str()) {
                differences.push(format!("clusterIP {} differs from clusterIPs[0] {first}", cluster_ip.unwrap_or("unset")));
            }
        }
    }
    for field in &e.unset {
        if let Some(value) = spec.get(field) {
            differences.push(format!("{field} is {value}, expected unset"));
        }
    }
    if let Some(n) = e.node_ports {
        let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let with_node_port = ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_u64).is_some()).count();
        if with_node_port != n {
            differences.push(format!("{with_node_port} ports with a nodePort instead of {n}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::services::CauseMatch;
    use crate::table::symbols::Placeholder;
    use kube::core::Status;
    use rstest::rstest;

    fn facts(mode: Mode) -> ClusterFacts {
        let cidr = |f: IpFamily| if f == IpFamily::IPv4 { "10.96.0.0/16" } else { "fd00:10:96::/112" };
        ClusterFacts {
            mode,
            service_cidrs: mode.families().iter().filter_map(|&f| cidr(f).parse().ok()).collect(),
            kubernetes_ip: if mode.primary() == IpFamily::IPv4 { "10.96.0.1" } else { "fd00:10:96::1" }.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            server_version: "v1.36.3".into(),
        }
    }

    fn accepted(spec: Value) -> Answer {
        Answer::Accepted { spec }
    }

    fn expectation(policy: &str, families: &[&str], ips: &[&str]) -> Expectation {
        Expectation {
            policy: Some(policy.into()),
            families: Some(families.iter().map(|s| s.to_string()).collect()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            unset: vec![],
            node_ports: None,
            rejected: None,
        }
    }

    fn rejected_422(status: u16, field: &str, message: &str) -> Answer {
        Answer::Rejected(Box::new(Status {
            code: status,
            reason: "Invalid".into(),
            message: format!("Service \"x\" is invalid: {field}: {message}"),
            details: Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: message.into(),
                    field: field.into(),
                }],
                name: "x".into(),
                group: String::new(),
                kind: "services".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..Default::default()
        }))
    }

    #[rstest]
    #[case::dual_both(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5", "fd00:10:96::5"]}), vec![])]
    #[case::dual6_order(Mode::DualIpv6Primary, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00:10:96::5", "clusterIPs": ["fd00:10:96::5", "10.96.5.5"]}), vec![])]
    #[case::wrong_order(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00:10:96::5", "clusterIPs": ["fd00:10:96::5", "10.96.5.5"]}),
        vec!["ipFamilies [\"IPv6\", \"IPv4\"] instead of [\"IPv4\", \"IPv6\"]", "clusterIPs[0] fd00:10:96::5 is not an IPv4 address inside 10.96.0.0/16", "clusterIPs[1] 10.96.5.5 is not an IPv6 address inside fd00:10:96::/112"])]
    #[case::single_only(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"]}),
        vec!["ipFamilies [\"IPv4\"] instead of [\"IPv4\", \"IPv6\"]", "1 clusterIPs [\"10.96.5.5\"] instead of 2"])]
    #[case::outside_range(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.97.5.5", "clusterIPs": ["10.97.5.5", "fd00:10:96::5"]}),
        vec!["clusterIPs[0] 10.97.5.5 is not an IPv4 address inside 10.96.0.0/16"])]
    #[case::wrong_policy(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5", "fd00:10:96::5"]}),
        vec!["ipFamilyPolicy SingleStack instead of PreferDualStack"])]
    fn judges_accepted_services(#[case] mode: Mode, #[case] spec: Value, #[case] differences: Vec<&str>) {
        let e = expectation("PreferDualStack", &["primary", "secondary"], &["primary", "secondary"]);
        let verdict = judge(&e, mode, &facts(mode), &Placeholders::default(), &accepted(spec), None);
        assert_eq!(verdict.differences, differences);
        assert_eq!(verdict.passed, differences.is_empty());
    }

    #[rstest]
    #[case::matching(rejected_422(422, "spec.ipFamilyPolicy", "this cluster is not configured for dual-stack services"), vec![])]
    #[case::other_field(rejected_422(422, "spec.ipFamilies[0]", "this cluster is not configured for dual-stack services"),
        vec!["no cause on spec.ipFamilyPolicy containing \"not configured for dual-stack\""])]
    #[case::other_text(rejected_422(422, "spec.ipFamilyPolicy", "must be 'SingleStack'"),
        vec!["no cause on spec.ipFamilyPolicy containing \"not configured for dual-stack\""])]
    #[case::other_status(rejected_422(400, "spec.ipFamilyPolicy", "this cluster is not configured for dual-stack services"),
        vec!["HTTP status 400 instead of 422"])]
    #[case::accepted(accepted(serde_json::json!({"ipFamilyPolicy": "RequireDualStack"})), vec!["expected a rejection, the server accepted"])]
    fn judges_rejections(#[case] answer: Answer, #[case] differences: Vec<&str>) {
        let e = Expectation {
            policy: None,
            families: None,
            cluster_ips: None,
            unset: vec![],
            node_ports: None,
            rejected: Some(Rejection {
                status: 422,
                reason: Some("Invalid".into()),
                causes: vec![CauseMatch { field: "spec.ipFamilyPolicy".into(), message: "not configured for dual-stack".into() }],
            }),
        };
        let verdict = judge(&e, Mode::Ipv4, &facts(Mode::Ipv4), &Placeholders::default(), &answer, None);
        assert_eq!(verdict.differences, differences);
    }

    #[test]
    fn kept_and_unset_and_placeholders() {
        let e = Expectation {
            policy: None,
            families: None,
            cluster_ips: Some(vec!["kept".into(), "$ip(IPv6)".into()]),
            unset: vec!["ipFamilyPolicy".into()],
            node_ports: None,
            rejected: None,
        };
        let book = Placeholders::of(&[(Placeholder::Free { family: "IPv6".into(), index: 0 }, "fd00:10:96::30")]);
        let before = serde_json::json!({"clusterIPs": ["10.96.0.9"]});
        let good = accepted(serde_json::json!({"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9", "fd00:10:96::30"]}));
        assert_eq!(judge(&e, Mode::Dual, &facts(Mode::Dual), &book, &good, Some(&before)).differences, Vec::<String>::new());
        let bad = accepted(serde_json::json!({"ipFamilyPolicy": "SingleStack", "clusterIP": "10.96.0.8", "clusterIPs": ["10.96.0.8", "fd00:10:96::31"]}));
        assert_eq!(
            judge(&e, Mode::Dual, &facts(Mode::Dual), &book, &bad, Some(&before)).differences,
            vec![
                "clusterIPs[0] 10.96.0.8 changed (was 10.96.0.9)",
                "clusterIPs[1] fd00:10:96::31 instead of fd00:10:96::30",
                "ipFamilyPolicy is \"SingleStack\", expected unset"
            ]
        );
    }
}
