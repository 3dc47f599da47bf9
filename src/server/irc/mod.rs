//! The IRC door: IRC clients (irssi, WeeChat, bots) in the same rooms as
//! the JSON-lines users, IRC channel `#rust` being room `rust`.
//!
//! - [`message`]: parsing and writing IRC lines (tags, source, command,
//!   parameters).
pub mod message;
