//! What the bot's transcript adds to the human format of [`crate::render`]:
//! the actor before every line, the `ok:` line of an `expect` that held,
//! and one line, not two, for a newcomer who names itself on arrival.

use crate::render::{Me, Renderer, Tint, sanitize};
use crate::wire::{ClientMsg, ServerMsg, is_guest_name};

/// A received message as the client shows it; an action as `* alice waves`.
/// The bot's current room is the default one (`home`, from `welcome`): a
/// line from another room says which, `[rust] <alice> hi`.
pub fn received(
    render: &Renderer,
    msg: &ServerMsg<'_>,
    me: Me<'_>,
    home: Option<&str>,
) -> Option<String> {
    let (line, room) = match msg {
        ServerMsg::Group {
            from,
            text,
            action: true,
            room,
            ..
        } => (render.acted(from, text, me.nick), room),
        ServerMsg::Group { room, .. }
        | ServerMsg::Join { room, .. }
        | ServerMsg::Leave { room, .. }
        | ServerMsg::Who { room, .. } => (render.received(msg, me)?, room),
        _ => return render.received(msg, me),
    };
    Some(in_room(room.as_deref(), home, line))
}

/// A message the actor sent, as the client shows it; `None` for those
/// that show nothing until the server answers.
pub fn sent(
    render: &Renderer,
    msg: &ClientMsg<'_>,
    me: &str,
    home: Option<&str>,
) -> Option<String> {
    match msg {
        ClientMsg::Group {
            text, action, room, ..
        } => {
            let line = if *action {
                render.acted(me, text, me)
            } else {
                render.sent(msg, me)?
            };
            Some(in_room(room.as_deref(), home, line))
        }
        _ => render.sent(msg, me),
    }
}

/// `[rust] LINE` for a line from a room other than the default one.
fn in_room(room: Option<&str>, home: Option<&str>, line: String) -> String {
    match room {
        Some(room) if !home.is_some_and(|h| h.eq_ignore_ascii_case(room)) => {
            format!("[{}] {line}", sanitize(room))
        }
        _ => line,
    }
}

/// `@alice LINE`: a line of the transcript seen by, or done by, `actor`.
pub fn by(actor: &str, line: &str) -> String {
    format!("@{} {line}", sanitize(actor))
}

/// `ok: group from alice "hi*"`: an expectation that held.
pub fn verdict(render: &Renderer, expectation: &str) -> String {
    render.tint(Tint::Green, &format!("ok: {}", sanitize(expectation)))
}

/// A newcomer's `join`, kept off the transcript for a moment. Everyone
/// arrives as `guest<ID>` and most rename themselves at once; two lines
/// (`guest2 joined`, `guest2 is now known as bob`) for one arrival is noise,
/// so the join waits for that rename and shows as `bob joined`. Anything
/// else the actor sees or does first lets it out as it came, so no line is
/// ever lost or shown out of order.
#[derive(Debug, Default)]
pub struct Arrivals {
    held: Option<ServerMsg<'static>>,
}

/// What to show for one received message, in order.
#[derive(Debug, PartialEq)]
pub struct Show {
    /// A join held back earlier, to show first (renamed when this message
    /// was its rename).
    pub earlier: Option<ServerMsg<'static>>,
    /// Whether to show the message itself: not when it is held, nor when
    /// it is the rename folded into `earlier`.
    pub this: bool,
}

impl Arrivals {
    /// Takes the next message received by an actor whose own connection is
    /// `me` (its id, once welcomed).
    pub fn admit(&mut self, msg: &ServerMsg<'static>, me: Option<u64>) -> Show {
        let renames_held = matches!(
            (&self.held, msg),
            (Some(ServerMsg::Join { id: joined, nick: guest, .. }), ServerMsg::Nick { id, old, .. })
                if joined == id && guest == old
        );
        if renames_held {
            let mut join = self.held.take();
            if let (Some(ServerMsg::Join { nick, .. }), ServerMsg::Nick { new, .. }) =
                (join.as_mut(), msg)
            {
                *nick = new.clone();
            }
            return Show {
                earlier: join,
                this: false,
            };
        }
        let earlier = self.held.take();
        match msg {
            ServerMsg::Join { id, nick, .. } if Some(*id) != me && is_guest_name(nick) => {
                self.held = Some(msg.clone());
                Show {
                    earlier,
                    this: false,
                }
            }
            _ => Show {
                earlier,
                this: true,
            },
        }
    }

