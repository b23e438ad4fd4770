//! A child process led into its own process group, so that stopping it early also settles what it
//! started: the `docker run` clients of an interrupted `kind create cluster` outlive kind, and a
//! node they create after the cleanup has looked for nodes is left behind (CI: both nodes of a
//! create interrupted five seconds in were).

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use std::time::{Duration, Instant};

/// How long the sub-commands allowed to finish get before the whole group is killed.
const FINISH_LIMIT: Duration = Duration::from_secs(60);

/// Dropped before `ended`, kills the leader at once, lets the group's members for which
/// `let_finish` says so (by their argv) finish, kills the others, and kills what is left after
/// [`FINISH_LIMIT`].
pub struct ProcessGroupGuard {
    leader: Option<Pid>,
    let_finish: fn(&[String]) -> bool,
}

impl ProcessGroupGuard {
    /// The group `child` leads; it must have been spawned with `process_group(0)`.
    pub fn of(child: &tokio::process::Child, let_finish: fn(&[String]) -> bool) -> Self {
        let leader = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        Self { leader, let_finish }
    }

    /// The leader has been waited for: its id may be reused, so the group is no longer ours.
    pub fn ended(mut self) {
        self.leader = None;
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        let Some(leader) = self.leader else { return };
        let _ = kill_process(leader, Signal::KILL);
        let deadline = Instant::now() + FINISH_LIMIT;
        loop {
            let mut finishing = false;
            for (pid, argv) in live_members(leader) {
                if (self.let_finish)(&argv) {
                    finishing = true;
                } else {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
            if !finishing || Instant::now() > deadline {
                break;
            }
            // Dropped while the runtime is being torn down or a select! has moved on: nothing
            // else waits on this thread, and the caller's cleanup must come after these.
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = kill_process_group(leader, Signal::KILL);
    }
}

/// The group's processes that have not exited (zombies excluded: an orphan stays one until
/// whatever adopted it reaps it), with their argv.
fn live_members(group: Pid) -> Vec<(Pid, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let pid = Pid::from_raw(entry.ok()?.file_name().to_str()?.parse().ok()?)?;
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
            let (state, process_group) = state_and_group(&stat)?;
            if process_group != group.as_raw_nonzero().get() || matches!(state, 'Z' | 'X') {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero())).ok()?;
            let argv = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            Some((pid, argv))
        })
        .collect()
}

/// A `/proc/PID/stat` line's state and process group: `pid (comm) state ppid pgrp ...`, where comm
/// may hold spaces and parentheses, so the fields are counted from its last `)`.
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("4242 (docker) S 1 4240 4240 0 -1 4194560", Some(('S', 4240)))]
    #[case("17 (a (b) c) Z 1 9 9 0", Some(('Z', 9)))]
    #[case("17 (kind)", None)]
    fn reads_state_and_group_past_the_command_name(#[case] stat: &str, #[case] expected: Option<(char, i32)>) {
        assert_eq!(state_and_group(stat), expected);
    }

    /// Real processes: the leader and a member not let finish die at once; the member let finish
    /// completes its work before the drop returns.
    #[tokio::test]
    async fn dropped_early_it_lets_the_chosen_members_finish_and_kills_the_rest() {
        let dir = std::env::temp_dir().join(format!("dualstack-process-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let finished = dir.join("finished");
        let script = format!("sh -c 'sleep 0.5; touch {}' & sleep 100 & wait", finished.display());
        let child = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let leader = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw).unwrap_or_else(|| panic!("no pid"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(live_members(leader).len(), 4, "sh, the inner sh, its sleep and sleep 100");
        drop(ProcessGroupGuard::of(&child, |argv| !argv.iter().any(|a| a == "100")));
        assert!(finished.is_file(), "the member let finish was killed");
        assert_eq!(live_members(leader), Vec::new());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
