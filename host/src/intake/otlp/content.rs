//! The GenAI content guard: received log records and spans that carry prompt or completion
//! content (as their check marked them) go through the `redact` plugin before anything queues,
//! measures or stores them; one it cannot redact is refused, never kept as it came.

use super::Tally;
use super::records::Scanned;
use crate::model::Signal;
use crate::model::content::Content;
use crate::model::record::{Record, same_origin};
use crate::plugins::Transforms;

/// What opens the redaction, when the first record carrying content arrives.
pub type OpenRedaction = Box<dyn Fn() -> Transforms + Send + Sync>;

/// What marks a record as carrying content, and the fail-closed chain (the `redact` plugin)
/// that removes it, opened when first needed; marking nothing, it lets every record through
/// untouched.
pub struct ContentGuard {
    /// What marks a record (nothing when content is kept).
    pub content: Content,
    redact: std::sync::OnceLock<Transforms>,
    open: OpenRedaction,
}

impl std::fmt::Debug for ContentGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentGuard")
            .field("content", &self.content)
            .field("opened", &self.redact.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Why a record carrying content was refused.
const UNREDACTED: &str = "a record carrying GenAI content could not be redacted (the redact plugin failed, or does not edit this signal), so it was refused";

impl ContentGuard {
    /// A guard marking `content`, redacting with what `open` makes when first needed.
    pub fn new(content: Content, open: OpenRedaction) -> Self {
        Self {
            content,
            redact: std::sync::OnceLock::new(),
            open,
        }
    }

    /// The scanned records, those carrying content redacted in place (a run of them from one
    /// origin at a time); a run the redaction fails on is refused and counted in `tally`.
    pub fn apply(&self, signal: Signal, scanned: Scanned, tally: &mut Tally) -> Vec<Record> {
        if scanned.content.is_empty() {
            return scanned.records;
        }
        let mut marked = vec![false; scanned.records.len()];
        for &i in &scanned.content {
            marked[i] = true;
        }
        let mut out = Vec::with_capacity(scanned.records.len());
        let mut run: Vec<Record> = Vec::new();
        for (record, marked) in scanned.records.into_iter().zip(marked) {
            let breaks = run
                .last()
                .is_some_and(|last| !marked || !same_origin(&last.origin, &record.origin));
            if breaks {
                self.redact_run(signal, &mut run, &mut out, tally);
            }
            match marked {
                true => run.push(record),
                false => out.push(record),
            }
        }
        self.redact_run(signal, &mut run, &mut out, tally);
        out
    }

    /// Redacts a run of marked records of one origin into `out`, emptying it.
    fn redact_run(
        &self,
        signal: Signal,
        run: &mut Vec<Record>,
        out: &mut Vec<Record>,
        tally: &mut Tally,
    ) {
        if run.is_empty() {
            return;
        }
        let redact = self.redact.get_or_init(|| (self.open)());
        let redacted = match redact.rewrite(signal) {
            true => redact.records(signal, run),
            false => Vec::new(),
        };
        if redacted.is_empty() {
            tally.refuse_accepted(run.len(), UNREDACTED);
        }
        out.extend(redacted);
        run.clear();
    }
}
