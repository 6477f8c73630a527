/** The status page's stylesheet (served as /status.css). Plain CSS, system fonts, nothing fetched. */
export const STATUS_CSS = `:root {
  --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --muted: #5f6b7a; --line: #d8dde3;
  --ok: #1a7f37; --warn: #b35900; --bad: #cf222e; --info: #1f6feb;
  --p50: #1f6feb; --p95: #b35900; --p99: #cf222e; --budget: #1b1f24;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --muted: #8b949e; --line: #30363d;
    --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff;
    --p50: #58a6ff; --p95: #d29922; --p99: #f85149; --budget: #e6edf3;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; }
header, main, footer { max-width: 1400px; margin: 0 auto; padding: 0.75rem 1rem; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 2rem; }
.title { display: flex; align-items: baseline; gap: 0.75rem; }
h1 { margin: 0; font-size: 1.5rem; }
h2 { margin: 0 0 0.5rem; font-size: 1.05rem; }
.device { font-size: 1.2rem; font-weight: 600; }
.muted { color: var(--muted); }
.facts { display: flex; flex-wrap: wrap; gap: 0.25rem 1.5rem; margin: 0; }
.facts div { display: flex; gap: 0.4rem; align-items: baseline; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-weight: 600; }
.reasons { flex-basis: 100%; margin: 0; padding-left: 1.2rem; color: var(--bad); }
.reasons:empty { display: none; }
.offline { flex-basis: 100%; margin: 0; padding: 0.4rem 0.6rem; background: var(--bad); color: #fff; border-radius: 4px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem 1rem; margin-bottom: 1rem; overflow-x: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.25rem 0.4rem; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; word-break: break-all; }
.badge { display: inline-block; padding: 0 0.45rem; border-radius: 999px; font-size: 0.8rem; font-weight: 600; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); }
.badge.bad { background: var(--bad); } .badge.info { background: var(--info); }
.pipeline-frames { margin-bottom: 0.75rem; }
.pipeline-frames h3 { margin: 0.25rem 0; font-size: 0.95rem; }
.strip { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 0.5rem; }
.strip-label { margin: 0.5rem 0 0.25rem; color: var(--muted); font-size: 0.85rem; }
figure { margin: 0; border: 2px solid var(--line); border-radius: 4px; overflow: hidden; background: var(--bg); }
figure.alert { border-color: var(--bad); }
.shot { position: relative; aspect-ratio: 4 / 3; background: #2d333b; }
.shot img { width: 100%; height: 100%; object-fit: contain; display: block; }
.overlay { position: absolute; left: 0; top: 0; padding: 0.1rem 0.35rem; background: rgba(0, 0, 0, 0.65); color: #fff; font-size: 0.8rem; font-weight: 600; }
.overlay.alert { background: var(--bad); }
.box { position: absolute; border: 2px solid #ff3b30; pointer-events: none; }
figcaption { padding: 0.3rem 0.4rem; font-size: 0.8rem; }
figcaption .origin { color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.meter { position: relative; height: 6px; background: var(--line); border-radius: 3px; margin: 0.2rem 0; }
.meter .fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--ok); border-radius: 3px; }
.meter .fill.over { background: var(--bad); }
.meter .mark { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--fg); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0.75rem; }
.chart h3 { margin: 0; font-size: 0.95rem; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .facts-line { font-size: 0.85rem; color: var(--muted); }
svg .axis { stroke: var(--line); stroke-width: 1; }
svg text { fill: var(--muted); font-size: 12px; }
svg .p50 { stroke: var(--p50); } svg .p95 { stroke: var(--p95); } svg .p99 { stroke: var(--p99); }
svg .series { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
svg .dot.p50 { fill: var(--p50); } svg .dot.p95 { fill: var(--p95); } svg .dot.p99 { fill: var(--p99); }
svg .dot { stroke: none; }
svg .budget { stroke: var(--budget); stroke-dasharray: 6 4; stroke-width: 1.2; }
.legend { margin: 0 0 0.5rem; color: var(--muted); font-size: 0.85rem; }
.key { display: inline-block; width: 14px; height: 3px; margin: 0 0.25rem 0.2rem 0.6rem; vertical-align: middle; }
.key.p50 { background: var(--p50); } .key.p95 { background: var(--p95); } .key.p99 { background: var(--p99); }
.key.budget { border-top: 2px dashed var(--budget); height: 0; }
.bar { display: inline-block; width: 64px; height: 8px; background: var(--line); border-radius: 4px; position: relative; vertical-align: middle; }
.bar .fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 4px; background: var(--ok); }
.bar .fill.over { background: var(--bad); }
.drift-models { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 0.5rem 1.5rem; }
.drift-model { margin-bottom: 0.5rem; }
.drift-model h3 { margin: 0.25rem 0; font-size: 0.95rem; }
footer { color: var(--muted); }
footer a { color: var(--info); }
`;
