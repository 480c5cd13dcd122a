//! Control: the admin API, its token, and the integrations it manages.

pub mod admin;
pub mod client;
pub mod files;
pub mod history;
pub mod integrations;
pub mod secrets;
pub mod spec;
pub mod status;
pub mod store;
pub mod tenants;
pub mod token;
