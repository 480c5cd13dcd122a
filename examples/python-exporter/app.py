"""A wasmtel exporter in Python: each gauge and sum point as one `name{labels} value` line, POSTed."""
from wit_world import exports
from wit_world.exports.encoder import ExporterInfo, HttpRequest, Outbound_Http, Outcome_Reject, Outcome_Retry, Outcome_Success, Signals
from wit_world.imports.types import MetricData_Gauge, MetricData_Sum, Temporality

settings = {}  # Each call gets a fresh Encoder: what init learns is kept here.


class Encoder(exports.Encoder):
    def init(self, config):
        settings["path"] = dict(config).get("path", "/lines")
        return ExporterInfo(Signals.METRICS, Temporality.CUMULATIVE)

    def encode_metrics(self, batch):
        lines = []
        for metric in (m for scope in batch.scopes for m in scope.metrics):
            data = metric.data
            points = data.value if isinstance(data, MetricData_Gauge) else data.value.points if isinstance(data, MetricData_Sum) else []
            for p in points:
                labels = ",".join(f'{kv.key}="{kv.value.value}"' for kv in p.attributes)
                lines.append(f"{metric.name}{{{labels}}} {p.value:g}")
        body = ("\n".join(lines) + "\n").encode()
        return [Outbound_Http(HttpRequest("POST", settings["path"], [("content-type", "text/plain")], body))]

    def encode_logs(self, batch):
        return []

    def classify(self, response):
        if 200 <= response.status < 300: return Outcome_Success()
        return Outcome_Retry(None) if response.status in (429, 502, 503, 504) else Outcome_Reject(f"HTTP {response.status}")
