// Draws every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json"> (ChartSpec).
// No inline scripts: pages stay compatible with a strict Content-Security-Policy.
(function () {
  "use strict";
  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var currency = canvas.dataset.currency || "";
    var fmt = new Intl.NumberFormat(undefined, currency ? { style: "currency", currency: currency } : {});
    spec.datasets.forEach(function (d) { d.data = d.data.map(function (v) { return v === null ? null : Number(v); }); });
    canvas.chart = new Chart(canvas, {
      data: { labels: spec.labels, datasets: spec.datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          title: { display: !!spec.title, text: spec.title, align: "start" },
          legend: { display: spec.datasets.length > 1, position: "bottom" },
          tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + fmt.format(c.parsed.y); } } }
        },
        scales: {
          x: { stacked: spec.stacked, grid: { display: false } },
          y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.yLabel, text: spec.yLabel },
               ticks: { callback: function (v) { return fmt.format(v); } } }
        }
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
