//! What a transform answers: the edits that rewrite a batch, named through the batch's accessors.

use crate::batch::{Attributes, EventRef, HasAttributes, MetricRef, Point, RecordRef, SpanRef};
use crate::transform_types::{
    Edit, PointRef, RemoveAttribute, RenameMetric, SetAttribute, SetBody,
};
use crate::{LogBatch, MetricBatch, SpanEdit, Value};

/// The attribute edits of every batch kind: they name an attribute set, and so change
/// everything that has it.
pub trait AttributeEdits {
    /// Sets `key` in an attribute set, for everything that has the set.
    fn set_attribute(&mut self, set: &Attributes<'_>, key: &str, value: impl Into<Value>);

    /// Removes `key` from an attribute set, for everything that has the set.
    fn remove_attribute(&mut self, set: &Attributes<'_>, key: &str);
}

/// The edits a transform makes to one batch; none leaves the batch as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits(Vec<Edit>);

impl Edits {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops a metric and its points.
    pub fn drop_metric(&mut self, metric: &MetricRef<'_>) {
        self.0.push(Edit::DropMetric(metric.index()));
    }

    /// Drops one point (and its exemplars).
    pub fn drop_point<P: HasAttributes>(&mut self, point: &Point<'_, P>) {
        self.0.push(Edit::DropPoint(PointRef {
            metric: point.metric().index(),
            point: point.index(),
        }));
    }

    /// Renames a metric.
    pub fn rename_metric(&mut self, metric: &MetricRef<'_>, name: impl Into<String>) {
        self.0.push(Edit::RenameMetric(RenameMetric {
            metric: metric.index(),
            name: name.into(),
        }));
    }

    /// Drops a log record.
    pub fn drop_record(&mut self, record: &RecordRef<'_>) {
        self.0.push(Edit::DropRecord(record.index()));
    }

    /// Replaces a log record's body.
    pub fn set_body(&mut self, record: &RecordRef<'_>, body: Option<Value>) {
        self.0.push(Edit::SetBody(SetBody {
            record: record.index(),
            body,
        }));
    }

    /// Sets `key` in an attribute set, for everything that has the set.
    pub fn set_attribute(&mut self, set: &Attributes<'_>, key: &str, value: impl Into<Value>) {
        self.0.push(Edit::SetAttribute(SetAttribute {
            set: set.index(),
            key: key.to_owned(),
            value: value.into(),
        }));
    }

    /// Removes `key` from an attribute set, for everything that has the set.
    pub fn remove_attribute(&mut self, set: &Attributes<'_>, key: &str) {
        self.0.push(Edit::RemoveAttribute(RemoveAttribute {
            set: set.index(),
            key: key.to_owned(),
        }));
    }

    /// Adds an edit built by hand.
    pub fn push(&mut self, edit: Edit) {
        self.0.push(edit);
    }

    /// The edits, in order.
    pub fn as_slice(&self) -> &[Edit] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[doc(hidden)]
    pub fn into_inner(self) -> Vec<Edit> {
        self.0
    }
}

/// The edits a transform makes to one span batch; none leaves the batch as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanEdits(Vec<SpanEdit>);

impl SpanEdits {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops a span, with its events and links.
    pub fn drop_span(&mut self, span: &SpanRef<'_>) {
        self.0.push(SpanEdit::DropSpan(span.index()));
    }

    /// Drops one event of a span.
    pub fn drop_event(&mut self, event: &EventRef<'_>) {
        self.0.push(SpanEdit::DropEvent(event.index()));
    }

    /// Sets `key` in an attribute set, for everything that has the set.
    pub fn set_attribute(&mut self, set: &Attributes<'_>, key: &str, value: impl Into<Value>) {
        self.0.push(SpanEdit::SetAttribute(SetAttribute {
            set: set.index(),
            key: key.to_owned(),
            value: value.into(),
        }));
    }

    /// Removes `key` from an attribute set, for everything that has the set.
    pub fn remove_attribute(&mut self, set: &Attributes<'_>, key: &str) {
        self.0.push(SpanEdit::RemoveAttribute(RemoveAttribute {
            set: set.index(),
            key: key.to_owned(),
        }));
    }

    /// The edits, in order.
    pub fn as_slice(&self) -> &[SpanEdit] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[doc(hidden)]
    pub fn into_inner(self) -> Vec<SpanEdit> {
        self.0
    }
}

impl MetricBatch {
    /// Every attribute set of the batch (of points, scopes and the resource), each once.
    pub fn attribute_sets(&self) -> impl Iterator<Item = Attributes<'_>> {
        (0..self.table.sets.len() as u32).map(|i| self.table.attributes(i))
    }
}

impl LogBatch {
    /// Every attribute set of the batch (of records, scopes and the resource), each once.
    pub fn attribute_sets(&self) -> impl Iterator<Item = Attributes<'_>> {
        (0..self.table.sets.len() as u32).map(|i| self.table.attributes(i))
    }
}

impl AttributeEdits for Edits {
    fn set_attribute(&mut self, set: &Attributes<'_>, key: &str, value: impl Into<Value>) {
        Edits::set_attribute(self, set, key, value);
    }

    fn remove_attribute(&mut self, set: &Attributes<'_>, key: &str) {
        Edits::remove_attribute(self, set, key);
    }
}

impl AttributeEdits for SpanEdits {
    fn set_attribute(&mut self, set: &Attributes<'_>, key: &str, value: impl Into<Value>) {
        SpanEdits::set_attribute(self, set, key, value);
    }

    fn remove_attribute(&mut self, set: &Attributes<'_>, key: &str) {
        SpanEdits::remove_attribute(self, set, key);
    }
}
