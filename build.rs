//! Build script: records the git commit the binary is built from, for
//! `chat --version`.
//!
//! It sets `CHAT_GIT_COMMIT` only when the source is a git checkout of this
//! project and git runs; built from a release tarball, or without git, it sets
//! nothing and `--version` prints the version alone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Without any rerun-if line cargo would rerun this on every source change.
    println!("cargo:rerun-if-changed=build.rs");
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return;
    };
    // A tarball unpacked inside another git repository (a home directory kept
    // in git) must not take that repository's commit for its own.
    let Some(top) = git(&dir, &["rev-parse", "--show-toplevel"]) else {
        return;
    };
    if !same_dir(Path::new(&top), &dir) {
        return;
    }
    let Some(commit) = git(&dir, &["rev-parse", "--short", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=CHAT_GIT_COMMIT={commit}");

    // Stay fresh when HEAD moves: HEAD changes on a checkout, the branch's ref
    // on a commit. In a worktree they live in different directories, so git
    // says where; a ref that is only packed gets its loose file on the next
    // commit, which shows as a change in the ref's directory.
    let mut watched = Vec::new();
    watched.extend(git(&dir, &["rev-parse", "--git-path", "HEAD"]));
    watched.extend(git(&dir, &["rev-parse", "--git-path", "packed-refs"]));
    if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&dir, &["rev-parse", "--git-path", &branch])
    {
        let path = dir.join(path);
        match path.parent() {
            Some(parent) if !path.exists() => watched.push(parent.display().to_string()),
            _ => watched.push(path.display().to_string()),
        }
    }
    for path in watched {
        // A path that does not exist would make cargo rerun this every build.
        if dir.join(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// What `git ARGS` prints in DIR, trimmed; `None` when git is missing, fails
/// or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
