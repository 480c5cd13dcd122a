"""A wasmtel exporter in Python: each gauge and sum point as one `name{labels} value` line, POSTed."""
from wit_world import exports
from wit_world.exports.encoder import ExporterInfo, HttpRequest, Method, Outbound_Http, Outcome_Reject, Outcome_Retry, Outcome_Success, Signals
from wit_world.imports.types import Points_Gauge, Points_Sum, Temporality

settings = {}  # Each call gets a fresh Encoder: what init learns is kept here.


class Encoder(exports.Encoder):
    def init(self, config):
        settings["path"] = dict(config).get("path", "/lines")
        return ExporterInfo(Signals.METRICS, Temporality.CUMULATIVE)

    def encode_metrics(self, batch):
        t = batch.table  # each string, value and attribute set of the batch, once: labels once per set
        labels = [",".join(f'{t.strings[a.key]}="{t.values[a.value].value}"' for a in t.attributes[s.start:s.start + s.len]) for s in t.sets]
        lines = []
        for metric in batch.metrics:
            points = metric.points.value if isinstance(metric.points, (Points_Gauge, Points_Sum)) else []
            lines += [f"{t.strings[metric.name]}{{{labels[p.attributes]}}} {p.value:g}" for p in points]
        body = ("\n".join(lines) + "\n").encode()
        return [Outbound_Http(HttpRequest(Method.POST, settings["path"], [("content-type", "text/plain")], body))]

    def encode_logs(self, batch):
        return []

    def classify(self, response):
        if 200 <= response.status < 300: return Outcome_Success()
        return Outcome_Retry(None) if response.status in (429, 502, 503, 504) else Outcome_Reject(f"HTTP {response.status}")
