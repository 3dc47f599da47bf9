//! `chat --install-links DIR`: the busybox links that let each program run
//! by its own name (`chat-server --listen ...`), made the way `ln -s` would,
//! without ever replacing a file that is not one of ours.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::cli::PROGRAMS;
use crate::fail::{Fail, Outcome};

/// One symbolic link to make: PATH pointing at TARGET.
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// Makes DIR/chat (unless this binary is already there under that name) and
/// DIR/chat-PROGRAM for each program, pointing at `chat`; prints a line per
/// link made. All or nothing: if any of those names is taken by a file that
/// is not this binary or a link to it, nothing is changed and it fails with
/// exit status 1.
pub fn run(dir: &Path) -> Outcome {
    let exe = std::env::current_exe()
        .map_err(|e| Fail::runtime(format!("cannot tell where this binary is: {e}")))?;
    let links = plan(dir, &exe)?;
    let mut out = std::io::stdout().lock();
    for link in &links {
        symlink(&link.target, &link.path)
            .map_err(|e| Fail::runtime(format!("cannot create {}: {e}", link.path.display())))?;
        // Reporting is a courtesy: a closed stdout does not undo the link.
        let _ = writeln!(out, "{} -> {}", link.path.display(), link.target.display());
    }
    Ok(())
}

/// The links DIR still needs for the binary EXE, or why it cannot have them.
pub fn plan(dir: &Path, exe: &Path) -> Result<Vec<Link>, Fail> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Fail::runtime(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Fail::runtime(format!(
                "{} does not exist; create it first",
                dir.display()
            )));
        }
        Err(e) => return Err(Fail::runtime(format!("cannot read {}: {e}", dir.display()))),
    }
    let exe_id =
        file_id(exe).map_err(|e| Fail::runtime(format!("cannot read {}: {e}", exe.display())))?;

    // The binary beside its links, as `chat`: a relative link when it already
    // lives in DIR under another name, so the directory can move as a whole.
    let exe_target = match (exe.parent(), exe.file_name()) {
        (Some(parent), Some(name)) if is_same_dir(parent, dir) => PathBuf::from(name),
        _ => exe.to_path_buf(),
    };
    let mut wanted = vec![Link {
        path: dir.join("chat"),
        target: exe_target,
    }];
    wanted.extend(PROGRAMS.iter().map(|program| Link {
        path: dir.join(format!("chat-{program}")),
        target: PathBuf::from("chat"),
    }));

    let mut links = Vec::new();
    let mut in_the_way = Vec::new();
    for link in wanted {
        match fs::symlink_metadata(&link.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => links.push(link),
            Err(e) => {
                return Err(Fail::runtime(format!(
                    "cannot read {}: {e}",
                    link.path.display()
                )));
            }
            // Ours already: this binary, a link to it, or a hard link.
            Ok(_) if file_id(&link.path).ok() == Some(exe_id) => {}
            Ok(_) => in_the_way.push(link.path.display().to_string()),
        }
    }
    if !in_the_way.is_empty() {
        return Err(Fail::runtime(format!(
            "not replacing {}: not this binary nor a link to it; nothing was changed",
            in_the_way.join(", ")
        )));
    }
    Ok(links)
}

/// What makes two paths the same file (links followed).
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

fn is_same_dir(a: &Path, b: &Path) -> bool {
    matches!((file_id(a), file_id(b)), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory with a stand-in binary, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("chat-install-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin")).unwrap();
            fs::create_dir_all(dir.join("elsewhere")).unwrap();
            fs::write(dir.join("elsewhere/chat"), "binary").unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(links: &[Link]) -> Vec<String> {
        links
            .iter()
            .map(|l| l.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_binary_elsewhere_gets_an_absolute_link_and_the_programs_relative_ones() {
        let s = Scratch::new("elsewhere");
        let exe = s.0.join("elsewhere/chat");
        let links = plan(&s.0.join("bin"), &exe).unwrap();
        assert_eq!(
            names(&links),
            [
                "chat",
                "chat-server",
                "chat-client",
                "chat-bot",
                "chat-bench"
            ]
        );
        assert_eq!(links[0].target, exe);
        assert!(links[1..].iter().all(|l| l.target == Path::new("chat")));
    }

    #[test]
    fn a_binary_in_the_directory_is_not_linked_again() {
        let s = Scratch::new("inplace");
        let exe = s.0.join("elsewhere/chat");
        let links = plan(&s.0.join("elsewhere"), &exe).unwrap();
        assert_eq!(
            names(&links),
            ["chat-server", "chat-client", "chat-bot", "chat-bench"]
        );
    }

    #[test]
    fn a_binary_in_the_directory_under_another_name_is_linked_relatively() {
        let s = Scratch::new("renamed");
        fs::rename(s.0.join("elsewhere/chat"), s.0.join("bin/chat-0.1")).unwrap();
        let links = plan(&s.0.join("bin"), &s.0.join("bin/chat-0.1")).unwrap();
        assert_eq!(links[0].path, s.0.join("bin/chat"));
        assert_eq!(links[0].target, Path::new("chat-0.1"));
    }

    #[test]
    fn another_file_or_a_dangling_link_is_in_the_way() {
        let s = Scratch::new("taken");
        let exe = s.0.join("elsewhere/chat");
        fs::write(s.0.join("bin/chat-bot"), "someone else's").unwrap();
        symlink("/nonexistent/chat", s.0.join("bin/chat-bench")).unwrap();
        let fail = plan(&s.0.join("bin"), &exe).unwrap_err();
        assert_eq!(fail.status, crate::fail::FAILURE);
        assert!(
            fail.message.contains("chat-bot") && fail.message.contains("chat-bench"),
            "{}",
            fail.message
        );
        assert!(!fail.message.contains("chat-server"), "{}", fail.message);
    }

    #[test]
    fn a_missing_directory_is_refused() {
        let s = Scratch::new("missing");
        let fail = plan(&s.0.join("nope"), &s.0.join("elsewhere/chat")).unwrap_err();
        assert!(fail.message.contains("does not exist"), "{}", fail.message);
    }
}
