//! Embeds what the binary needs at run time besides itself - the built-in tables (`suites/`), the
//! offline toolchain, CNI and faults (`fixtures/`) and the workspace that `prepare` builds the probe
//! from - so that an installed or copied binary works without its checkout (`src/embedded.rs`
//! unpacks them into the cache). Written as a list of `include_bytes!`, keyed by a content hash.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Paths relative to the checkout; a directory brings everything under it but hidden files and
/// build output.
const EMBEDDED: &[&str] = &["Cargo.toml", "Cargo.lock", "build.rs", "src", "harness", "reports", "probe", "suites", "fixtures"];

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    for path in EMBEDDED {
        // A directory is scanned whole for changes, so an added table re-runs this script.
        println!("cargo:rerun-if-changed={path}");
        collect(&root, &root.join(path), &mut files);
    }
    files.sort();
    // FNV-1a over names, modes and contents: a stable key for the unpacked copy.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut list = String::new();
    for (relative, executable) in &files {
        let content = std::fs::read(root.join(relative)).unwrap_or_default();
        for byte in relative.as_bytes().iter().chain([u8::from(*executable)].iter()).chain(content.iter()) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let absolute = root.join(relative);
        let _ = writeln!(list, "    ({relative:?}, include_bytes!({:?}), {executable}),", absolute.display().to_string());
    }
    let generated = format!(
        "/// (path in the checkout, content, executable) of every embedded file.\npub static FILES: &[(&str, &[u8], bool)] = &[\n{list}];\n\
         /// A hash of `FILES`: the unpacked copy's directory name.\npub const CONTENT_HASH: &str = \"{hash:016x}\";\n"
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, generated) {
        println!("cargo:warning=writing {}: {e}", out.display());
        std::process::exit(1);
    }
}

fn collect(root: &Path, path: &Path, files: &mut Vec<(String, bool)>) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.starts_with('.') || name == "target" {
        return;
    }
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            collect(root, &entry.path(), files);
        }
    } else if let (Ok(relative), Ok(meta)) = (path.strip_prefix(root), std::fs::metadata(path)) {
        use std::os::unix::fs::PermissionsExt;
        files.push((relative.to_string_lossy().into_owned(), meta.permissions().mode() & 0o111 != 0));
    }
}
