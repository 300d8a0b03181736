// Draws every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json"> (ChartSpec).
// No inline scripts: pages stay compatible with a strict Content-Security-Policy.
//   data-currency="USD"           values are money in that currency (axis and tooltips formatted as such)
//   data-orientation="horizontal" bars run left to right (long category labels, e.g. the top groups)
(function () {
  "use strict";
  var OTHER_COLOR = "#a3acb6";

  function formats(currency) {
    var locale = document.documentElement.lang || undefined;
    var money = currency ? { style: "currency", currency: currency } : { maximumFractionDigits: 2 };
    var compact = Object.assign({}, money, { notation: "compact", maximumFractionDigits: 1, minimumFractionDigits: 0 });
    return { full: new Intl.NumberFormat(locale, money), tick: new Intl.NumberFormat(locale, compact) };
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var fmt = formats(canvas.dataset.currency || "");
    var horizontal = canvas.dataset.orientation === "horizontal";
    var valueAxis = horizontal ? "x" : "y";
    var categoryAxis = horizontal ? "y" : "x";
    spec.datasets.forEach(function (d) {
      d.data = d.data.map(function (v) { return v === null ? null : Number(v); });
      if (d.pointRadius === null) delete d.pointRadius;
      if (d.label === "Other") { d.backgroundColor = OTHER_COLOR; d.borderColor = OTHER_COLOR; }
      if (d.type === "bar") { d.borderRadius = 2; d.maxBarThickness = 48; }
    });
    var several = spec.datasets.length > 1;
    var scales = {};
    // Horizontal bars: long labels ("Support · claude-sonnet-4-5") are shortened to fit; the tooltip has them whole.
    var maxChars = Math.max(12, Math.floor((canvas.parentNode.clientWidth || 600) * 0.4 / 6.5));
    scales[categoryAxis] = {
      stacked: spec.stacked, grid: { display: false },
      ticks: {
        autoSkip: !horizontal, maxRotation: 0,
        callback: function (value) {
          var label = String(this.getLabelForValue(value));
          return horizontal && label.length > maxChars ? label.slice(0, maxChars - 1) + "…" : label;
        }
      }
    };
    scales[valueAxis] = {
      stacked: spec.stacked, beginAtZero: true,
      title: { display: !!spec.yLabel, text: spec.yLabel },
      ticks: { callback: function (v) { return fmt.tick.format(v); } }
    };
    canvas.chart = new Chart(canvas, {
      type: (spec.datasets[0] && spec.datasets[0].type) || "bar",
      data: { labels: spec.labels, datasets: spec.datasets },
      options: {
        indexAxis: horizontal ? "y" : "x",
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false, axis: categoryAxis },
        plugins: {
          title: { display: !!spec.title, text: spec.title, align: "start" },
          legend: { display: several, position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } },
          tooltip: {
            filter: function (item) { return !several || item.parsed[valueAxis] !== 0; },
            callbacks: {
              label: function (c) { return " " + c.dataset.label + ": " + fmt.full.format(c.parsed[valueAxis]); },
              footer: function (items) {
                if (!several || !spec.stacked) return "";
                var total = 0;
                canvas.chart.data.datasets.forEach(function (d) { total += Number(d.data[items[0].dataIndex]) || 0; });
                return "Total: " + fmt.full.format(total);
              }
            }
          }
        },
        scales: scales
      }
    });
  }

  function drawAll() { document.querySelectorAll("canvas[data-chart]").forEach(draw); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
