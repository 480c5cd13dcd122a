//! The host side of the `host` interface: logging and the clock, the only capabilities a plugin has.

use super::bindings::host::{Host, Level};
use super::runtime::PluginState;
use crate::clock::unix_nanos;

/// The longest log line a plugin may write; longer lines are cut.
pub(super) const MAX_LOG_LINE: usize = 4096;

impl Host for PluginState {
    fn log(&mut self, level: Level, mut message: String) {
        cut_line(&mut message);
        let plugin = &*self.name;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn now_unix_nano(&mut self) -> u64 {
        unix_nanos()
    }
}

impl super::bindings::types::Host for PluginState {}

/// Cuts a log line to [`MAX_LOG_LINE`] bytes at a character boundary, marking the cut with `…`.
fn cut_line(message: &mut String) {
    if message.len() > MAX_LOG_LINE {
        let mut cut = MAX_LOG_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        // Three-byte characters put byte MAX_LOG_LINE inside one: the cut must step back, not panic.
        let mut line = "€".repeat(MAX_LOG_LINE);
        cut_line(&mut line);
        assert!(line.ends_with('…'));
        assert_eq!(line.len(), MAX_LOG_LINE - MAX_LOG_LINE % 3 + '…'.len_utf8());
        let mut short = String::from("ok");
        cut_line(&mut short);
        assert_eq!(short, "ok");
    }
}
