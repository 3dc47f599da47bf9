//! Installing `chat` as a person would: the completion scripts know every
//! command and option and load in their shells, `--install-links` makes the
//! busybox links (and never replaces someone else's file), and `--version`
//! names the commit.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use chat::cli::Cli;
use clap::CommandFactory;
use common::{TempDir, chat, chat_bin, output_within};

const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

fn stdout_of(cmd: &mut Command) -> String {
    let out = output_within(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn completions(shell: &str) -> String {
    stdout_of(chat().args(["completions", shell]))
}

/// Every subcommand name and every long option of CMD, recursively.
fn walk(cmd: &clap::Command, names: &mut Vec<String>, longs: &mut Vec<String>) {
    longs.extend(
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(String::from)),
    );
    for sub in cmd.get_subcommands() {
        names.push(sub.get_name().to_string());
        walk(sub, names, longs);
    }
}

#[test]
fn every_completion_script_knows_every_command_and_option() {
    let (mut names, mut longs) = (Vec::new(), Vec::new());
    walk(&Cli::command(), &mut names, &mut longs);
    for expected in ["completions", "fanout", "server"] {
        assert!(
            names.iter().any(|n| n == expected),
            "walk missed {expected}"
        );
    }
    assert!(
        longs.iter().any(|l| l == "max-queue"),
        "walk missed --max-queue"
    );

    for shell in SHELLS {
        let script = completions(shell);
        assert!(script.lines().count() > 20, "{shell} script:\n{script}");
        let missing_names: Vec<&String> = names
            .iter()
            .filter(|n| !script.contains(n.as_str()))
            .collect();
        assert!(missing_names.is_empty(), "{shell} lacks {missing_names:?}");
        // fish spells a long option `-l max-queue`; bash and zsh `--max-queue`.
        let missing_options: Vec<&String> = longs
            .iter()
            .filter(|l| match shell {
                "fish" => !script.contains(&format!("-l {l}")),
                _ => !script.contains(&format!("--{l}")),
            })
            .collect();
        assert!(
            missing_options.is_empty(),
            "{shell} lacks {missing_options:?}"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = output_within(chat().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash, zsh, fish"), "{stderr}");
}

/// Runs SCRIPT in SHELL with the completion script for SHELL saved at
/// `$COMPLETIONS` (under the name that shell looks for, as README.md says);
/// `None` (with a note) when the shell is not installed.
fn in_shell(shell: &str, flag: &str, script: &str) -> Option<String> {
    let dir = TempDir::new("completions");
    let file = dir.path.join(match shell {
        "zsh" => "_chat",
        "fish" => "chat.fish",
        _ => "chat",
    });
    fs::write(&file, completions(shell)).unwrap();
    let out = match Command::new(shell)
        .env("COMPLETIONS", &file)
        .args([flag, script])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("note: {shell} is not installed ({e}); its check is skipped");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{shell} {flag} {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn bash_completes_commands_options_and_shells() {
    let complete = |words: &str| {
        // What bash would do on Tab after WORDS (the last one being typed).
        let script = format!(
            r#"source "$COMPLETIONS"
            COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
            _chat chat "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
            printf '%s\n' "${{COMPREPLY[@]}}""#
        );
        in_shell("bash", "-c", &script).unwrap()
    };
    let replies = complete("chat server --max-q");
    assert_eq!(replies.trim(), "--max-queue");
    let replies = complete("chat ''");
    for command in ["server", "client", "bot", "bench", "completions"] {
        assert!(replies.lines().any(|l| l == command), "{replies}");
    }
    let replies = complete("chat completions ''");
    for shell in SHELLS {
        assert!(replies.lines().any(|l| l == shell), "{replies}");
    }
}

#[test]
fn fish_completes_a_server_option() {
    let Some(replies) = in_shell(
        "fish",
        "-c",
        r#"source $COMPLETIONS; complete -C "chat server --max-q""#,
    ) else {
        return;
    };
    assert!(replies.starts_with("--max-queue\t"), "{replies}");
}

#[test]
fn zsh_loads_the_script_for_chat() {
    // Found in $fpath by compinit and loaded as zsh would on the first Tab
    // (driving zsh's completion itself needs a terminal).
    let script = r#"fpath=("${COMPLETIONS:h}" $fpath)
        autoload -Uz compinit && compinit -u -D
        autoload +X _chat
        print -r -- "${_comps[chat]}"
        functions _chat"#;
    let Some(out) = in_shell("zsh", "-fc", script) else {
        return;
    };
    assert!(out.starts_with("_chat\n"), "{out}");
    assert!(out.contains("--max-queue"), "{out}");
}

/// (device, inode): the file a path ends at, links followed.
fn id(path: &Path) -> (u64, u64) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.dev(), meta.ino())
}

const LINKS: [&str; 4] = ["chat-server", "chat-client", "chat-bot", "chat-bench"];

#[test]
fn install_links_makes_the_links_and_each_runs_its_program() {
    let dir = TempDir::new("links");
    let printed = stdout_of(chat().arg("--install-links").arg(&dir.path));

    let chat_link = dir.path.join("chat");
    assert!(fs::read_link(&chat_link).unwrap().is_absolute());
    assert_eq!(id(&chat_link), id(&chat_bin()));
    for name in LINKS {
        let link = dir.path.join(name);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("chat"), "{name}");
        assert_eq!(id(&link), id(&chat_bin()), "{name}");
        assert!(
            printed.contains(&format!("{} -> chat", link.display())),
            "{printed}"
        );
    }

    let help = stdout_of(Command::new(dir.path.join("chat-server")).arg("--help"));
    assert!(
        help.contains("--max-queue"),
        "not the server's help:\n{help}"
    );
    let help = stdout_of(Command::new(dir.path.join("chat-bench")).arg("--help"));
    assert!(help.contains("fanout"), "not the bench's help:\n{help}");
}

#[test]
fn install_links_twice_changes_nothing_the_second_time() {
    let dir = TempDir::new("links-twice");
    stdout_of(chat().arg("--install-links").arg(&dir.path));
    let before: Vec<_> = LINKS.iter().map(|n| id(&dir.path.join(n))).collect();
    let printed = stdout_of(chat().arg("--install-links").arg(&dir.path));
    assert_eq!(printed, "", "the second run made links again");
    let after: Vec<_> = LINKS.iter().map(|n| id(&dir.path.join(n))).collect();
    assert_eq!(before, after);
}

#[test]
fn install_links_beside_a_link_named_chat_keeps_it() {
    // The usual layout: `chat` already installed in DIR (here a link to the
    // binary under test), then `chat --install-links DIR` from there.
    let dir = TempDir::new("links-beside");
    let chat_link = dir.path.join("chat");
    std::os::unix::fs::symlink(chat_bin(), &chat_link).unwrap();
    let printed = stdout_of(
        Command::new(&chat_link)
            .arg("--install-links")
            .arg(&dir.path),
    );
    assert_eq!(printed.lines().count(), 4, "{printed}");
    assert_eq!(fs::read_link(&chat_link).unwrap(), chat_bin());
    for name in LINKS {
        assert_eq!(id(&dir.path.join(name)), id(&chat_bin()), "{name}");
    }
}

#[test]
fn install_links_never_replaces_another_file_and_then_makes_nothing() {
    let dir = TempDir::new("links-taken");
    let theirs = dir.path.join("chat-client");
    fs::write(&theirs, "#!/bin/sh\necho another chat-client\n").unwrap();

    let out = output_within(chat().arg("--install-links").arg(&dir.path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&theirs.display().to_string()), "{stderr}");
    assert_eq!(
        fs::read_to_string(&theirs).unwrap(),
        "#!/bin/sh\necho another chat-client\n"
    );
    let left: Vec<_> = fs::read_dir(&dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["chat-client"], "links were made despite the refusal");
}

#[test]
fn install_links_into_a_missing_directory_fails() {
    let dir = TempDir::new("links-missing");
    let out = output_within(chat().arg("--install-links").arg(dir.path.join("nope")));
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path.join("nope").exists());
}

#[test]
fn install_links_with_a_command_is_a_usage_error() {
    let dir = TempDir::new("links-and-command");
    let out = output_within(chat().arg("--install-links").arg(&dir.path).arg("server"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read_dir(&dir.path).unwrap().count(), 0);
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let version = stdout_of(chat().arg("--version"));
    let expected = match option_env!("CHAT_GIT_COMMIT") {
        Some(commit) => format!("chat {} ({commit})\n", env!("CARGO_PKG_VERSION")),
        None => format!("chat {}\n", env!("CARGO_PKG_VERSION")),
    };
    assert_eq!(version, expected);

    // In a git checkout with git at hand, build.rs must have found the commit.
    let root = env!("CARGO_MANIFEST_DIR");
    let head = Command::new("git")
        .args(["-C", root, "rev-parse", "--short", "HEAD"])
        .output();
    match head {
        Ok(out) if out.status.success() && Path::new(root).join(".git").exists() => {
            let head = String::from_utf8(out.stdout).unwrap();
            assert_eq!(option_env!("CHAT_GIT_COMMIT"), Some(head.trim()));
        }
        _ => println!("note: not a git checkout; the version carries no commit"),
    }
}

/// The values of KEY= in the unit file, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_file_asks_for_the_usual_hardening() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/chat-server.service");
    let unit = fs::read_to_string(path).unwrap();
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "chat"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("Restart", "on-failure"),
        ("LimitNOFILE", "65536"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6"),
    ] {
        assert_eq!(unit_values(&unit, key), [value], "{key}=");
    }
}

/// Until the protocol has TLS, a unit that listens beyond loopback comes
/// with a warning that everything crosses the network in clear: in the unit
/// itself, in README's "Running as a service" and in the man page.
#[test]
fn a_unit_that_listens_on_the_network_warns_that_nothing_is_encrypted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| fs::read_to_string(root.join(file)).unwrap();
    let unit = read("contrib/chat-server.service");
    let exec_start = unit_values(&unit, "ExecStart");
    let listen = exec_start[0]
        .split_whitespace()
        .skip_while(|w| *w != "--listen")
        .nth(1)
        .expect("ExecStart has no --listen");
    let addr: std::net::SocketAddr = listen.parse().expect("--listen ADDR");
    if addr.ip().is_loopback() {
        return;
    }
    let readme = read("README.md");
    let service = readme
        .split("\n## ")
        .find(|s| s.starts_with("Running as a service"))
        .expect("README.md has a section \"Running as a service\"");
    let man = read("man/chat.1");
    let installation = man
        .split("\n.SH ")
        .find(|s| s.starts_with("INSTALLATION"))
        .expect("man/chat.1 has INSTALLATION");
    for (what, text) in [
        ("contrib/chat-server.service", unit.as_str()),
        ("README.md, Running as a service", service),
        ("man/chat.1, INSTALLATION", installation),
    ] {
        let text = text.to_lowercase().replace("\n# ", " ").replace('\n', " ");
        assert!(
            text.contains("nothing is encrypted") && text.contains("in clear"),
            "{what} does not warn that the unit ({listen}) sends everything unencrypted"
        );
    }
}

/// What systemd would run, from the unit file: ExecStart with the address
/// made 127.0.0.1:0 and the log moved from the state directory into DIR,
/// then ExecReload after a log rotation, then `systemctl stop` (SIGTERM).
#[test]
fn the_unit_files_commands_start_reload_and_stop_the_server() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/chat-server.service");
    let unit = fs::read_to_string(path).unwrap();
    let dir = TempDir::new("unit");
    let state_dir = format!("/var/lib/{}/", unit_values(&unit, "StateDirectory")[0]);

    let exec_start = unit_values(&unit, "ExecStart");
    let mut words = exec_start[0].split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/chat"), "{exec_start:?}");
    let mut args: Vec<String> = words.map(String::from).collect();
    let mut log = None;
    for i in 1..args.len() {
        match args[i - 1].as_str() {
            "--listen" => args[i] = "127.0.0.1:0".into(),
            "--log" => {
                let file = args[i]
                    .strip_prefix(&state_dir)
                    .unwrap_or_else(|| panic!("the log {} is not under {state_dir}", args[i]));
                let moved = dir.path.join(file);
                args[i] = moved.display().to_string();
                log = Some(moved);
            }
            "--db" => {
                let file = args[i]
                    .strip_prefix(&state_dir)
                    .unwrap_or_else(|| panic!("the database {} is not under {state_dir}", args[i]));
                args[i] = dir.path.join(file).display().to_string();
            }
            _ => {}
        }
    }
    let log = log.expect("ExecStart has no --log");
    let mut server =
        common::Server::start_with(chat().args(&args).stderr(std::process::Stdio::null()));
    let mut alice = server.join("alice");
    alice.sync();

    // logrotate moves the file, then `systemctl reload` runs ExecReload.
    let rotated = dir.path.join("rotated.log");
    fs::rename(&log, &rotated).unwrap();
    let reload = unit_values(&unit, "ExecReload")[0].replace("$MAINPID", &server.pid().to_string());
    let mut words = reload.split_whitespace();
    let status = Command::new(words.next().unwrap())
        .args(words)
        .status()
        .unwrap();
    assert!(status.success(), "{reload}: {status}");
    // The reopen happens in the server's loop; a round trip after a new
    // connection's welcome shows it has run past the signal.
    let mut bob = server.join("bob");
    bob.sync();
    let reopened = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        reopened.contains("\"bob\""),
        "new log after reload: {reopened:?}"
    );
    assert!(fs::read_to_string(&rotated).unwrap().contains("\"alice\""));

    let status = server.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "after SIGTERM: {status}");
    assert_eq!(alice.recv_type("bye")["reason"], "shutdown");
}
