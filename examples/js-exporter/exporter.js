// A wasmtel exporter in JavaScript: each gauge and sum point as one `name{labels} value` line, POSTed.
let path = "/lines";

export const encoder = {
  init(config) {
    path = new Map(config).get("path") ?? path;
    return { signals: { metrics: true, logs: false }, temporality: "cumulative" };
  },
  encodeMetrics(batch) {
    // Each string, value and attribute set of the batch comes once: labels are made once per set.
    const t = batch.table;
    const labels = t.sets.map((s) =>
      t.attributes.slice(s.start, s.start + s.len).map((a) => `${t.strings[a.key]}="${t.values[a.value].val}"`).join(","));
    const lines = [];
    for (const metric of batch.metrics) {
      const points = ["gauge", "sum"].includes(metric.points.tag) ? metric.points.val : [];
      for (const p of points) lines.push(`${t.strings[metric.name]}{${labels[p.attributes]}} ${p.value}`);
    }
    const body = new TextEncoder().encode(lines.join("\n") + "\n");
    return [{ tag: "http", val: { method: "post", path, headers: [["content-type", "text/plain"]], body } }];
  },
  encodeLogs(batch) {
    return [];
  },
  classify(response) {
    if (response.status >= 200 && response.status < 300) return { tag: "success" };
    return [429, 502, 503, 504].includes(response.status) ? { tag: "retry" } : { tag: "reject", val: `HTTP ${response.status}` };
  },
};
