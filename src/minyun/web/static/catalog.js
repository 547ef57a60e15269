// The resource page's charts (Apache ECharts). Without JavaScript the tables say the same.
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("catalog-chart-data");
    if (!source || typeof echarts === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var charts = [];

    var quality = document.getElementById("quality-chart");
    if (quality && data.fields.length) {
      quality.hidden = false;
      quality.style.height = Math.max(260, 60 + 28 * data.fields.length) + "px";
      var chart = echarts.init(quality);
      chart.setOption({
        tooltip: { trigger: "axis", valueFormatter: function (v) { return v === null ? "–" : v + "%"; } },
        legend: { top: 0 },
        grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
        xAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
        yAxis: { type: "category", data: data.fields, inverse: true },
        series: data.series.map(function (s) {
          return { name: s.name, type: "bar", data: s.data };
        }),
      });
      charts.push(chart);
    }

    var loads = document.getElementById("loads-chart");
    if (loads && data.loads.versions.length) {
      loads.hidden = false;
      loads.style.height = "240px";
      var bars = echarts.init(loads);
      bars.setOption({
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
        xAxis: { type: "category", data: data.loads.versions },
        yAxis: { type: "value" },
        series: [
          { name: data.loads.accepted_name, type: "bar", stack: "rows", data: data.loads.accepted, itemStyle: { color: "#2e7d32" } },
          { name: data.loads.rejected_name, type: "bar", stack: "rows", data: data.loads.rejected, itemStyle: { color: "#c62828" } },
        ],
      });
      charts.push(bars);
    }

    window.addEventListener("resize", function () {
      charts.forEach(function (c) { c.resize(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
