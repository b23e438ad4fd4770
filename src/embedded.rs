//! The files the binary carries (see build.rs): unpacked once per content into the cache, so that
//! the built-in tables and `prepare` work wherever the binary is, its checkout moved or gone.

use harness::Error;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The unpacked copy: `CACHE/source/CONTENT_HASH`, written when missing. Older copies are removed.
pub fn source_root() -> Result<PathBuf, Error> {
    let parent = harness::machine::cache_dir().join("source");
    let dir = parent.join(CONTENT_HASH);
    if mark_used(&dir) {
        return Ok(dir);
    }
    // Written beside, then renamed: a concurrent run sees a whole copy or none.
    let partial = parent.join(format!(".{CONTENT_HASH}.{}", std::process::id()));
    unpack(&partial).map_err(Error::io(format!("unpacking the embedded files into {}", partial.display())))?;
    match std::fs::rename(&partial, &dir) {
        Ok(()) => {}
        // Another run unpacked the same content first.
        Err(_) if dir.join(COMPLETE).is_file() => {
            let _ = std::fs::remove_dir_all(&partial);
        }
        Err(e) => return Err(Error::io(format!("moving {} to {}", partial.display(), dir.display()))(e)),
    }
    remove_older_copies(&parent);
    Ok(dir)
}

/// Marks a copy as whole; its modification time is the copy's last use.
const COMPLETE: &str = ".complete";

/// Whether `dir` is a whole copy; if so, records that it was used now.
fn mark_used(dir: &Path) -> bool {
    std::fs::File::options().write(true).open(dir.join(COMPLETE)).and_then(|f| f.set_modified(std::time::SystemTime::now())).is_ok()
}

fn unpack(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    for (path, content, executable) in FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(if *executable { 0o755 } else { 0o644 }))?;
    }
    std::fs::write(dir.join(COMPLETE), CONTENT_HASH)
}

/// Copies of other builds a day after their last use (another binary may be running from one),
/// and half-written ones a day old.
fn remove_older_copies(parent: &Path) {
    let day = std::time::Duration::from_secs(24 * 3600);
    let older = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let path = entry.path();
        let complete = path.join(COMPLETE);
        let stale = if complete.is_file() { older(&complete) } else { older(&path) };
        if entry.file_name() != CONTENT_HASH && stale {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
