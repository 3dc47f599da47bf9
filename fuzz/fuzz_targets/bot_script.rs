//! The bot-script parser (`chat::bot::script::parse`) on any file.
//!
//! Checked: nothing panics; every error is one line `FILE:LINE: what`, its
//! LINE within the file, in line order, and free of characters a terminal
//! would act on; a script that parses has its steps in file order, each
//! on a line of the file, and refers only to actors it lists.

#![no_main]

use chat::bot::script::{self, Action};
use chat::wire::check_nick;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.chat";

fuzz_target!(|data: &[u8]| {
    // As many lines as `parse` sees: a last line without `\n` counts.
    let lines = data.split(|&b| b == b'\n').count();
    match script::parse(NAME, data, "bot") {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            let mut last = 0;
            for error in &errors {
                let rest = error.strip_prefix("fuzz.chat:").expect("names the file");
                let (number, what) = rest.split_once(": ").expect("FILE:LINE: what");
                let number: usize = number.parse().expect("a line number");
                assert!((1..=lines).contains(&number), "line {number} of {lines}");
                assert!(number >= last, "out of order: {errors:?}");
                last = number;
                assert!(!what.is_empty());
                assert!(
                    !error.contains(|c: char| c.is_control() && c != '\t'),
                    "{error:?}"
                );
            }
        }
        Ok(s) => {
            assert_eq!(s.name, NAME);
            let mut last = 0;
            for step in &s.steps {
                assert!(
                    (1..=lines).contains(&step.line),
                    "line {} of {lines}",
                    step.line
                );
                assert!(step.line > last, "steps out of order");
                last = step.line;
                match (&step.action, step.actor) {
                    (Action::Sleep(_), actor) => assert_eq!(actor, None),
                    (_, Some(actor)) => assert!(actor < s.actors.len()),
                    (action, None) => panic!("{action:?} without an actor"),
                }
                if let Action::Nick { new, .. } = &step.action {
                    assert!(check_nick(new).is_ok(), "{new:?}");
                }
            }
            for actor in &s.actors {
                assert!((1..=lines).contains(&actor.line));
                assert!(check_nick(&actor.name).is_ok(), "{:?}", actor.name);
                let first = s
                    .steps
                    .iter()
                    .find(|st| st.actor.is_some_and(|a| std::ptr::eq(&s.actors[a], actor)));
                let first = first.expect("an actor without a step");
                assert_eq!(first.line, actor.line);
                assert_eq!(actor.late, first.action == Action::Connect);
            }
        }
    }
});
