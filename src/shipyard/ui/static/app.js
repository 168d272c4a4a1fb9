// Shipyard UI: draws curves with uPlot and wires a few controls.
// No inline scripts anywhere (the Content-Security-Policy forbids them):
// pages mark elements with data- attributes and this file does the rest.
(function () {
  "use strict";

  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function color(i, n) {
    if (n <= PALETTE.length) return PALETTE[i % PALETTE.length];
    return "hsl(" + Math.round((i * 360) / n) + ", 65%, 45%)";
  }

  function note(fig, text) {
    var p = document.createElement("p");
    p.className = "chart-note muted";
    p.textContent = text;
    fig.appendChild(p);
  }

  // Tell the page a chart is done (drawn or not): the compare page loads its
  // table only then, so the chart's request is not queued behind it.
  function done(fig, state) {
    fig.dataset.drawn = state;
    fig.dispatchEvent(new CustomEvent("drawn", {bubbles: true}));
  }

  function width(fig) {
    return Math.max(260, Math.floor(fig.getBoundingClientRect().width) - 8);
  }

  function draw(fig, data) {
    if (data.error) { note(fig, data.error); done(fig, "error"); return; }
    var multi = fig.dataset.multi === "1";
    var series = [{label: "step"}];
    var columns = [data.x];
    if (multi) {
      var n = data.series.length;
      data.series.forEach(function (s, i) {
        series.push({label: s.label, stroke: color(i, n), width: 1, spanGaps: true,
                     points: {show: data.x.length < 60, size: 5}});
        columns.push(s.y);
      });
      if (!n) { note(fig, "No run logged this metric."); done(fig, "empty"); return; }
    } else {
      series.push({label: data.key, stroke: PALETTE[0], width: 1.5,
                   points: {show: data.shown < 60}});
      columns.push(data.y);
      if (!data.shown) { note(fig, "No finite values to draw."); done(fig, "empty"); return; }
    }
    var opts = {
      width: width(fig),
      height: multi ? 360 : 180,
      scales: {x: {time: false}},
      series: series,
      legend: {show: !multi || series.length <= 21},
      cursor: {focus: {prox: 16}},
      focus: {alpha: 0.3}
    };
    var t0 = performance.now();
    var plot = new uPlot(opts, columns, fig);
    fig.dataset.drawMs = String(Math.round(performance.now() - t0));
    fig._plot = plot;
    fig.dataset.points = String(data.x.length);
    if (!multi && data.total > data.shown) {
      note(fig, data.shown + " of " + data.total + " points shown (LTTB)");
    } else if (multi) {
      note(fig, (series.length - 1) + " runs, " + data.x.length +
           (data.x.length === 1 ? " step" : " steps") + " on the shared axis");
    }
    done(fig, "1");
  }

  // Time series by group (a deployment's traffic): several figures share
  // one JSON document, fetched once; each draws its data-series from it.
  var shared = {};

  function drawTime(fig, data) {
    var key = fig.dataset.series;
    var groups = (data.charts && data.charts[key]) || [];
    var x = (data.charts && data.charts.x) || [];
    if (!groups.length || !x.length) { note(fig, "Nothing logged in this window."); done(fig, "empty"); return; }
    var series = [{label: "time (UTC)"}];
    var columns = [x];
    groups.forEach(function (g, i) {
      series.push({label: g.label, stroke: color(i, groups.length), width: 1.5, spanGaps: false,
                   points: {show: x.length < 60, size: 5}});
      columns.push(g.y);
    });
    var plot = new uPlot({
      width: width(fig), height: 220, tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      // One bucket alone: uPlot would pick a range of years around it.
      scales: {x: x.length > 1 ? {time: true} : {time: true, range: [x[0] - (data.charts.width || 60), x[0] + (data.charts.width || 60)]}},
      series: series,
      axes: [{}, {label: fig.dataset.unit || "", size: 60}],
      cursor: {focus: {prox: 16}}, focus: {alpha: 0.3}
    }, columns, fig);
    fig._plot = plot;
    fig.dataset.points = String(x.length);
    done(fig, "1");
  }

  function loadTime(fig) {
    if (fig.dataset.loading) return;
    fig.dataset.loading = "1";
    var src = fig.dataset.src;
    if (!shared[src]) {
      shared[src] = fetch(src, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) {
          if (!r.ok) throw new Error("the server answered " + r.status);
          return r.json();
        });
    }
    shared[src].then(function (data) { drawTime(fig, data); })
      .catch(function (err) { note(fig, "Could not draw this chart: " + err.message); done(fig, "error"); });
  }

  function load(fig) {
    if (fig.dataset.series) { loadTime(fig); return; }
    if (fig.dataset.loading) return;
    fig.dataset.loading = "1";
    var t0 = performance.now();
    fetch(fig.dataset.src, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (!r.ok) throw new Error("the server answered " + r.status);
        return r.json();
      })
      .then(function (data) {
        fig.dataset.fetchMs = String(Math.round(performance.now() - t0));
        draw(fig, data);
      })
      .catch(function (err) { note(fig, "Could not draw this curve: " + err.message); done(fig, "error"); });
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { observer.unobserve(e.target); load(e.target); }
    });
  }, {rootMargin: "200px"}) : null;

  function init(root) {
    root.querySelectorAll("figure.chart[data-src]").forEach(function (fig) {
      if (fig.dataset.loading) return;
      if (observer) observer.observe(fig); else load(fig);
    });
  }

  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.classList && t.classList.contains("select-all")) {
      var form = t.dataset.target;
      document.querySelectorAll('input[type="checkbox"][form="' + form + '"]').forEach(function (c) {
        c.checked = t.checked;
      });
    } else if (t.classList && t.classList.contains("auto-submit") && t.form) {
      t.form.requestSubmit ? t.form.requestSubmit() : t.form.submit();
    }
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      document.querySelectorAll("figure.chart").forEach(function (fig) {
        if (fig._plot) fig._plot.setSize({width: width(fig), height: fig._plot.height});
      });
    }, 150);
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (ev) { init(ev.target || document); });
})();
