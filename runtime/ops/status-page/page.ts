/**
 * The status page's HTML shell. It holds no data: /status.js fills it from GET /api/v1/live, so
 * the page can be cached, and nothing from the outside world is ever written into HTML by the
 * server. Kept as a string in a module because dist/ is what ships and tsc copies no static files.
 */
export const STATUS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil status</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <div class="title">
    <h1>Vigil</h1>
    <span id="device" class="device"></span>
    <span id="version" class="muted"></span>
  </div>
  <dl class="facts">
    <div><dt>Ready</dt><dd id="ready"><span class="badge">…</span></dd></div>
    <div><dt>Uptime</dt><dd id="uptime">–</dd></div>
    <div><dt>MQTT</dt><dd id="mqtt">–</dd></div>
    <div><dt>Upstream</dt><dd id="upstream">–</dd></div>
    <div><dt>Updated</dt><dd id="updated">–</dd></div>
  </dl>
  <ul id="reasons" class="reasons"></ul>
  <p id="offline" class="offline" hidden>No answer from the gateway; retrying…</p>
</header>
<main>
  <section id="frames-section">
    <h2>Live frames</h2>
    <div id="frames"><p class="muted">No frame scored yet.</p></div>
  </section>
  <section id="alerts-section">
    <h2>Recent alerts</h2>
    <table id="alerts">
      <thead><tr><th>Time</th><th>Pipeline</th><th>Kind</th><th>Severity</th><th>Label</th><th>Score / threshold</th><th>Model</th><th>Latency</th><th>Origin</th><th>Sent</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="alerts-empty" class="muted">No alert yet.</p>
  </section>
  <section id="latency-section">
    <h2>Latency against the budget</h2>
    <p class="legend"><span class="key p50"></span>p50 <span class="key p95"></span>p95 <span class="key p99"></span>p99 <span class="key budget"></span>budget; arrival to result stored, per interval, last minutes</p>
    <div id="latency" class="charts"><p class="muted">Collecting…</p></div>
  </section>
  <div class="grid">
    <section id="models-section">
      <h2>Models</h2>
      <table id="models">
        <thead><tr><th>Name</th><th>Model</th><th>Version</th><th>Backend</th><th>Provider</th><th>State</th><th>Rollout</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section id="sources-section">
      <h2>Sources</h2>
      <table id="sources">
        <thead><tr><th>Name</th><th>Type</th><th>State</th><th>Readings/s</th><th>Refused</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section id="telemetry-section">
      <h2>Telemetry pipelines</h2>
      <table id="telemetry">
        <thead><tr><th>Pipeline</th><th>Model</th><th>Assets</th><th>Windows scored</th><th>Skipped</th><th>Active alerts</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="telemetry-empty" class="muted">No telemetry pipeline.</p>
    </section>
    <section id="store-section">
      <h2>Store and upstream</h2>
      <table id="store">
        <thead><tr><th>Class</th><th>Rows</th><th>Disk / quota</th><th title="rows not yet delivered upstream">Waiting</th><th title="age of the oldest row waiting">Oldest</th><th title="delivered upstream since the start">Sent</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="store-facts" class="muted"></p>
    </section>
  </div>
  <section id="drift-section">
    <h2>Drift</h2>
    <div id="drift"><p class="muted">No reference statistics.</p></div>
  </section>
</main>
<footer>
  <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a> ·
  <a href="/api/v1/status">/api/v1/status</a> · <a href="/api/v1/alerts?limit=20">/api/v1/alerts</a> ·
  <a href="/api/v1/live">/api/v1/live</a>
</footer>
</body>
</html>
`;

export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#1f6feb"/><circle cx="8" cy="8" r="3" fill="#fff"/></svg>
`;
