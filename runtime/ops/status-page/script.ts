/**
 * The status page's script (served as /status.js): polls GET /api/v1/live and redraws the page.
 * Vanilla JS in the dialect every gateway's browser runs, no framework and no build step; the
 * latency charts are SVG drawn here. Everything from the gateway is written as text (textContent),
 * never as markup, and the page's Content-Security-Policy allows no inline script. Kept as a string
 * in a module because dist/ is what ships and tsc copies no static files; it must not contain a
 * backtick or a dollar-brace (test/ops/status-page-units.test.ts parses it).
 */
export const STATUS_JS = String.raw`(function () {
  'use strict';
  var POLL_MS = 1500;
  var MAX_BACKOFF_MS = 15000;
  var IMAGE_WAIT_MS = 10000;
  var SVGNS = 'http://www.w3.org/2000/svg';
  var state = {
    since: 0,
    startedAt: undefined,
    series: {},
    meta: {},
    windowMs: 600000,
    prevSources: {},
    failures: 0,
  };
  var tiles = {};
  var newImages = [];

  function $(id) {
    return document.getElementById(id);
  }
  // Everything from the gateway goes in as text (textContent), never as markup.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function put(node, child) {
    clear(node);
    if (child) node.appendChild(child);
  }
  function td(content, cls) {
    var c = el('td', cls);
    add(c, content);
    return c;
  }
  function add(parent, content) {
    if (content === undefined || content === null) return parent;
    if (Array.isArray(content)) content.forEach(function (x) { add(parent, x); });
    else if (typeof content === 'object') parent.appendChild(content);
    else parent.appendChild(document.createTextNode(String(content)));
    return parent;
  }
  function row(cells) {
    var tr = el('tr');
    cells.forEach(function (c) { tr.appendChild(c && c.nodeName === 'TD' ? c : td(c)); });
    return tr;
  }
  function fillBody(table, rows) {
    var body = table.tBodies[0];
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    clear(body);
    body.appendChild(frag);
  }
  function badge(text, kind) {
    return el('span', 'badge' + (kind ? ' ' + kind : ''), text);
  }
  function entries(o) {
    return o ? Object.keys(o).sort().map(function (k) { return [k, o[k]]; }) : [];
  }
  function num(n, digits) {
    return typeof n === 'number' && isFinite(n) ? n.toFixed(digits || 0) : '–';
  }
  function ms(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    return (n < 10 ? n.toFixed(1) : String(Math.round(n))) + ' ms';
  }
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }
  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400);
    var h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function clock(t) {
    var d = new Date(t);
    return isNaN(d.getTime()) ? '–' : d.toLocaleTimeString();
  }
  function stateKind(s) {
    if (s === 'up' || s === 'connected' || s === 'ready' || s === 'idle' || s === 'promoted') return 'ok';
    if (s === 'starting' || s === 'connecting' || s === 'reconnecting' || s === 'shadow' ||
        s === 'downloading' || s === 'verifying') return 'warn';
    return 'bad';
  }
  function severityKind(s) {
    return s === 'critical' ? 'bad' : s === 'warning' ? 'warn' : 'info';
  }
  function counted(o) {
    return entries(o).filter(function (e) { return e[1] > 0; })
      .map(function (e) { return e[0] + ' ' + e[1]; }).join(', ');
  }
  function total(o) {
    return entries(o).reduce(function (a, e) { return a + e[1]; }, 0);
  }
  function meter(value, mark, over) {
    var m = el('div', 'meter');
    var f = el('div', 'fill' + (over ? ' over' : ''));
    f.style.width = Math.max(0, Math.min(1, value)) * 100 + '%';
    m.appendChild(f);
    if (mark !== undefined) {
      var k = el('div', 'mark');
      k.style.left = Math.max(0, Math.min(1, mark)) * 100 + '%';
      m.appendChild(k);
    }
    return m;
  }

  function renderHeader(d) {
    $('device').textContent = d.device || '';
    $('version').textContent = d.version ? 'Vigil ' + d.version : '';
    document.title = 'Vigil' + (d.device ? ' · ' + d.device : '');
    put($('ready'), d.ready ? badge('ready', 'ok') : badge('not ready', 'bad'));
    var reasons = $('reasons');
    clear(reasons);
    (d.reasons || []).forEach(function (r) { reasons.appendChild(el('li', '', r)); });
    var started = Date.parse(d.startedAt || '');
    $('uptime').textContent = isNaN(started) ? '–' : duration((d.now - started) / 1000);
    put($('mqtt'), d.mqtt && d.mqtt.connected ? badge('connected', 'ok') : badge('disconnected', 'bad'));
    var up = d.upstream || {};
    var u = $('upstream');
    clear(u);
    if (!up.enabled) add(u, el('span', 'muted', 'off'));
    else {
      add(u, [badge(up.state || 'unknown', stateKind(up.state)), ' ' + num(up.drainRowsPerSecond) + ' rows/s']);
      if (up.lastError) u.title = up.lastError;
    }
    $('updated').textContent = clock(d.now);
  }

  function frameUrl(pipeline, id) {
    return '/api/v1/frames/' + encodeURIComponent(pipeline) + '/' + encodeURIComponent(id) + '.jpg';
  }
  function tile(pipeline, f) {
    var fig = el('figure', f.alert ? 'alert' : '');
    var shot = el('div', 'shot');
    var img = el('img');
    img.alt = 'frame ' + f.origin;
    img.width = 320;
    img.height = 240;
    img.decoding = 'async';
    img.addEventListener('error', function () {
      put(shot, el('p', 'muted', 'frame no longer kept'));
    });
    img.src = frameUrl(pipeline, f.id);
    newImages.push(img);
    shot.appendChild(img);
    shot.appendChild(el('div', 'overlay' + (f.alert ? ' alert' : ''), f.label + ' ' + num(f.score, 2)));
    (f.boxes || []).forEach(function (b) {
      var box = el('div', 'box');
      box.style.left = b.x * 100 + '%';
      box.style.top = b.y * 100 + '%';
      box.style.width = b.width * 100 + '%';
      box.style.height = b.height * 100 + '%';
      if (b.label) box.title = b.label + (typeof b.score === 'number' ? ' ' + b.score.toFixed(2) : '');
      shot.appendChild(box);
    });
    fig.appendChild(shot);
    var cap = el('figcaption');
    var head = el('div');
    if (f.alert) add(head, [badge(f.alert.kind + ' · ' + f.alert.severity, severityKind(f.alert.severity)), ' ' + f.label]);
    else add(head, badge(f.label, 'ok'));
    cap.appendChild(head);
    cap.appendChild(meter(f.score, f.threshold, f.score >= f.threshold));
    cap.appendChild(el('div', 'muted', 'score ' + num(f.score, 2) + ' / ' + num(f.threshold, 2) +
      ' · ' + ms(f.latencyMs) + ' · ' + clock(f.t)));
    var origin = el('div', 'origin', f.origin);
    origin.title = f.origin + ' from ' + f.source + ' (' + f.model + ' ' + f.version + ')';
    cap.appendChild(origin);
    fig.appendChild(cap);
    return fig;
  }
  // New tiles are made first (their thumbnails start loading) and swapped in once loaded, so
  // the strip never shows empty frames, even over a slow link.
  function prepareFrames(frames) {
    var plan = [];
    var keep = {};
    Object.keys(frames || {}).sort().forEach(function (name) {
      var p = frames[name];
      var lanes = [];
      [['latest', 'Latest frames', p.latest], ['alerts', 'Latest alert frames', p.alerts]].forEach(function (l) {
        if (l[0] === 'alerts' && l[2].length === 0) return;
        var keys = l[2].map(function (f) {
          var key = name + '\n' + l[0] + '\n' + f.id;
          keep[key] = tiles[key] || tile(name, f);
          return key;
        });
        lanes.push({ label: l[1], keys: keys });
      });
      plan.push({ name: name, lanes: lanes });
    });
    return { plan: plan, keep: keep };
  }
  function commitFrames(prepared) {
    if (prepared.plan.length === 0) return;
    var frag = document.createDocumentFragment();
    prepared.plan.forEach(function (p) {
      var div = el('div', 'pipeline-frames');
      div.appendChild(el('h3', '', p.name));
      p.lanes.forEach(function (lane) {
        div.appendChild(el('p', 'strip-label', lane.label));
        var s = el('div', 'strip');
        lane.keys.forEach(function (k) { s.appendChild(prepared.keep[k]); });
        div.appendChild(s);
      });
      frag.appendChild(div);
    });
    tiles = prepared.keep;
    put($('frames'), frag);
  }

  function renderAlerts(alerts) {
    fillBody($('alerts'), alerts.map(function (a) {
      var label = a.label + (a.asset ? ' · ' + a.asset : '') + (a.state ? ' (' + a.state + ')' : '');
      return row([
        clock(a.timestamp),
        a.pipeline,
        a.kind,
        td(badge(a.severity, severityKind(a.severity))),
        label,
        td(num(a.score, 3) + ' / ' + num(a.threshold, 3), 'num'),
        a.model + ' ' + a.version,
        td(ms(a.latencyMs), 'num'),
        td(a.origin, 'wrap'),
        a.published ? 'yes' : 'queued',
      ]);
    }));
    $('alerts-empty').hidden = alerts.length > 0;
  }

  function mergeHistory(h, now) {
    if (!h) return;
    state.windowMs = h.windowMs;
    var from = now - h.windowMs;
    Object.keys(h.pipelines).forEach(function (name) {
      var p = h.pipelines[name];
      var s = state.series[name] || (state.series[name] = []);
      p.points.forEach(function (pt) {
        if (s.length === 0 || pt[0] > s[s.length - 1][0]) s.push(pt);
        if (pt[0] > state.since) state.since = pt[0];
      });
      while (s.length > 0 && s[0][0] < from) s.shift();
      state.meta[name] = p;
    });
  }
  function niceMax(v) {
    var steps = [1, 2, 2.5, 5, 10];
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function span(ms) {
    return ms >= 120000 ? Math.round(ms / 60000) + ' min' : Math.round(ms / 1000) + ' s';
  }
  function chart(name, meta, points, now, firstT) {
    var W = 480, H = 150, L = 48, R = 8, T = 10, B = 20;
    // Until the window is full, the chart spans what there is rather than a mostly empty axis.
    var windowMs = Math.min(state.windowMs, Math.max(30000, now - firstT));
    var top = meta.budgetMs * 1.2;
    points.forEach(function (p) { if (p[4] !== null && p[4] > top) top = p[4]; });
    top = niceMax(top * 1.05);
    var x = function (t) { return L + ((t - (now - windowMs)) / windowMs) * (W - L - R); };
    var y = function (v) { return T + (1 - v / top) * (H - T - B); };
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' });
    s.setAttribute('aria-label', 'latency of ' + name);
    [0, top / 2, top].forEach(function (v) {
      s.appendChild(svg('line', { class: 'axis', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      var label = v >= 1000 ? Math.round(v / 100) / 10 + ' s' : Math.round(v) + ' ms';
      s.appendChild(svg('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end' }, label));
    });
    s.appendChild(svg('text', { x: L, y: H - 6 }, '−' + span(windowMs)));
    s.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'));
    var by = y(meta.budgetMs);
    s.appendChild(svg('line', { class: 'budget', x1: L, x2: W - R, y1: by, y2: by }));
    s.appendChild(svg('text', { x: W - R - 2, y: by - 4, 'text-anchor': 'end' }, 'budget ' + meta.budgetMs + ' ms'));
    var drawn = 0;
    [['p50', 2], ['p95', 3], ['p99', 4]].forEach(function (k) {
      // Runs of consecutive intervals with samples are lines; a lone one is a dot.
      var runs = [[]];
      points.forEach(function (p) {
        if (p[k[1]] === null) {
          if (runs[runs.length - 1].length > 0) runs.push([]);
          return;
        }
        runs[runs.length - 1].push([x(p[0]).toFixed(1), y(p[k[1]]).toFixed(1)]);
        if (k[0] === 'p99') drawn++;
      });
      var d = '';
      runs.forEach(function (run) {
        if (run.length === 1) s.appendChild(svg('circle', { class: 'dot ' + k[0], cx: run[0][0], cy: run[0][1], r: 2.5 }));
        else if (run.length > 1) d += 'M' + run.map(function (xy) { return xy[0] + ' ' + xy[1]; }).join(' L') + ' ';
      });
      if (d) s.appendChild(svg('path', { class: 'series ' + k[0], d: d }));
    });
    s.setAttribute('data-points', String(drawn));
    if (drawn === 0) {
      s.appendChild(svg('text', { x: (L + W - R) / 2, y: H - B - 8, 'text-anchor': 'middle' }, 'nothing scored in this time'));
    }
    return s;
  }
  function renderLatency(d) {
    mergeHistory(d.history, d.now);
    var telemetry = {};
    (d.telemetryPipelines || []).forEach(function (p) { telemetry[p.name] = true; });
    var kind = function (name) { return state.meta[name].kind || (telemetry[name] ? 'window' : 'frame'); };
    var names = Object.keys(state.meta).sort(function (a, b) {
      var ka = kind(a) === 'window' ? 1 : 0, kb = kind(b) === 'window' ? 1 : 0;
      return ka - kb || (a < b ? -1 : a > b ? 1 : 0);
    });
    if (names.length === 0) return;
    var firstT = d.now;
    names.forEach(function (name) {
      var s = state.series[name];
      if (s && s.length > 0 && s[0][0] < firstT) firstT = s[0][0];
    });
    var frag = document.createDocumentFragment();
    names.forEach(function (name) {
      var meta = state.meta[name];
      var points = state.series[name] || [];
      var box = el('div', 'chart');
      box.setAttribute('data-pipeline', name);
      var unit = kind(name) === 'window' ? 'windows/s' : 'samples/s';
      box.appendChild(el('h3', '', name + (kind(name) === 'window' ? ' (telemetry)' : '')));
      box.appendChild(chart(name, meta, points, d.now, firstT));
      var last = points.length ? points[points.length - 1] : undefined;
      var over = points.reduce(function (a, p) { return a + p[6]; }, 0);
      var facts = [
        (last ? num(last[1], 1) : '–') + ' ' + unit,
        'p99 now ' + (last ? ms(last[4]) : '–'),
        over + ' over budget',
        counted(meta.droppedByReason) ? 'dropped: ' + counted(meta.droppedByReason) : 'no drops',
      ];
      box.appendChild(el('div', 'facts-line', facts.join(' · ')));
      frag.appendChild(box);
    });
    put($('latency'), frag);
  }

  function renderModels(models) {
    fillBody($('models'), models.map(function (m) {
      var st = m.ready ? badge('ready', 'ok') : m.error ? badge('failed', 'bad') : badge('loading', 'warn');
      var stateCell = td(st);
      if (m.error) add(stateCell, el('div', 'muted', m.error));
      var r = m.rollout;
      var rollout = r
        ? [badge(r.state, stateKind(r.state)), r.candidate ? ' candidate ' + r.candidate : '', r.reason ? ' (' + r.reason + ')' : '']
        : '–';
      var rc = td(rollout);
      if (r && r.message) rc.title = r.message;
      var provider = (m.provider || '–') + (m.requested ? ' (asked ' + m.requested.join(', ') + ')' : '');
      return row([m.name, m.model || '–', m.version || '–', m.backend || '–', provider, stateCell, rc]);
    }));
  }

  // Counts come from a status the server reuses for a few seconds: rates are taken between two
  // different ones (statusAt), and kept in between.
  function renderSources(sources, statusAt) {
    var prev = state.prevSources;
    var next = {};
    fillBody($('sources'), sources.map(function (s) {
      var rate = '–';
      if (typeof s.readings === 'number') {
        var p = prev[s.name];
        var r = p ? p.rate : undefined;
        if (p && statusAt > p.at) r = ((s.readings - p.readings) * 1000) / (statusAt - p.at);
        next[s.name] = p && statusAt === p.at ? p : { readings: s.readings, at: statusAt, rate: r };
        if (r !== undefined) rate = num(r, 1);
      }
      var refused = s.rejected ? total(s.rejected) : undefined;
      var rc = td(refused === undefined ? '–' : String(refused), 'num');
      if (refused) rc.title = counted(s.rejected);
      return row([s.name, s.type || '–', td(badge(s.state, stateKind(s.state))), td(rate, 'num'), rc]);
    }));
    state.prevSources = next;
  }

  function renderTelemetry(pipelines) {
    fillBody($('telemetry'), pipelines.map(function (p) {
      var active = entries(p.activeAlerts).map(function (e) {
        var a = e[1];
        var div = el('div');
        add(div, [badge(a.kind, 'bad'), ' ' + e[0] + ' since ' + clock(a.since) + ', score ' + num(a.score, 3)]);
        return div;
      });
      return row([
        p.name,
        (p.model || '–') + ' ' + (p.version || ''),
        td(String(p.assets), 'num'),
        td(String(p.windowsScored), 'num'),
        counted(p.windowsSkipped) || 'none',
        td(active.length ? active : 'none'),
      ]);
    }));
    $('telemetry-empty').hidden = pipelines.length > 0;
  }

  function renderStore(store, upstream) {
    var classes = {};
    Object.keys((store && store.classes) || {}).forEach(function (c) { classes[c] = true; });
    Object.keys(upstream.classes || {}).forEach(function (c) { classes[c] = true; });
    fillBody($('store'), Object.keys(classes).map(function (c) {
      var s = (store && store.classes[c]) || {};
      var u = (upstream.classes || {})[c];
      var disk = td(bytes(s.bytes) + ' / ' + bytes(s.quotaBytes));
      if (s.quotaBytes) {
        var bar = el('span', 'bar');
        var fill = el('span', 'fill' + (s.bytes / s.quotaBytes > 0.9 ? ' over' : ''));
        fill.style.width = Math.min(1, s.bytes / s.quotaBytes) * 100 + '%';
        bar.appendChild(fill);
        disk.insertBefore(document.createTextNode(' '), disk.firstChild);
        disk.insertBefore(bar, disk.firstChild);
      }
      return row([
        c,
        td(num(s.rows), 'num'),
        disk,
        td(u ? num(u.rows) : '–', 'num'),
        u && u.rows > 0 ? duration(u.ageSeconds) : '–',
        td(u ? num(u.delivered) : '–', 'num'),
      ]);
    }));
    var facts = [];
    if (!store) facts.push('store not open');
    else {
      if (store.error) facts.push('store: ' + store.error);
      if (typeof store.outboxAlerts === 'number') facts.push(store.outboxAlerts + ' alerts waiting for the MQTT broker');
    }
    facts.push(upstream.enabled ? 'upstream ' + (upstream.state || 'unknown') + ', ' +
      num(upstream.drainRowsPerSecond) + ' rows/s' + (upstream.lastError ? ' (' + upstream.lastError + ')' : '')
      : 'no upstream forwarding configured');
    $('store-facts').textContent = facts.join(' · ');
  }

  function renderDrift(drift) {
    var box = $('drift');
    var names = Object.keys(drift || {}).sort();
    if (names.length === 0) {
      put(box, el('p', 'muted', 'No reference statistics.'));
      return;
    }
    var frag = el('div', 'drift-models');
    names.forEach(function (name) {
      var p = drift[name];
      var div = el('div', 'drift-model');
      var h = el('h3');
      add(h, [name + ' · ' + p.model + ' ' + p.version + ' ', p.active ? badge('drifting', 'bad') : badge('no drift', 'ok')]);
      div.appendChild(h);
      div.appendChild(el('p', 'muted', p.windowSamples + ' samples in the window · ' + p.alerts + ' drift alerts' +
        (p.lastChange ? ' · last change ' + clock(p.lastChange) : '')));
      if (p.input.length + p.output.length === 0) {
        div.appendChild(el('p', 'muted', 'Not evaluated yet: the window is still filling.'));
        frag.appendChild(div);
        return;
      }
      var table = el('table');
      var head = el('thead');
      var hr = el('tr');
      ['Measure', 'Of', 'Test', 'Value / threshold', '', 'Samples', 'State'].forEach(function (t) {
        hr.appendChild(el('th', '', t));
      });
      head.appendChild(hr);
      table.appendChild(head);
      table.appendChild(el('tbody'));
      var rows = [];
      [['input', p.input], ['output', p.output]].forEach(function (g) {
        g[1].forEach(function (m) {
          var bar = el('span', 'bar');
          var fill = el('span', 'fill' + (m.drifted ? ' over' : ''));
          // Half the bar is the threshold.
          fill.style.width = (m.threshold > 0 ? Math.min(1, m.value / m.threshold / 2) : 0) * 100 + '%';
          bar.appendChild(fill);
          rows.push(row([m.name, g[0], m.test, td(num(m.value, 3) + ' / ' + num(m.threshold, 3), 'num'), td(bar),
            td(String(m.samples), 'num'), td(m.drifted ? badge('drifted', 'bad') : badge('ok', 'ok'))]));
        });
      });
      fillBody(table, rows);
      div.appendChild(table);
      frag.appendChild(div);
    });
    put(box, frag);
  }

  function render(d) {
    if (state.startedAt !== undefined && d.startedAt !== state.startedAt) {
      // The daemon restarted: what was kept belongs to the previous run.
      state.series = {};
      state.meta = {};
      state.since = 0;
      state.prevSources = {};
    }
    state.startedAt = d.startedAt;
    renderHeader(d);
    renderAlerts(d.alerts || []);
    renderLatency(d);
    renderModels(d.models || []);
    renderSources(d.sources || [], d.statusAt || d.now);
    renderTelemetry(d.telemetryPipelines || []);
    renderStore(d.store, d.upstream || {});
    renderDrift(d.drift);
  }

  // The next poll waits for the thumbnails of this one: on a slow link the page slows down
  // instead of piling up requests.
  function imagesSettled() {
    var waiting = newImages.map(function (img) {
      return new Promise(function (resolve) {
        var loaded = function () {
          if (img.decode) img.decode().then(resolve, resolve);
          else resolve();
        };
        if (img.complete) return loaded();
        img.addEventListener('load', loaded);
        img.addEventListener('error', resolve);
      });
    });
    newImages = [];
    return Promise.race([
      Promise.all(waiting),
      new Promise(function (resolve) { setTimeout(resolve, IMAGE_WAIT_MS); }),
    ]);
  }

  function poll() {
    var url = '/api/v1/live' + (state.since ? '?since=' + state.since : '');
    var offline = false;
    fetch(url, { cache: 'no-store', headers: { accept: 'application/json' } })
      .then(
        function (r) {
          if (!r.ok) throw new Error('HTTP ' + r.status);
          return r.json();
        },
        function (err) {
          offline = true;
          throw err;
        },
      )
      .then(function (d) {
        state.failures = 0;
        $('offline').hidden = true;
        render(d);
        var frames = prepareFrames(d.frames);
        return imagesSettled().then(function () { commitFrames(frames); });
      })
      .catch(function (err) {
        state.failures++;
        $('offline').hidden = false;
        if (!offline) console.error('status page:', err);
      })
      .then(schedule);
  }
  function schedule() {
    var delay = state.failures ? Math.min(MAX_BACKOFF_MS, POLL_MS * Math.pow(2, state.failures)) : POLL_MS;
    setTimeout(function () {
      // A page nobody looks at costs the gateway nothing.
      if (!document.hidden) return poll();
      document.addEventListener('visibilitychange', function resume() {
        if (document.hidden) return;
        document.removeEventListener('visibilitychange', resume);
        poll();
      });
    }, delay);
  }
  poll();
})();
`;
