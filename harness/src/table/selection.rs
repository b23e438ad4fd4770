//! `--filter` / `--skip` globs and `--shard`: which rows a run takes. Pure: the plan asks it.

use globset::{Glob, GlobMatcher};

/// `--filter` / `--skip` patterns: globs matched against `ID` and `SUITE/ID`; and `--shard`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    filter: Vec<(String, GlobMatcher)>,
    skip: Vec<(String, GlobMatcher)>,
    shard: Option<Shard>,
}

/// `--shard INDEX/COUNT` (1-based): a deterministic split of the rows, by a stable hash of
/// `SUITE/ID`, so the jobs of a CI matrix together run every row exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A pattern or shard that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("{flag} '{pattern}': {message}")]
    Glob { flag: &'static str, pattern: String, message: String },
    #[error("--shard '{0}': expected INDEX/COUNT with 1 <= INDEX <= COUNT, e.g. 1/2")]
    Shard(String),
}

impl std::str::FromStr for Shard {
    type Err = SelectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.parse::<u32>().ok()?, n.parse::<u32>().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && (1..=count).contains(&index) => Ok(Self { index, count }),
            _ => Err(SelectionError::Shard(s.to_string())),
        }
    }
}

impl Shard {
    /// Whether `suite/id` belongs to this shard (FNV-1a: stable across runs, platforms, versions).
    pub fn contains(&self, suite: &str, id: &str) -> bool {
        let hash = format!("{suite}/{id}").bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        hash % u64::from(self.count) == u64::from(self.index - 1)
    }
}

impl Selection {
    pub fn new(filter: &[String], skip: &[String], shard: Option<&str>) -> Result<Self, SelectionError> {
        let compile = |patterns: &[String], flag: &'static str| -> Result<Vec<(String, GlobMatcher)>, SelectionError> {
            patterns
                .iter()
                .map(|p| {
                    Glob::new(p).map(|g| (p.clone(), g.compile_matcher())).map_err(|e| SelectionError::Glob {
                        flag,
                        pattern: p.clone(),
                        message: e.to_string(),
                    })
                })
                .collect()
        };
        let shard = shard.map(str::parse::<Shard>).transpose()?;
        Ok(Self { filter: compile(filter, "--filter")?, skip: compile(skip, "--skip")?, shard })
    }

    /// Whether the row is this job's at all; rows of other shards are not reported here.
    pub fn in_shard(&self, suite: &str, id: &str) -> bool {
        self.shard.is_none_or(|s| s.contains(suite, id))
    }

    /// Why the row `suite/id` is not selected, if it is not.
    pub fn excludes(&self, suite: &str, id: &str) -> Option<String> {
        let qualified = format!("{suite}/{id}");
        let hit = |m: &GlobMatcher| m.is_match(id) || m.is_match(&qualified);
        if let Some((p, _)) = self.skip.iter().find(|(_, m)| hit(m)) {
            return Some(format!("skipped by --skip {p}"));
        }
        if !self.filter.is_empty() && !self.filter.iter().any(|(_, m)| hit(m)) {
            return Some("not selected by --filter".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn shards_partition_the_rows() {
        let ids: Vec<String> = (0..200).map(|i| format!("S{i:03}")).collect();
        for count in 1..=5 {
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            for id in &ids {
                let owners = shards.iter().filter(|s| s.contains("services", id)).count();
                assert_eq!(owners, 1, "{id} in {owners} of {count} shards");
            }
        }
    }

    #[rstest]
    #[case("1/2", Ok(Shard { index: 1, count: 2 }))]
    #[case("2/2", Ok(Shard { index: 2, count: 2 }))]
    #[case("0/2", Err(()))]
    #[case("3/2", Err(()))]
    #[case("1/0", Err(()))]
    #[case("half", Err(()))]
    fn shard_syntax(#[case] text: &str, #[case] expected: Result<Shard, ()>) {
        assert_eq!(text.parse::<Shard>().map_err(|_| ()), expected);
    }

    #[rstest]
    #[case(&["S1*"], &[], "S12", None)]
    #[case(&["S1*"], &[], "U01", Some("not selected by --filter"))]
    #[case(&[], &["services/U*"], "U01", Some("skipped by --skip services/U*"))]
    #[case(&["S*"], &["S12"], "S12", Some("skipped by --skip S12"))]
    fn filter_and_skip(#[case] filter: &[&str], #[case] skip: &[&str], #[case] id: &str, #[case] reason: Option<&str>) {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let selection = Selection::new(&strings(filter), &strings(skip), None).unwrap_or_default();
        assert_eq!(selection.excludes("services", id).as_deref(), reason);
    }
}
