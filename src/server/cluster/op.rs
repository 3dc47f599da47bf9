//! What crosses the backplane: one NATS message per change of shared
//! state, JSON with a version field, so that a server of a later version
//! can tell what it reads.

use serde::{Deserialize, Serialize};

use crate::wire::LeaveReason;

/// The version of [`Envelope`] and [`Private`] this build writes and reads.
pub const VERSION: u8 = 1;

/// A change of the shared state, made by a user of the server `from`.
/// Ids are cluster-wide (each server numbers its users from a block of
/// its own), so `id` names the user on every server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A server starts: the stream sequence of this message is its id
    /// block (see [`id_base`]).
    Hello,
    /// Joins a room; the first join of an id is the user's arrival.
    Join {
        id: u64,
        nick: String,
        room: String,
        ts: u64,
    },
    Part {
        id: u64,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        ts: u64,
    },
    /// Leaves the server.
    Leave {
        id: u64,
        reason: LeaveReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        ts: u64,
    },
    Nick {
        id: u64,
        new: String,
        ts: u64,
    },
    /// A group message: its stream sequence is its `seq` everywhere.
    Say {
        id: u64,
        /// The sender's name when it spoke: it may have left by the time
        /// the message comes back from the stream.
        nick: String,
        room: String,
        text: String,
        #[serde(default)]
        action: bool,
        #[serde(default)]
        echo: bool,
        ts: u64,
    },
    Topic {
        id: u64,
        room: String,
        text: String,
        ts: u64,
    },
    /// The server `instance` went silent: its users left everywhere.
    Gone {
        instance: String,
    },
    /// Users of the publishing server in a room, and the room's topic as
    /// it knows it, said again when another server starts (see
    /// `Core::announce`): one message per room and [`PRESENT_BATCH`]
    /// users, not a join each. A join of a member is no news, and the
    /// topic is taken only where the room has none yet.
    Present {
        room: String,
        users: Vec<Member>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        ts: u64,
    },
}

/// A user in [`Op::Present`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub nick: String,
}

/// The most users one [`Op::Present`] names: about 20 KB of JSON, far
/// below NATS's default 1 MB payload limit, and few messages even for a
/// server of 20,000 users.
pub const PRESENT_BATCH: usize = 500;

/// One message on the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    /// The instance that published it.
    pub from: String,
    #[serde(flatten)]
    pub op: Op,
}

/// A private message, sent over core NATS to the server holding its
/// receiver: never stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Private {
    pub v: u8,
    /// The receiver's id.
    pub to: u64,
    /// The sender's nickname.
    pub from: String,
    pub text: String,
    #[serde(default)]
    pub action: bool,
    pub ts: u64,
}

/// User ids per server start: a server whose `Hello` is stream message
/// `seq` numbers its users from `seq << ID_BITS`. With 2^20 users per
/// start and ids kept within 2^53 (JavaScript reads ids as doubles), a
/// stream holds 2^33 starts before ids would pass that.
pub const ID_BITS: u32 = 20;

pub fn id_base(hello_seq: u64) -> u64 {
    (hello_seq << ID_BITS) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_flat_json_with_its_version() {
        let e = Envelope {
            v: VERSION,
            from: "ab12".into(),
            op: Op::Say {
                id: 7,
                nick: "ann".into(),
                room: "lobby".into(),
                text: "hi".into(),
                action: false,
                echo: false,
                ts: 5,
            },
        };
        let text = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"v":1,"from":"ab12","op":"say","id":7,"nick":"ann","room":"lobby","text":"hi","action":false,"echo":false,"ts":5}"#
        );
        let back: Envelope = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
    }

    #[test]
    fn ids_stay_within_javascript_integers() {
        assert!(id_base(1 << 32) < 1 << 53);
        assert_eq!(id_base(1), (1 << 20) + 1);
    }
}
