//! The resource: the attributes that say which host or service produced the telemetry.

use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

use super::attributes::AttributeSet;

/// The attributes of the entity that produced telemetry (this host, or a service that sent OTLP).
#[derive(Debug, Clone)]
pub struct Resource {
    attributes: AttributeSet,
}

impl Resource {
    /// A resource with exactly `attributes`.
    pub fn from_attributes(attributes: AttributeSet) -> Self {
        Self { attributes }
    }

    /// The resource attributes, sorted by key.
    pub fn attributes(&self) -> &AttributeSet {
        &self.attributes
    }

    /// The value of one attribute, as text.
    pub fn get(&self, key: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }

    /// The resource as OTLP carries it.
    pub fn to_otlp(&self) -> ProtoResource {
        ProtoResource {
            attributes: self.attributes.to_otlp(),
            ..Default::default()
        }
    }
}
