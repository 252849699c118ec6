//! Replacing a file atomically: what a user file edited through the API and
//! the uploads' journal need, so that a crash leaves the old file or the new.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `text` so that a reader (or a crash) sees the old file
/// or the new one, never a mix: the text goes to a temporary file in the same
/// directory (a dot file, so that a loader reading `*.toml` skips it),
/// is flushed to disk, renamed over `path`, and the directory entry is flushed
/// too. The file's permissions are kept (a user file holds keys).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{:x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
