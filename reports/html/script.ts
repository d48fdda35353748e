/**
 * The page's script, kept free of data (it reads the DOM), so its hash — and so the CSP — does not
 * depend on the run. It filters the case tables, opens a result a link or the address points at,
 * and fills step logs and console lines from the packed results when a result is opened (the
 * browser's own DecompressionStream: no network, so it works from file://).
 */
export const PAGE_SCRIPT = `(function () {
  'use strict';
  function all(sel, el) { return Array.prototype.slice.call((el || document).querySelectorAll(sel)); }
  var packed = null;
  function results() {
    if (!packed) {
      packed = new Promise(function (resolve) {
        var el = document.getElementById('vfio-results');
        if (!el) throw new Error('no packed results in this page');
        if (typeof DecompressionStream === 'undefined') throw new Error('this browser has no DecompressionStream');
        var b = atob(el.textContent.trim());
        var u = new Uint8Array(b.length);
        for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
        var s = new Blob([u]).stream().pipeThrough(new DecompressionStream('gzip'));
        resolve(new Response(s).text().then(JSON.parse));
      });
    }
    return packed;
  }
  function fill(det) {
    if (det.hasAttribute('data-filled')) return;
    det.setAttribute('data-filled', 'pending');
    var n = det.getAttribute('data-n');
    var pres = all('pre[data-n="' + n + '"]', det);
    results().then(function (res) {
      var r = res.results[Number(n)];
      pres.forEach(function (p) {
        var f = p.getAttribute('data-fault');
        p.textContent = f === null ? (r.log || []).join('\\n') : r.faults[Number(f)].lines.join('\\n');
      });
      det.setAttribute('data-filled', 'yes');
    }, function (e) {
      pres.forEach(function (p) { if (p.classList.contains('step-log')) p.textContent = 'The step log could not be unpacked here (' + e.message + '); it is in results.json.'; });
      det.setAttribute('data-filled', 'failed');
    });
  }
  document.addEventListener('toggle', function (ev) {
    var d = ev.target;
    if (d.open && d.classList && d.classList.contains('result')) fill(d);
  }, true);
  function reveal(id) {
    var el = id && document.getElementById(id);
    if (!el) return;
    for (var d = el; d; d = d.parentElement) if (d.tagName === 'DETAILS') d.open = true;
    el.scrollIntoView({ block: 'start' });
  }
  window.addEventListener('hashchange', function () { reveal(location.hash.slice(1)); });
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest ? ev.target.closest('a[href^="#r-"]') : null;
    if (a) reveal(a.getAttribute('href').slice(1));
  });

  var form = document.getElementById('filters');
  if (form) {
    var text = document.getElementById('f-text');
    var prof = document.getElementById('f-profile');
    var shown = document.getElementById('shown');
    var sections = all('section.suite');
    var apply = function () {
      var cats = {};
      all('input[name=cat]', form).forEach(function (b) { if (b.checked) cats[b.value] = true; });
      var q = text.value.trim().toLowerCase();
      var p = prof.value;
      var total = 0;
      var visible = 0;
      sections.forEach(function (sec) {
        var rows = all('tr.case', sec);
        var n = 0;
        all('[data-profile]', sec).forEach(function (c) { c.hidden = !!p && c.getAttribute('data-profile') !== p; });
        rows.forEach(function (row) {
          var any = false;
          all('td.cell', row).forEach(function (td) {
            var cs = (td.getAttribute('data-cat') || '').split(' ');
            var hit = false;
            for (var i = 0; i < cs.length; i++) if (cs[i] && cats[cs[i]]) hit = true;
            td.classList.toggle('dim', !hit);
            if (hit && !td.hidden) any = true;
          });
          var show = any && (!q || row.getAttribute('data-id').toLowerCase().indexOf(q) >= 0);
          row.hidden = !show;
          if (show) n++;
        });
        total += rows.length;
        visible += n;
        sec.hidden = n === 0;
        sec.querySelector('.shown').textContent = n + ' shown';
      });
      shown.textContent = 'showing ' + visible + ' of ' + total + ' cases';
      shown.setAttribute('data-visible', String(visible));
    };
    form.addEventListener('input', apply);
    form.addEventListener('change', apply);
    form.addEventListener('submit', function (ev) { ev.preventDefault(); });
    text.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') { text.value = ''; apply(); }
    });
    document.addEventListener('keydown', function (ev) {
      var t = ev.target;
      var typing = t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA');
      if (ev.key === '/' && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) { ev.preventDefault(); text.focus(); }
    });
    all('#matrix a.mx').forEach(function (a) {
      a.addEventListener('click', function () {
        prof.value = a.getAttribute('data-profile') || '';
        text.value = '';
        all('input[name=cat]', form).forEach(function (b) { b.checked = true; });
        apply();
      });
    });
    apply();
  }
  if (location.hash) reveal(location.hash.slice(1));
  // when the page became interactive, in ms from navigation start (the bench reads it)
  document.documentElement.setAttribute('data-ready-ms', String(Math.round(performance.now())));
  document.documentElement.setAttribute('data-ready', 'true');
})();`;
