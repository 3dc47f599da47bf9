//! The IRC door: IRC clients (irssi, WeeChat, bots) in the same rooms as
//! the JSON-lines users, IRC channel `#rust` being room `rust`.
//!
//! - [`message`]: parsing and writing IRC lines (tags, source, command,
//!   parameters).
//! - [`mod@encode`]: events into IRC lines.
//! - [`door`]: registration, commands and answers, per connection.
pub mod encode;
pub mod message;

pub use encode::encode;
pub mod door;
