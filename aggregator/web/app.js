/* app.js: spikehound's web pages, a single-page app over the aggregator's
 * JSON and SVG routes. Views are chosen by the URL's fragment:
 *   #spikes?at=&window=&kind=&label=   spikes fleet-wide, grouped by incident
 *   #incidents?since=                  incidents;  #incident/ID  one incident
 *   #kernels?since=&by=                the kernel report (HTML, framed)
 *   #captures?host=                    captures and their hosts; ask for one
 *   #capture/ID/HOST                   heat map, range, flame graphs, downloads
 *
 * Everything the API returns comes from agents and is hostile: it goes into
 * the page only as text (textContent, setAttribute of our own attributes,
 * URL parameters through encodeURIComponent), never as markup. SVGs drawn
 * by the aggregator are parsed as XML and stripped of scripts, event
 * handlers and links before they are put into the page.
 */
(function () {
  'use strict';

  var main = document.getElementById('main');

  /* ---- DOM helpers ---- */

  /* el(tag, attrs, children...): children are nodes or text (never markup). */
  function el(tag, attrs) {
    var e = document.createElement(tag), k, i, c;
    if (attrs) {
      for (k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] === null ||
            attrs[k] === undefined) continue;
        if (k === 'text') e.textContent = String(attrs[k]);
        else if (k === 'onclick' || k === 'onsubmit' || k === 'onchange') e[k] = attrs[k];
        else e.setAttribute(k, String(attrs[k]));
      }
    }
    for (i = 2; i < arguments.length; i++) {
      c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) e.appendChild(typeof x === 'object' ? x : document.createTextNode(String(x))); });
      else e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function show() {
    clear(main);
    for (var i = 0; i < arguments.length; i++) if (arguments[i]) main.appendChild(arguments[i]);
  }

  function errorBox(msg) { return el('p', { 'class': 'error', role: 'alert', text: msg }); }

  /* link to a view of this app: name plus URL-encoded parameters */
  function viewHref(name, params) {
    var q = [], k;
    for (k in params || {}) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== '')
        q.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(params[k])));
    }
    return '#' + name + (q.length ? '?' + q.join('&') : '');
  }

  function apiUrl(path, params) {
    var q = [], k;
    for (k in params || {}) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== '')
        q.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(params[k])));
    }
    return path + (q.length ? '?' + q.join('&') : '');
  }

  /* getJSON resolves to the parsed body or rejects with the API's error text. */
  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin' }).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = JSON.parse(t); } catch (e) { j = null; }
        if (!r.ok) throw new Error((j && typeof j.error === 'string' ? j.error : 'HTTP ' + r.status) + ' (' + url + ')');
        if (j === null) throw new Error('not JSON: ' + url);
        return j;
      });
    });
  }

  /* getSVG resolves to a sanitized <svg> element of this document. */
  function getSVG(url) {
    return fetch(url, { credentials: 'same-origin' }).then(function (r) {
      return r.text().then(function (t) {
        if (!r.ok) {
          var msg = 'HTTP ' + r.status;
          try { var j = JSON.parse(t); if (typeof j.error === 'string') msg = j.error; } catch (e) { /* not JSON */ }
          throw new Error(msg);
        }
        return sanitizeSVG(t);
      });
    });
  }

  /* sanitizeSVG parses text as XML and returns its <svg> without scripts,
   * foreign content, event handler attributes or links. */
  function sanitizeSVG(text) {
    var doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    var root = doc.documentElement, all, i, j, n, a;
    if (!root || root.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length)
      throw new Error('the server sent an SVG that does not parse');
    ['script', 'foreignObject', 'iframe', 'object', 'embed', 'a', 'use', 'image', 'animate', 'set']
      .forEach(function (tag) {
        var list = root.getElementsByTagName(tag);
        for (var k = list.length - 1; k >= 0; k--) list[k].parentNode.removeChild(list[k]);
      });
    all = root.getElementsByTagName('*');
    for (i = -1; i < all.length; i++) {
      n = i < 0 ? root : all[i];
      for (j = n.attributes.length - 1; j >= 0; j--) {
        a = n.attributes[j];
        if (/^on/i.test(a.name) || /href$/i.test(a.name)) n.removeAttribute(a.name);
      }
    }
    return document.importNode(root, true);
  }

  /* ---- formatting ---- */

  function isoTime(ns) {
    if (ns === null || ns === undefined) return '';
    var ms = Math.floor(Number(ns) / 1e6);
    var d = new Date(ms);
    if (isNaN(d.getTime())) return String(ns);
    return d.toISOString().replace('T', ' ').replace('Z', '');
  }

  function dur(ns) {
    if (ns === null || ns === undefined) return '';
    var v = Number(ns);
    if (v >= 1e9) return (v / 1e9).toFixed(2) + ' s';
    if (v >= 1e6) return (v / 1e6).toFixed(1) + ' ms';
    if (v >= 1e3) return (v / 1e3).toFixed(0) + ' µs';
    return v + ' ns';
  }

  function bytes(n) {
    n = Number(n) || 0;
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
    if (n >= 1024) return (n / 1024).toFixed(1) + ' KiB';
    return n + ' B';
  }

  function num(v, digits) {
    if (v === null || v === undefined) return '';
    if (typeof v !== 'number') return String(v);
    if (Math.abs(v) > 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
    return digits === undefined ? String(v) : v.toFixed(digits);
  }

  function str(v) {
    if (v === null || v === undefined) return '';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  function task(t) {
    if (!t || typeof t !== 'object') return '';
    var s = str(t.comm) + (t.pid ? '[' + t.pid + (t.tid && t.tid !== t.pid ? '/' + t.tid : '') + ']' : '');
    if (t.role) s += ' (' + str(t.role) + ')';
    return s;
  }

  function table(headers, rows) {
    return el('table', null,
      el('thead', null, el('tr', null, headers.map(function (h) {
        return el('th', { 'class': /^#|^n$|count|events|hosts|dur|p$|score|bytes|chunks/i.test(h) ? 'num' : null, text: h });
      }))),
      el('tbody', null, rows));
  }

  function td(content, cls) {
    var c = el('td', cls ? { 'class': cls } : null);
    if (content !== null && content !== undefined) {
      if (typeof content === 'object' && content.nodeType) c.appendChild(content);
      else c.textContent = String(content);
    }
    return c;
  }

  function setNav(name) {
    ['spikes', 'incidents', 'kernels', 'captures'].forEach(function (n) {
      var a = document.getElementById('nav-' + n);
      if (a) a.className = n === name ? 'active' : '';
    });
  }

  /* ---- #spikes ---- */

  function field(label, name, value, placeholder, title) {
    return el('label', null, label,
      el('input', { name: name, value: value || '', placeholder: placeholder || '', title: title || '' }));
  }

  function formValues(form) {
    var v = {}, i, e;
    for (i = 0; i < form.elements.length; i++) {
      e = form.elements[i];
      if (e.name) v[e.name] = e.value.trim();
    }
    return v;
  }

  function spikesView(p) {
    var q = { at: p.at || 'now', window: p.window || '1h', kind: p.kind || '', label: p.label || '' };
    var form = el('form', { 'class': 'query', id: 'spikes-form' },
      field('time', 'at', q.at, 'now, -10m, 2025-11-22T10:21:07Z', 'ISO 8601, "now", "-10m" or Unix ns'),
      field('± window', 'window', q.window, '10s, 5m, 1h'),
      field('kind', 'kind', q.kind, 'runq, reclaim, … (any)'),
      field('label', 'label', q.label, 'k=v (any)'),
      el('button', { 'class': 'primary', type: 'submit', text: 'Search' }));
    form.onsubmit = function (ev) {
      ev.preventDefault();
      location.hash = viewHref('spikes', formValues(form));
    };
    var out = el('div', { id: 'spikes-result' }, el('p', { 'class': 'muted', text: 'searching…' }));
    show(el('h1', { text: 'Spikes across the fleet' }), form, out);

    var params = { at: q.at, window: q.window, limit: 1000 };
    if (q.kind) params.kind = q.kind;
    if (q.label) params.label = q.label;
    getJSON(apiUrl('/api/spikes', params)).then(function (doc) {
      clear(out);
      var spikes = Array.isArray(doc.spikes) ? doc.spikes : [];
      var incidents = {}, groups = [], byKey = {};
      (Array.isArray(doc.incidents) ? doc.incidents : []).forEach(function (i) { incidents[String(i.incident_id)] = i; });
      spikes.forEach(function (s) {
        var key = s.incident_id === null || s.incident_id === undefined ? 'none' : String(s.incident_id);
        if (!byKey[key]) { byKey[key] = { key: key, spikes: [] }; groups.push(byKey[key]); }
        byKey[key].spikes.push(s);
      });
      groups.sort(function (a, b) { return (a.key === 'none') - (b.key === 'none'); });
      out.appendChild(el('p', { 'class': 'muted', id: 'spikes-summary' },
        spikes.length + ' spike' + (spikes.length === 1 ? '' : 's') + ' from ' + isoTime(doc.from_ns) +
        ' to ' + isoTime(doc.to_ns) + ' UTC' + (doc.truncated ? ' (first ' + doc.limit + ' only)' : '') +
        (groups.length ? ', in ' + groups.filter(function (g) { return g.key !== 'none'; }).length + ' incident(s)' : '')));
      if (!spikes.length) out.appendChild(el('p', { text: 'No spikes in this window.' }));
      groups.forEach(function (g) { out.appendChild(spikeGroup(g, incidents[g.key])); });
    }).catch(function (e) { clear(out); out.appendChild(errorBox(e.message)); });
  }

  function spikeGroup(g, inc) {
    var head;
    if (g.key === 'none') {
      head = el('h2', { text: 'Not (yet) in an incident' });
    } else {
      head = el('h2', null, el('a', { href: '#incident/' + encodeURIComponent(g.key), text: 'Incident #' + g.key }),
        inc ? ' — ' + str(inc.type) + ' ' + str(inc.kind) + ', ' + str(inc.hosts) + ' host(s), ' + str(inc.events) + ' event(s)' : '');
    }
    var sus = inc && inc.top_suspect ? el('p', null, 'Top suspect: ',
      el('code', { text: str(inc.top_suspect.feature) }),
      ' — on ' + str(inc.top_suspect.spiking_with) + '/' + str(inc.top_suspect.spiking_total) +
      ' spiking hosts vs ' + str(inc.top_suspect.others_with) + '/' + str(inc.top_suspect.others_total) +
      ' others, p = ' + num(inc.top_suspect.p_value)) : null;
    var rows = g.spikes.map(function (s) {
      var ev = s.evidence && typeof s.evidence === 'object' ? s.evidence : {};
      var culprits = Array.isArray(ev.culprits) ? ev.culprits.map(task).join('; ') : '';
      var host = s.hostname || s.host_id;
      var details = el('details', null, el('summary', { text: 'evidence' }),
        el('pre', { text: JSON.stringify(s.evidence, null, 1) }));
      return el('tr', { 'class': 'spike' },
        td(isoTime(s.ts_ns), 'mono'),
        td(el('span', null, str(host), ' ',
          el('a', { href: viewHref('captures', { host: str(s.host_id) }), title: 'captures of this host', text: '(captures)' }))),
        td(str(s.kernel_release), 'mono'),
        td(str(s.kind)),
        td(dur(s.duration_ns), 'num'),
        td(str(s.cpu), 'num'),
        td(task(s.victim)),
        td(str(s.detail)),
        td(culprits),
        td(details));
    });
    return el('section', { 'class': 'group' }, head, sus,
      table(['time (UTC)', 'host', 'kernel', 'kind', 'duration', 'cpu', 'victim', 'detail', 'culprits', ''], rows));
  }

  /* ---- #incidents, #incident/ID ---- */

  function incidentsView(p) {
    var since = p.since || '1d';
    var form = el('form', { 'class': 'query' }, field('since', 'since', since, '1d, 7d'),
      el('button', { 'class': 'primary', type: 'submit', text: 'Show' }));
    form.onsubmit = function (ev) { ev.preventDefault(); location.hash = viewHref('incidents', formValues(form)); };
    var out = el('div', { id: 'incidents-result' }, el('p', { 'class': 'muted', text: 'loading…' }));
    show(el('h1', { text: 'Incidents' }), form, out);
    getJSON(apiUrl('/api/incidents', { since: since })).then(function (doc) {
      clear(out);
      var list = Array.isArray(doc.incidents) ? doc.incidents : [];
      out.appendChild(el('p', { 'class': 'muted', text: str(doc.total) + ' incident(s)' }));
      out.appendChild(table(['#', 'kind', 'type', 'first (UTC)', 'last (UTC)', 'hosts', 'events', 'period', 'top suspect', 'p'],
        list.map(function (i) {
          var s = i.top_suspect || {};
          return el('tr', null,
            td(el('a', { href: '#incident/' + encodeURIComponent(String(i.incident_id)), text: '#' + str(i.incident_id) }), 'num'),
            td(str(i.kind)), td(str(i.type)), td(isoTime(i.first_ns), 'mono'), td(isoTime(i.last_ns), 'mono'),
            td(str(i.hosts), 'num'), td(str(i.events), 'num'),
            td(i.period_s ? num(i.period_s, 1) + ' s ± ' + num(i.period_jitter_s, 1) : ''),
            td(el('code', { text: str(s.feature) })), td(num(s.p_value), 'num'));
        })));
    }).catch(function (e) { clear(out); out.appendChild(errorBox(e.message)); });
  }

  function incidentView(id) {
    var out = el('div', { id: 'incident-result' }, el('p', { 'class': 'muted', text: 'loading…' }));
    show(el('h1', { text: 'Incident #' + id }), out);
    getJSON(apiUrl('/api/incident', { id: id })).then(function (doc) {
      var i = doc.incident || {};
      clear(out);
      out.appendChild(el('p', null, str(i.type) + ' ' + str(i.kind) + ': ' + str(i.events) + ' event(s) on ' +
        str(i.hosts) + ' host(s), ' + isoTime(i.first_ns) + ' .. ' + isoTime(i.last_ns) + ' UTC' +
        (i.period_s ? ', every ' + num(i.period_s, 1) + ' s ± ' + num(i.period_jitter_s, 1) : '')));
      out.appendChild(el('h2', { text: 'Suspects, ranked' }));
      out.appendChild(table(['#', 'feature', 'basis', 'spiking hosts with', 'other hosts with', 'p', 'log10 p', 'score', 'evidence events', 'role', 'example'],
        (doc.suspects || []).map(function (s) {
          return el('tr', { 'class': 'suspect' }, td(str(s.rank), 'num'), td(el('code', { text: str(s.feature) })), td(str(s.basis)),
            td(str(s.spiking_with) + ' / ' + str(s.spiking_total), 'num'),
            td(str(s.others_with) + ' / ' + str(s.others_total), 'num'),
            td(num(s.p_value), 'num'), td(num(s.log10_p, 2), 'num'), td(num(s.score, 2), 'num'),
            td(str(s.evidence_events) + ' / ' + str(s.evidence_total), 'num'), td(str(s.evidence_role)),
            td(el('code', { text: str(s.example) })));
        })));
      out.appendChild(el('h2', { text: 'Hosts' }));
      out.appendChild(table(['host', 'kernel', 'events', 'first (UTC)', 'last (UTC)', ''],
        (doc.hosts || []).map(function (h) {
          return el('tr', null, td(str(h.hostname || h.host_id)), td(str(h.kernel_release), 'mono'), td(str(h.events), 'num'),
            td(isoTime(h.first_ns), 'mono'), td(isoTime(h.last_ns), 'mono'),
            td(el('a', { href: viewHref('captures', { host: str(h.host_id) }), text: 'captures' })));
        })));
      out.appendChild(el('h2', { text: 'A representative event per host' }));
      out.appendChild(table(['time (UTC)', 'host', 'kind', 'duration', 'victim', 'detail', 'culprits'],
        (doc.events || []).map(function (s) {
          var ev = s.evidence && typeof s.evidence === 'object' ? s.evidence : {};
          return el('tr', null, td(isoTime(s.ts_ns), 'mono'), td(str(s.hostname || s.host_id)), td(str(s.kind)),
            td(dur(s.duration_ns), 'num'), td(task(s.victim)), td(str(s.detail)),
            td(Array.isArray(ev.culprits) ? ev.culprits.map(task).join('; ') : ''));
        })));
    }).catch(function (e) { clear(out); out.appendChild(errorBox(e.message)); });
  }

  /* ---- #kernels ---- */

  function kernelsView(p) {
    var q = { since: p.since || '7d', by: p.by || '' };
    var form = el('form', { 'class': 'query' }, field('since', 'since', q.since, '7d'),
      field('by', 'by', q.by, 'kernel or label:KEY'),
      el('button', { 'class': 'primary', type: 'submit', text: 'Show' }));
    form.onsubmit = function (ev) { ev.preventDefault(); location.hash = viewHref('kernels', formValues(form)); };
    var src = apiUrl('/api/kernels', { since: q.since, by: q.by, format: 'html' });
    show(el('h1', { text: 'Kernel comparison' }), form,
      el('p', null, el('a', { href: src, target: '_blank', rel: 'noopener', text: 'Open the report as a page' }),
        ' · ', el('a', { href: apiUrl('/api/kernels', { since: q.since, by: q.by }), text: 'as JSON' })),
      el('iframe', { 'class': 'report', src: src, title: 'kernel report', sandbox: 'allow-same-origin' }));
  }

  /* ---- #captures ---- */

  function capturesView(p) {
    var host = p.host || '';
    var form = el('form', { 'class': 'query', id: 'capture-form' },
      el('label', null, 'hosts', el('select', { name: 'target' },
        el('option', { value: 'host', text: 'host =' }), el('option', { value: 'label', text: 'label k=v' }),
        el('option', { value: 'all', text: 'all hosts' }))),
      field('host / label', 'value', host, 'hostname or k=v'),
      field('at', 'at', 'now', 'now, -30s, ISO 8601'),
      field('before', 'before', '30s'), field('after', 'after', '5s'),
      el('button', { 'class': 'primary', type: 'submit', text: 'Capture' }));
    var msg = el('div', { id: 'capture-msg' });
    var out = el('div', { id: 'captures-result' }, el('p', { 'class': 'muted', text: 'loading…' }));
    form.onsubmit = function (ev) {
      ev.preventDefault();
      var v = formValues(form), params = { at: v.at, before: v.before, after: v.after };
      if (v.target === 'all') params.all = '1';
      else params[v.target] = v.value;
      clear(msg);
      msg.appendChild(el('p', { 'class': 'muted', text: 'asking…' }));
      getJSON(apiUrl('/api/capture/new', params)).then(function (r) {
        clear(msg);
        msg.appendChild(el('p', null, 'Asked ' + str(r.hosts) + ' host(s) for capture ',
          el('code', { text: str(r.capture_id) }), '; the list refreshes below.'));
        loadCaptures(out, host);
      }).catch(function (e) { clear(msg); msg.appendChild(errorBox(e.message)); });
    };
    show(el('h1', { text: 'Captures' + (host ? ' of ' + host : '') }),
      el('p', { 'class': 'muted', text: 'A capture is the flight recorder\u2019s full content (stack samples, metrics, events) around a time, pulled from the agents. Spikes trigger them automatically.' }),
      form, msg, out);
    loadCaptures(out, host);
  }

  function loadCaptures(out, host) {
    getJSON(apiUrl('/api/captures', { since: '14d', limit: 200 })).then(function (doc) {
      clear(out);
      var caps = Array.isArray(doc.captures) ? doc.captures : [];
      if (host) {
        caps = caps.filter(function (c) {
          return (c.hosts || []).some(function (h) { return h.host_id === host || h.hostname === host; });
        });
        out.appendChild(el('p', null, el('a', { href: '#captures', text: 'show all hosts\u2019 captures' })));
      }
      if (!caps.length) out.appendChild(el('p', { text: 'No captures' + (host ? ' of this host' : '') + ' in the last 14 days.' }));
      caps.forEach(function (c) {
        out.appendChild(el('section', { 'class': 'group capture' },
          el('h2', null, el('code', { text: str(c.capture_id) }), ' — ' + str(c.trigger) + ', ' +
            isoTime(c.from_ns) + ' .. ' + isoTime(c.to_ns) + ' UTC'),
          table(['host', 'role', 'status', 'reason', 'bytes', 'chunks', ''],
            (c.hosts || []).map(function (h) {
              var view = h.status === 'complete'
                ? el('a', { href: '#capture/' + encodeURIComponent(str(c.capture_id)) + '/' + encodeURIComponent(str(h.host_id)), text: 'view' })
                : null;
              return el('tr', { 'class': 'capture-host' }, td(str(h.hostname || h.host_id)), td(str(h.role)),
                td(el('span', { 'class': 'status-' + String(h.status).replace(/[^a-z]/g, ''), text: str(h.status) })),
                td(str(h.reason)), td(bytes(h.bytes), 'num'), td(str(h.chunks) + ' / ' + str(h.total), 'num'), td(view));
            }))));
      });
    }).catch(function (e) { clear(out); out.appendChild(errorBox(e.message)); });
  }

  /* ---- #capture/ID/HOST ---- */

  function captureView(id, host, params) {
    var base = { id: id, host: host };
    var info = el('div', { id: 'capture-info' }, el('p', { 'class': 'muted', text: 'loading…' }));
    var heat = el('div', { 'class': 'svgbox', id: 'heatmap-box' }, el('p', { 'class': 'muted', text: 'drawing the heat map…' }));
    var sel = el('p', { id: 'range', 'class': 'bar' }, 'Click a cell where the range starts, then the cell where it ends.');
    var flame = el('div', { 'class': 'svgbox', id: 'flame-box' });
    var diff = el('div', { 'class': 'svgbox', id: 'diff-box' });
    var links = el('p', { 'class': 'bar', id: 'downloads' });
    show(el('h1', null, 'Capture ', el('code', { text: id })), info,
      el('h2', { text: 'Sub-second heat map' }),
      el('p', { 'class': 'muted', text: 'Columns are seconds, rows the offset within the second; darker cells hold more stack samples; red marks below the axis are spike events.' }),
      heat, sel, links,
      el('h2', { id: 'flame-title', text: 'Flame graph: all samples' }), flame,
      el('h2', { text: 'Differential flame graph: the range vs the same time just before it' }), diff);

    getJSON(apiUrl('/api/capture', { id: id })).then(function (c) {
      clear(info);
      var h = (c.hosts || []).filter(function (x) { return x.host_id === host || x.hostname === host; })[0] || {};
      info.appendChild(el('p', null, 'Host ', el('strong', { text: str(h.hostname || host) }), ' — status ',
        el('span', { 'class': 'status-' + String(h.status).replace(/[^a-z]/g, ''), id: 'host-status', text: str(h.status) }),
        ', ' + bytes(h.bytes) + ' compressed, trigger ' + str(c.trigger) + ', asked ' + isoTime(c.from_ns) + ' .. ' +
        isoTime(c.to_ns) + ' UTC. ', el('a', { href: viewHref('captures', { host: str(h.host_id || host) }), text: 'other captures of this host' })));
    }).catch(function (e) { clear(info); info.appendChild(errorBox(e.message)); });

    setDownloads(links, base, null);
    loadSVG(flame, apiUrl('/api/capture/flame', base));
    diff.appendChild(el('p', { 'class': 'muted', text: 'Pick a range in the heat map first.' }));

    /* picked(lo, hi): seconds from +0; the range is also kept in the
     * URL (#capture/ID/HOST?from=LO&to=HI) so that it can be shared */
    function picked(lo, hi) {
        var r = { id: id, host: host, from: '+' + lo.toFixed(3), to: '+' + hi.toFixed(3) };
        var frag = '#capture/' + encodeURIComponent(id) + '/' + encodeURIComponent(host) +
          '?from=' + lo.toFixed(3) + '&to=' + hi.toFixed(3);
        if (location.hash !== frag) history.replaceState(null, '', frag);
        clear(sel);
        sel.appendChild(document.createTextNode('Range +' + lo.toFixed(3) + 's .. +' + hi.toFixed(3) + 's (' +
          ((hi - lo) * 1000).toFixed(0) + ' ms). CLI: '));
        sel.appendChild(el('code', { text: 'spikehound capture show ' + id + ' --from +' + lo.toFixed(3) + 's --to +' + hi.toFixed(3) + 's --svg out.svg' }));
        document.getElementById('flame-title').textContent = 'Flame graph: +' + lo.toFixed(3) + 's .. +' + hi.toFixed(3) + 's';
        setDownloads(links, base, r);
        loadSVG(flame, apiUrl('/api/capture/flame', r));
        loadSVG(diff, apiUrl('/api/capture/flame', { id: id, host: host, from: r.from, to: r.to, diff: 'before' }));
    }

    getSVG(apiUrl('/api/capture/heatmap', base)).then(function (svg) {
      clear(heat);
      heat.appendChild(svg);
      wireHeatmap(svg, picked);
    }).catch(function (e) { clear(heat); heat.appendChild(errorBox(e.message)); });
    var lo = parseFloat(params.from), hi = parseFloat(params.to);
    if (isFinite(lo) && isFinite(hi) && hi > lo && lo >= 0) picked(lo, hi);
  }

  function setDownloads(links, base, range) {
    var p = range || base;
    clear(links);
    links.appendChild(document.createTextNode(range ? 'Download the range: ' : 'Download all samples: '));
    links.appendChild(el('a', { href: apiUrl('/api/capture/folded', p), download: '', text: 'folded stacks' }));
    links.appendChild(el('a', { href: apiUrl('/api/capture/pprof', p), download: '', text: 'pprof (gzipped)' }));
    links.appendChild(el('a', { href: apiUrl('/api/capture/flame', p), target: '_blank', rel: 'noopener', text: 'flame graph SVG' }));
    links.appendChild(el('a', { href: apiUrl('/api/capture/data', base), download: '', text: 'raw capture (zstd)' }));
  }

  function loadSVG(box, url) {
    clear(box);
    box.appendChild(el('p', { 'class': 'muted', text: 'drawing…' }));
    getSVG(url).then(function (svg) { clear(box); box.appendChild(svg); })
      .catch(function (e) { clear(box); box.appendChild(errorBox(e.message)); });
  }

  /* wireHeatmap: a click picks the start cell, the next the end cell;
   * done(lo, hi) gets the range in seconds from the capture's +0. */
  function wireHeatmap(svg, done) {
    var g = svg.querySelector('#heatmap');
    var rows = g ? Number(g.getAttribute('data-rows')) || 50 : 50;
    var cells = svg.querySelectorAll('rect.c'), start = null, startCell = null;
    function at(c) { return Number(c.getAttribute('data-s')) + Number(c.getAttribute('data-r')) / rows; }
    function mark(lo, hi) {
      for (var i = 0; i < cells.length; i++) {
        var t = at(cells[i]);
        var cls = 'c' + (t >= lo - 1e-9 && t < hi - 1e-9 ? ' inrange' : '');
        cells[i].setAttribute('class', cls);
      }
    }
    for (var i = 0; i < cells.length; i++) {
      cells[i].addEventListener('click', function (ev) {
        var c = ev.currentTarget, t = at(c);
        if (start === null) {
          start = t; startCell = c;
          mark(t, t);
          c.setAttribute('class', 'c picked');
        } else {
          var lo = Math.min(start, t), hi = Math.max(start, t) + 1 / rows;
          mark(lo, hi);
          startCell.setAttribute('class', 'c picked');
          c.setAttribute('class', 'c picked');
          start = null;
          done(lo, hi);
        }
      });
    }
  }

  /* ---- routing ---- */

  function parseHash() {
    var h = location.hash.replace(/^#/, ''), q = h.indexOf('?'), path = q < 0 ? h : h.slice(0, q);
    var params = {};
    if (q >= 0) {
      h.slice(q + 1).split('&').forEach(function (kv) {
        if (!kv) return;
        var i = kv.indexOf('='), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : kv.slice(i + 1);
        try { params[decodeURIComponent(k)] = decodeURIComponent(v.replace(/\+/g, ' ')); } catch (e) { /* skip */ }
      });
    }
    var parts = path.split('/').map(function (x) { try { return decodeURIComponent(x); } catch (e) { return ''; } });
    return { name: parts[0] || 'spikes', parts: parts, params: params };
  }

  function route() {
    var r = parseHash();
    setNav(r.name === 'incident' ? 'incidents' : r.name === 'capture' ? 'captures' : r.name);
    document.title = 'spikehound — ' + r.name;
    switch (r.name) {
      case 'incidents': incidentsView(r.params); break;
      case 'incident': incidentView(r.parts[1] || ''); break;
      case 'kernels': kernelsView(r.params); break;
      case 'captures': capturesView(r.params); break;
      case 'capture': captureView(r.parts[1] || '', r.parts[2] || '', r.params); break;
      default: setNav('spikes'); spikesView(r.params);
    }
  }

  window.addEventListener('hashchange', route);
  route();
})();
