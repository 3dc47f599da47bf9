//! What the bot's transcript adds to the human format of [`crate::render`]:
//! the actor before every line, and the `ok:` line of an `expect` that
//! held. Received messages are shown by `Renderer::received_in`, with the
//! default room as the current one, and arrivals folded by
//! [`crate::arrivals`], as the client does.

use crate::render::{Renderer, Tint, sanitize};
use crate::wire::ClientMsg;

/// A message the actor sent, as the client shows it; `None` for those
/// that show nothing until the server answers.
pub fn sent(
    render: &Renderer,
    msg: &ClientMsg<'_>,
    me: &str,
    home: Option<&str>,
) -> Option<String> {
    let line = render.sent(msg, me)?;
    Some(match msg {
        ClientMsg::Group {
            room: Some(room), ..
        } if !home.is_some_and(|h| crate::names::same(h, room)) => {
            format!("{} {line}", render.room_mark(room))
        }
        _ => line,
    })
}

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
    use crate::render::{Me, Style};
    use crate::wire::ServerMsg;
    use crate::wire::samples::{group, join};

    #[test]
    fn actions_show_as_a_star_and_the_doer() {
        let plain = Renderer {
            style: Style::Plain,
        };
        let me = Me {
            id: Some(2),
            nick: "bob",
        };
        let waved = ServerMsg::Group {
            from: "alice".into(),
            text: "waves".into(),
            ts: 1,
            room: None,
            seq: 0,
            action: true,
        };
        assert_eq!(
            plain.received_in(&waved, me, None).as_deref(),
            Some("* alice waves")
        );
        assert_eq!(
            plain.received_in(&group("alice"), me, None).as_deref(),
            Some("<alice> hi")
        );
        let wave = ClientMsg::Group {
            room: None,
            text: "waves back".into(),
            action: true,
        };
        assert_eq!(
            sent(&plain, &wave, "bob", None).as_deref(),
            Some("* bob waves back")
        );
    }

    #[test]
    fn lines_from_another_room_name_it() {
        let plain = Renderer {
            style: Style::Plain,
        };
        let me = Me {
            id: Some(2),
            nick: "bob",
        };
        let lobby = Some("lobby");
        let mut said = group("alice");
        let mut waved = group("alice");
        if let ServerMsg::Group { room, .. } = &mut said {
            *room = Some("lobby".into());
        }
        if let ServerMsg::Group { room, action, .. } = &mut waved {
            *room = Some("rust".into());
            *action = true;
        }
        let shown = |m: &ServerMsg<'_>| plain.received_in(m, me, lobby);
        assert_eq!(shown(&said).as_deref(), Some("<alice> hi"));
        assert_eq!(shown(&waved).as_deref(), Some("[rust] * alice hi"));
        let parted = ServerMsg::Leave {
            id: 3,
            nick: "carol".into(),
            reason: crate::wire::LeaveReason::Part,
            ts: 1,
            text: None,
            room: Some("rust".into()),
        };
        assert_eq!(
            shown(&parted).as_deref(),
            Some("[rust] -- carol left (part)")
        );
        let mut arrived = join(3, "carol");
        if let ServerMsg::Join { room, .. } = &mut arrived {
            *room = Some("Rust".into());
        }
        assert_eq!(shown(&arrived).as_deref(), Some("[Rust] -- carol joined"));
        let joined = ServerMsg::Joined {
            room: "rust".into(),
            topic: None,
            users: vec![crate::wire::Member {
                id: 2,
                nick: "bob".into(),
            }],
        };
        assert_eq!(
            shown(&joined).as_deref(),
            Some("-- you are in rust (1 here: bob)"),
            "the line names the room already"
        );
        let say = ClientMsg::Group {
            room: Some("rust".into()),
            text: "hi".into(),
            action: false,
        };
        assert_eq!(
            sent(&plain, &say, "bob", lobby).as_deref(),
            Some("[rust] <bob> hi")
        );
        let home = ClientMsg::Group {
            room: Some("lobby".into()),
            text: "hi".into(),
            action: false,
        };
        assert_eq!(
            sent(&plain, &home, "bob", lobby).as_deref(),
            Some("<bob> hi")
        );
    }

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
