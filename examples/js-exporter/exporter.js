// A wasmtel exporter in JavaScript: each gauge and sum point as one `name{labels} value` line, POSTed.
let path = "/lines";

export const encoder = {
  init(config) {
    path = new Map(config).get("path") ?? path;
    return { signals: { metrics: true, logs: false }, temporality: "cumulative" };
  },
  encodeMetrics(batch) {
    const lines = [];
    for (const metric of batch.scopes.flatMap((s) => s.metrics)) {
      const { tag, val } = metric.data;
      const points = tag === "gauge" ? val : tag === "sum" ? val.points : [];
      for (const p of points) {
        const labels = p.attributes.map((kv) => `${kv.key}="${kv.value.val}"`).join(",");
        lines.push(`${metric.name}{${labels}} ${p.value}`);
      }
    }
    const body = new TextEncoder().encode(lines.join("\n") + "\n");
    return [{ tag: "http", val: { method: "POST", path, headers: [["content-type", "text/plain"]], body } }];
  },
  encodeLogs(batch) {
    return [];
  },
  classify(response) {
    if (response.status >= 200 && response.status < 300) return { tag: "success" };
    return [429, 502, 503, 504].includes(response.status) ? { tag: "retry" } : { tag: "reject", val: `HTTP ${response.status}` };
  },
};
