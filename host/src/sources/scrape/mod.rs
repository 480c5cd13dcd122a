//! Scraping Prometheus `/metrics` endpoints: the exposition formats (Prometheus text 0.0.4 and
//! OpenMetrics 1.0) read without copying, translated into OTLP, on each configured or
//! discovered target's interval.

pub mod discovery;
pub mod exposition;
pub mod scraper;
pub mod translate;
