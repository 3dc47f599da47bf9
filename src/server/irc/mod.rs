//! The IRC door: IRC clients (irssi, WeeChat, bots) in the same rooms as
//! the JSON-lines users, IRC channel `#rust` being room `rust`.
//!
//! - [`message`]: parsing and writing IRC lines (tags, source, command,
//!   parameters).
//! - [`mod@encode`]: events into IRC lines.
//! - [`door`]: registration and commands, per connection.
//! - [`answer`]: questions answered from the core's state, and the
//!   registration burst.
//! - [`sasl`]: SASL PLAIN's `AUTHENTICATE` payloads.
pub mod encode;
pub mod message;

pub use encode::encode;
pub mod answer;
pub mod door;
pub mod sasl;

#[cfg(test)]
mod tests;
