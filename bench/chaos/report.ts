import type { DrillReport } from './drill.js';

/** A drill's report as Markdown tables, for a terminal and for docs/BENCHMARKS.md. */

const fmt = (v: unknown): string => {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v))
    return v.map((x) => (typeof x === 'object' && x !== null ? `(${fmt(x)})` : fmt(x))).join('; ');
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    return entries.length === 0 ? '0' : entries.map(([k, x]) => `${k} ${fmt(x)}`).join(', ');
  }
  return String(v);
};

export function formatDrill(r: DrillReport): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`## chaos drill: ${r.scenario} — ${r.passed ? 'PASSED' : 'FAILED'}`);
  out.push('');
  out.push(`${r.summary}.`);
  out.push(
    `machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}, load average ${m.loadAvg1m}; ` +
      `load ${r.options.fps} frames/s + ${r.options.telemetryRate} telemetry msg/s; fault ${r.options.durationS} s; wall ${r.wallS} s`,
  );
  out.push('');
  out.push(
    '| data | sent | accepted | refused (reason) | stored | dropped by policy (reason) | lost after accept (reason) | delivered | lost |',
  );
  out.push('|---|---|---|---|---|---|---|---|---|');
  const f = r.ledger.frames;
  const unaccounted = f.unaccounted !== 0 ? `; neither stored nor counted: ${f.unaccounted}` : '';
  const allowed = f.allowance
    ? ` (allowed: ${f.allowed} of at most ${f.allowance.max}, ${f.allowance.reasons.join('/')}: ${f.allowance.why})`
    : '';
  out.push(
    `| frames (HTTP) | ${f.sent} | ${f.acceptedByDaemon} | ${fmt(f.refused)} | ${f.stored} | ${fmt(f.droppedByPolicy)} | ` +
      `${fmt(f.lostAfterAccept)} | ${f.delivered} | ${f.lost}${unaccounted}${allowed} |`,
  );
  for (const x of r.ledger.readings) {
    let other = '';
    if (x.notReceived !== null) {
      other = `; not received from the other side: ${x.notReceived}`;
      if (x.ackedNotStored !== null) other += `, acknowledged messages not stored: ${x.ackedNotStored}`;
      if (x.brokerLossAllowed) other += ` (allowed: ${x.brokerLossAllowed})`;
    }
    out.push(
      `| readings (${x.source}) | ${fmt(x.sent)} | ${x.accepted} | ${fmt(x.refused)} | ${x.stored} | — | ${fmt(x.lostAfterAccept)} | ${x.delivered} | ${x.lost}${other} |`,
    );
  }
  const a = r.ledger.alerts;
  out.push(
    `| alerts | — | — | — | ${a.stored} | — | — | upstream ${a.deliveredUpstream}, plant consumer ${a.deliveredLocal} (+${a.duplicatesLocal} re-sent copies), outbox left ${a.outboxLeft} | ${a.lost} |`,
  );
  out.push('');
  out.push('| recovery | seconds |');
  out.push('|---|---|');
  for (const [k, v] of Object.entries(r.recovery)) out.push(`| ${k} | ${fmt(v)} |`);
  out.push('');
  const faultRows = Object.entries(r.fault).filter(([k]) => !k.startsWith('_'));
  if (faultRows.length > 0) {
    out.push('| finding | value |');
    out.push('|---|---|');
    for (const [k, v] of faultRows) out.push(`| ${k} | ${fmt(v)} |`);
    out.push('');
  }
  out.push('| phase | frames stored | p50 ms | p95 ms | p99 ms |');
  out.push('|---|---|---|---|---|');
  for (const p of r.latency)
    out.push(`| ${p.phase} | ${p.count} | ${fmt(p.p50Ms)} | ${fmt(p.p95Ms)} | ${fmt(p.p99Ms)} |`);
  out.push('');
  const d = r.daemonLatencyMs;
  if (d)
    out.push(
      `daemon's own latency over the drill (exact, arrival to stored): p50 ${d.p50} ms, p95 ${d.p95} ms, p99 ${d.p99} ms, max ${d.max} ms (${d.count} frames)`,
    );
  out.push(
    `upstream stream: ${r.ledger.upstream.duplicates} re-sent items (de-duplicated by id), ${r.ledger.upstream.gaps} seq gaps, ` +
      `${r.ledger.upstream.orderViolations} out of order, ${r.ledger.upstream.malformed} malformed; ` +
      `daemon ${r.daemon.aliveAtEnd ? 'alive' : 'DIED'}, exit on SIGTERM ${r.daemon.exit?.code ?? '—'}, ${r.daemon.errorLines.length} error log lines`,
  );
  if (r.daemon.log.length > 0) {
    out.push('');
    out.push('daemon log, warn and worse (numbers masked as N):');
    for (const l of r.daemon.log)
      out.push(
        `  ${String(l.count).padStart(5)} x ${l.level}: ${l.msg.slice(0, 220).replace(/\s*\n\s*/g, ' / ')}`,
      );
  }
  if (r.failures.length > 0) {
    out.push('');
    out.push('FAILURES:');
    for (const x of r.failures) out.push(`  - ${x}`);
  }
  return out.join('\n');
}
