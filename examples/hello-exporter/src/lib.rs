//! The shortest useful wasmtel plugin: POSTs one text line per metric, `name points`.

use wasmtel_guest::{Config, MetricBatch, Outbound};

#[wasmtel_guest::exporter]
fn encode(batch: &MetricBatch, config: &Config) -> Result<Vec<Outbound>, String> {
    let lines: Vec<String> = batch.metrics().map(|m| format!("{} {}", m.name(), m.point_count())).collect();
    let path = config.get_or("path", "/ingest");
    Ok(vec![Outbound::post(path, lines.join("\n")).header("content-type", "text/plain")])
}
