//! The `chat` command line as a user meets it: help and version succeed,
//! mistakes are one line and exit 2, and a link named `chat-server` runs the
//! server (busybox-style dispatch).

mod common;

use std::process::Command;

use common::{Server, TempDir, chat, chat_bin, output_within};

fn stdout_of(args: &[&str]) -> String {
    let out = output_within(chat().args(args));
    assert!(
        out.status.success(),
        "chat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts exit status 2 and exactly one line on stderr.
fn assert_usage_error(args: &[&str]) -> String {
    let out = output_within(chat().args(args));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "chat {args:?}: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "chat {args:?}: {stderr:?}");
    stderr
}

#[test]
fn help_lists_every_command() {
    let help = stdout_of(&["--help"]);
    for command in ["server", "client", "bot", "bench"] {
        assert!(help.contains(command), "no {command} in:\n{help}");
    }
}

#[test]
fn version_names_the_program_and_its_version() {
    // The commit that may follow is checked in tests/install.rs.
    let version = stdout_of(&["--version"]);
    assert!(
        version.starts_with(&format!("chat {}", env!("CARGO_PKG_VERSION"))),
        "{version:?}"
    );
}

#[test]
fn server_help_lists_the_server_options() {
    let help = stdout_of(&["server", "--help"]);
    for option in [
        "--listen",
        "--max-line",
        "--max-queue",
        "--max-clients",
        "--welcome",
        "--log",
        "--quiet",
    ] {
        assert!(help.contains(option), "no {option} in:\n{help}");
    }
}

#[test]
fn an_unknown_option_is_one_line_and_exit_2() {
    let stderr = assert_usage_error(&["--frobnicate"]);
    assert!(stderr.contains("--frobnicate"), "{stderr:?}");
    let stderr = assert_usage_error(&["server", "--frobnicate"]);
    assert!(stderr.contains("--frobnicate"), "{stderr:?}");
}

#[test]
fn a_bad_option_value_is_exit_2() {
    assert_usage_error(&["server", "--max-line", "lots"]);
    assert_usage_error(&["server", "--max-clients", "-3"]);
}

#[test]
fn no_command_is_exit_2() {
    let out = output_within(&mut chat());
    assert_eq!(out.status.code(), Some(2));
    let out = output_within(chat().arg("dance"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_link_named_chat_server_runs_the_server() {
    let dir = TempDir::new("busybox");
    let link = dir.path.join("chat-server");
    std::os::unix::fs::symlink(chat_bin(), &link).unwrap();

    let server = Server::start_with(Command::new(&link).env("CHAT_DB", "none").args([
        "--listen",
        "127.0.0.1:0",
        "--quiet",
    ]));
    let welcome = server.connect().recv();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    drop(server);

    let out = output_within(Command::new(&link).arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("--max-queue") && help.contains("--listen"),
        "not the server's help:\n{help}"
    );
}
