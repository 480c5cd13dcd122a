//! Text from outside the host — a plugin, a backend's answer — made safe to log, store or show:
//! every credential value the host knows is masked, control characters are escaped (so a line
//! cannot forge another), and the length is bounded.

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};

/// The credential values this process holds (header values, API keys), to mask wherever they show.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not masked: they would mask ordinary words.
const SHORTEST: usize = 6;

/// Remembers a credential value so that [`redact`] masks it from now on; for a value of the
/// form `<scheme> <token>` (`Bearer …`), the token alone too.
pub fn register(value: &str) {
    let value = value.trim();
    let token = value.split_once(' ').map(|(_, token)| token.trim());
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for secret in std::iter::once(value).chain(token) {
        if secret.len() >= SHORTEST && !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered credential value replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for s in secrets.iter() {
        out = out.replace(s.as_str(), "[redacted]");
    }
    Cow::Owned(out)
}

/// `text` with control characters (CR, LF, ESC, NUL …) escaped as `\n`, `\u{1b}` …, cut to
/// at most `max` bytes at a character boundary (marked with `…`).
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for c in text.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`redact`] then [`escape`]: outside text as the host logs, stores and shows it.
pub fn clean(text: &str, max: usize) -> String {
    escape(&redact(text), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_control_characters_escaped() {
        register("sk-test-REDACT-ME-0001");
        register("abc");
        register("Bearer tok-0123456789");
        assert_eq!(
            clean(
                "401: key sk-test-REDACT-ME-0001 refused\r\nFAKE host line",
                200
            ),
            "401: key [redacted] refused\\r\\nFAKE host line"
        );
        assert_eq!(
            redact("abc is too short to be a secret"),
            "abc is too short to be a secret"
        );
        assert_eq!(
            redact("echo: tok-0123456789 / Bearer tok-0123456789"),
            "echo: [redacted] / [redacted]"
        );
        assert_eq!(escape("\u{1b}[31mred\0", 100), "\\u{1b}[31mred\\u{0}");
        assert_eq!(escape("ééé", 3), "éé…");
    }
}
