//! What the bot's transcript adds to the human format of [`crate::render`]:
//! the actor before every line, and the `ok:` line of an `expect` that
//! held.

use crate::render::{Renderer, Tint, sanitize};

/// `@alice LINE`: a line of the transcript seen by, or done by, `actor`.
pub fn by(actor: &str, line: &str) -> String {
    format!("@{} {line}", sanitize(actor))
}

/// `ok: group from alice "hi*"`: an expectation that held.
pub fn verdict(render: &Renderer, expectation: &str) -> String {
    render.tint(Tint::Green, &format!("ok: {}", sanitize(expectation)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Style;

    #[test]
    fn the_actor_and_the_verdict() {
        let plain = Renderer {
            style: Style::Plain,
        };
        assert_eq!(by("bob", "<alice> hi"), "@bob <alice> hi");
        assert_eq!(by("b\x1b[2Jb", "x"), "@b\\x1b[2Jb x");
        assert_eq!(verdict(&plain, "join carol"), "ok: join carol");
        let colour = Renderer {
            style: Style::Colour,
        };
        assert_eq!(
            verdict(&colour, "join carol"),
            "\x1b[32mok: join carol\x1b[0m"
        );
    }
}
