//! README.md keeps up with the binary: each synopsis it shows
//! (`chat server [--listen ADDR] ...`) names every option that program's
//! `--help` lists, with the same value name, and no option `--help` lacks.
//! The options are read from `--help` itself, so an option added anywhere
//! is checked without touching this test. And the nc walkthrough runs as
//! printed, with the way that needs no nc.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chat::wire::ServerMsg;
use common::{Server, WAIT, chat};
use serde_json::Value;

/// One synopsis in README.md: the words after `chat` up to the first `[`
/// (`server`, `bench fanout`), and the whole text, continuation lines
/// included.
#[derive(Debug)]
struct Synopsis {
    program: Vec<String>,
    text: String,
}

/// Every synopsis in README.md's indented code: a line `chat WORDS [...`
/// and the lines after it that go on with `[`.
fn readme_synopses() -> Vec<Synopsis> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let mut found: Vec<Synopsis> = Vec::new();
    let mut open = false;
    for line in readme.lines() {
        let Some(code) = line.strip_prefix("    ") else {
            open = false;
            continue;
        };
        let code = code.trim();
        if open && code.starts_with('[') {
            let last = found.last_mut().unwrap();
            last.text.push(' ');
            last.text.push_str(code);
            continue;
        }
        open = false;
        let Some(rest) = code.strip_prefix("chat ") else {
            continue;
        };
        let Some((words, _)) = rest.split_once(" [") else {
            continue;
        };
        let program: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        if program
            .iter()
            .all(|w| w.bytes().all(|b| b.is_ascii_lowercase()))
        {
            found.push(Synopsis {
                program,
                text: code.to_owned(),
            });
            open = true;
        }
    }
    found
}

/// The long options `chat PROGRAM --help` lists, with the value name each
/// takes (`("--max-line", Some("BYTES"))`), `--help` and `--version` aside.
fn help_options(program: &[String]) -> Vec<(String, Option<String>)> {
    let out = chat().args(program).arg("--help").output().unwrap();
    assert!(out.status.success(), "chat {program:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut options = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        // `-q, --quiet ...` or `--listen <ADDR> ...`; description lines
        // that wrap never start with a dash.
        let rest = match line.as_bytes() {
            [b'-', b'-', ..] => line,
            [b'-', _, b',', b' ', ..] => &line[4..],
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let Some(long) = words.next().filter(|w| w.starts_with("--")) else {
            continue;
        };
        if long == "--help" || long == "--version" {
            continue;
        }
        let value = words
            .next()
            .and_then(|w| w.strip_prefix('<'))
            .and_then(|w| w.strip_suffix('>'))
            .map(str::to_owned);
        options.push((long.to_owned(), value));
    }
    options
}

/// Whether TEXT has OPTION as a whole word (`--server` is not found in
/// `--server-pid`), followed by ` VALUE` when it takes one.
fn mentions(text: &str, option: &str, value: Option<&str>) -> bool {
    let wanted = match value {
        Some(value) => format!("{option} {value}"),
        None => option.to_owned(),
    };
    text.match_indices(&wanted).any(|(at, _)| {
        !text[at + wanted.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_synopsis_in_the_readme_has_every_option_of_help() {
    let synopses = readme_synopses();
    assert!(
        synopses.iter().any(|s| s.program == ["server"]),
        "the server's synopsis was not found in README.md: {synopses:?}"
    );
    let mut problems = Vec::new();
    for synopsis in &synopses {
        let options = help_options(&synopsis.program);
        assert!(
            options.len() > 1,
            "too few options read from chat {:?} --help: {options:?}",
            synopsis.program
        );
        let program = synopsis.program.join(" ");
        for (long, value) in &options {
            if !mentions(&synopsis.text, long, value.as_deref()) {
                let shown = match value {
                    Some(value) => format!("[{long} {value}]"),
                    None => format!("[{long}]"),
                };
                problems.push(format!("chat {program}: {shown} is missing"));
            }
        }
        for word in synopsis
            .text
            .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        {
            if word.starts_with("--") && !options.iter().any(|(long, _)| long == word) {
                problems.push(format!("chat {program}: {word} is not in --help"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "README.md's synopses and --help differ:\n{}",
        problems.join("\n")
    );
}

/// The indented code of README.md's section TITLE, one string per line.
fn section_code(title: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("no section {title:?} in README.md"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::to_owned)
        .collect()
}

/// A protocol line with the fields that differ from run to run (times)
/// taken out.
fn without_times(line: &str) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("ts");
                map.remove("since");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
    strip(&mut v);
    v
}

/// "Talk to it with nc" works as printed on a machine without nc: its bash
/// line, pointed at a fresh server, gets exactly the server's lines of the
/// transcript (times aside) when fed the lines the reader types, and ends
/// quietly when its input does.
#[test]
fn the_nc_walkthrough_works_without_nc() {
    let code = section_code("Talk to it with nc");
    let bash_line = code
        .iter()
        .find(|l| l.starts_with("bash -c"))
        .expect("a way without nc, `bash -c ...`, in \"Talk to it with nc\"");
    let transcript: Vec<&String> = code
        .iter()
        .skip_while(|l| !l.starts_with("$ nc "))
        .skip(1)
        .filter(|l| l.starts_with('{'))
        .collect();
    assert!(transcript.len() > 5, "no transcript: {code:?}");
    let (from_server, typed): (Vec<&String>, Vec<&String>) =
        transcript.into_iter().partition(|l| {
            // A client's message reads, to a client, as a type it does
            // not know (or not at all).
            ServerMsg::decode(l.as_bytes()).is_ok_and(|m| m != ServerMsg::Unknown)
        });

    let server = Server::start(&[]);
    let line = bash_line.replace(
        "127.0.0.1/8888",
        &format!("127.0.0.1/{}", server.addr.port()),
    );
    let mut child = Command::new("sh")
        .args(["-c", &line])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    let mut stdin = child.stdin.take().unwrap();
    for l in &typed {
        writeln!(stdin, "{l}").unwrap();
    }
    // Every answer, then the end of the input (Ctrl-D).
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut got = Vec::new();
    while got.len() < from_server.len() {
        match rx.recv_timeout(WAIT) {
            Ok(line) => got.push(line),
            Err(_) => break,
        }
    }
    drop(stdin);
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{line} did not end with its input");
        }
        std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want: Vec<Value> = from_server.iter().map(|l| without_times(l)).collect();
    let got: Vec<Value> = got.iter().map(|l| without_times(l)).collect();
    assert_eq!(got, want, "typed: {typed:?}\nstderr: {stderr}");
    assert!(
        out.status.success() && stderr.is_empty(),
        "{}: {stderr}",
        out.status
    );
}

/// The oldest Rust README.md asks for is Cargo.toml's `rust-version`, which
/// cargo enforces (and `.ci/run` builds with).
#[test]
fn the_readme_asks_for_the_rust_cargo_toml_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml has a rust-version");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let readme = readme.replace('\n', " ");
    assert!(
        readme.contains(&format!("Rust toolchain, {msrv} or later"))
            && readme.contains(&format!("Rust {msrv} or later")),
        "README.md should ask for Rust {msrv} or later, as Cargo.toml does"
    );
}
