//! Facts about the host that decide how KIND nodes must be configured. Detected, never assumed.

/// What the host needs patched into every KIND cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNeeds {
    /// The capability bounding set lacks CAP_SYS_RESOURCE, so processes in the node cannot lower
    /// `oom_score_adj`; containerd must clamp its pod sandboxes (-998) to its own score.
    pub restrict_oom_score_adj: bool,
    /// The host runs cgroup v1, which kubelets 1.35+ refuse unless `failCgroupV1: false`.
    pub cgroup_v1: bool,
}

impl HostNeeds {
    pub fn detect() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self {
            restrict_oom_score_adj: !bounding_set_has_sys_resource(&status),
            cgroup_v1: !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        }
    }
}

/// CAP_SYS_RESOURCE is bit 24 of the `CapBnd` mask in /proc/PID/status.
fn bounding_set_has_sys_resource(status: &str) -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask >> CAP_SYS_RESOURCE & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("CapBnd:\t000001fffeffffff\n", false)]
    #[case("CapBnd:\t000001ffffffffff\n", true)]
    #[case("Name: x\n", true)]
    fn reads_sys_resource_from_the_bounding_set(#[case] status: &str, #[case] has: bool) {
        assert_eq!(bounding_set_has_sys_resource(status), has);
    }
}