    /// The join still held, if any: the actor is about to show something
    /// of its own, or the transcript ends.
    pub fn release(&mut self) -> Option<ServerMsg<'static>> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Style;

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
            received(&plain, &waved, me, None).as_deref(),
            Some("* alice waves")
        );
        assert_eq!(
            received(&plain, &group("alice"), me, None).as_deref(),
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
        let shown = |m: &ServerMsg<'_>| received(&plain, m, me, lobby);
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
            users: vec![],
        };
        assert_eq!(
            shown(&joined).as_deref(),
            Some("-- you joined rust (0 here: )"),
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

    fn join(id: u64, nick: &str) -> ServerMsg<'static> {
        ServerMsg::Join {
            id,
            nick: nick.to_owned().into(),
            ts: 1,
            room: None,
        }
    }

    fn rename(id: u64, old: &str, new: &str) -> ServerMsg<'static> {
        ServerMsg::Nick {
            id,
            old: old.to_owned().into(),
            new: new.to_owned().into(),
            ts: 2,
        }
    }

    fn group(from: &str) -> ServerMsg<'static> {
        ServerMsg::Group {
            from: from.to_owned().into(),
            text: "hi".into(),
            ts: 3,
            room: None,
            seq: 0,
            action: false,
        }
    }

    const HELD: Show = Show {
        earlier: None,
        this: false,
    };
    const AS_IS: Show = Show {
        earlier: None,
        this: true,
    };

    #[test]
    fn a_join_and_its_rename_are_one_arrival() {
        let mut a = Arrivals::default();
        assert_eq!(a.admit(&join(3, "guest3"), Some(1)), HELD);
        assert_eq!(
            a.admit(&rename(3, "guest3", "bob"), Some(1)),
            Show {
                earlier: Some(join(3, "bob")),
                this: false
            }
        );
        assert_eq!(a.release(), None);
        // bob's next rename is an ordinary one.
        assert_eq!(a.admit(&rename(3, "bob", "robert"), Some(1)), AS_IS);
    }

    #[test]
    fn anything_else_first_lets_the_join_out_as_it_came() {
        let mut a = Arrivals::default();
        assert_eq!(a.admit(&join(3, "guest3"), Some(1)), HELD);
        assert_eq!(
            a.admit(&group("guest3"), Some(1)),
            Show {
                earlier: Some(join(3, "guest3")),
                this: true
            }
        );
        // Someone else's rename, then a second newcomer.
        assert_eq!(a.admit(&join(3, "guest3"), Some(1)), HELD);
        assert_eq!(
            a.admit(&rename(4, "guest3", "eve"), Some(1)),
            Show {
                earlier: Some(join(3, "guest3")),
                this: true
            }
        );
        assert_eq!(a.admit(&join(3, "guest3"), Some(1)), HELD);
        assert_eq!(
            a.admit(&join(4, "guest4"), Some(1)),
            Show {
                earlier: Some(join(3, "guest3")),
                this: false
            }
        );
        assert_eq!(a.release(), Some(join(4, "guest4")));
        assert_eq!(a.release(), None);
    }

    #[test]
    fn only_a_guest_name_arriving_is_held() {
        let mut a = Arrivals::default();
        assert_eq!(a.admit(&join(3, "carol"), Some(1)), AS_IS);
        assert_eq!(a.admit(&join(1, "guest1"), Some(1)), AS_IS, "our own");
    }
}
