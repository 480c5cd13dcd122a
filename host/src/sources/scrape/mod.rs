//! Scraping Prometheus `/metrics` endpoints: the exposition formats (Prometheus text 0.0.4 and
//! OpenMetrics 1.0), read without copying.

pub mod exposition;
pub mod scraper;
pub mod translate;
