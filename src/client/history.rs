//! Where typed lines are remembered between sessions, and making sure the
//! file is private before anything is written to it.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Lines kept; older ones are dropped from the file.
pub const MAX_LINES: usize = 1000;

/// `--history FILE`, else `$XDG_DATA_HOME/chat/history`, else
/// `$HOME/.local/share/chat/history`; `None` when there is no home at all.
/// Relative `XDG_DATA_HOME` values are ignored, as the XDG spec says.
pub fn path(
    given: Option<&Path>,
    xdg_data_home: Option<&str>,
    home: Option<&str>,
) -> Option<PathBuf> {
    if let Some(given) = given {
        return Some(given.to_owned());
    }
    let data = match xdg_data_home.filter(|d| d.starts_with('/')) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(home.filter(|h| !h.is_empty())?).join(".local/share"),
    };
    Some(data.join("chat/history"))
}

/// Creates the file's directory (mode 0700) and the file itself (mode
/// 0600) if they are missing. rustyline then keeps the mode when it
/// rewrites the file.
pub fn prepare(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_then_xdg_then_home() {
        let given = Path::new("/tmp/h");
        assert_eq!(
            path(Some(given), Some("/x"), Some("/home/u")).unwrap(),
            given
        );
        assert_eq!(
            path(None, Some("/x"), Some("/home/u")).unwrap(),
            Path::new("/x/chat/history")
        );
        assert_eq!(
            path(None, None, Some("/home/u")).unwrap(),
            Path::new("/home/u/.local/share/chat/history")
        );
        assert_eq!(
            path(None, Some("relative"), Some("/home/u")).unwrap(),
            Path::new("/home/u/.local/share/chat/history")
        );
        assert_eq!(path(None, None, None), None);
    }

    #[test]
    fn the_file_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("chat-history-test-{}", std::process::id()));
        let file = dir.join("deeper/history");
        prepare(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        prepare(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
