//! The man page keeps up with the code: every long option of every
//! (sub)command appears in `man/chat.1`, and groff reads the page without a
//! warning.

use std::path::Path;
use std::process::Command;

use chat::cli::Cli;
use clap::CommandFactory;

/// The page's source with roff's escaped dashes (`\-`) read as plain ones,
/// so `\-\-max\-line` and `--max-line` both count as mentioning the option.
fn man_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/chat.1");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("\\-", "-")
}

/// Every (path, long option) of CMD and its subcommands, recursively.
fn long_options(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.push((path.to_string(), long.to_string()));
        }
    }
    for sub in cmd.get_subcommands() {
        long_options(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// Whether PAGE has OPTION as a whole word (`--server` is not found in
/// `--server-pid`).
fn mentions(page: &str, option: &str) -> bool {
    page.match_indices(option).any(|(at, _)| {
        !page[at + option.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_long_option_is_in_the_man_page() {
    let page = man_page();
    let mut options = Vec::new();
    long_options(&Cli::command(), "chat", &mut options);
    assert!(
        options.len() > 10,
        "the walk found too few options: {options:?}"
    );
    let missing: Vec<String> = options
        .iter()
        .filter(|(_, long)| !mentions(&page, &format!("--{long}")))
        .map(|(path, long)| format!("{path} --{long}"))
        .collect();
    assert!(missing.is_empty(), "not in man/chat.1: {missing:?}");
}

#[test]
fn every_subcommand_is_in_the_man_page() {
    let page = man_page();
    let mut names = Vec::new();
    let mut stack = vec![Cli::command()];
    while let Some(cmd) = stack.pop() {
        for sub in cmd.get_subcommands() {
            names.push(sub.get_name().to_string());
            stack.push(sub.clone());
        }
    }
    assert!(
        names.iter().any(|n| n == "fanout"),
        "the walk missed bench's modes: {names:?}"
    );
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !page.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in man/chat.1: {missing:?}");
}

#[test]
fn groff_reads_the_man_page_without_warnings() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/chat.1");
    let out = match Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("note: groff is not installed ({e}); man page lint skipped");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert_eq!(stderr, "", "groff warnings for man/chat.1");
}
