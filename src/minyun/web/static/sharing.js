// A grant's usage chart (Apache ECharts): calls and denials per day, rows delivered.
// Without JavaScript the table below it says the same.
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("usage-data");
    var box = document.getElementById("usage-chart");
    if (!source || !box || typeof echarts === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    box.hidden = false;
    box.style.height = "260px";
    var chart = echarts.init(box);
    chart.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 8, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
      yAxis: [
        { type: "value", minInterval: 1 },
        { type: "value", minInterval: 1, splitLine: { show: false } },
      ],
      series: [
        { name: data.names.calls, type: "bar", stack: "calls", data: data.calls, itemStyle: { color: "#1565c0" } },
        { name: data.names.denials, type: "bar", stack: "calls", data: data.denials, itemStyle: { color: "#c62828" } },
        { name: data.names.rows, type: "line", yAxisIndex: 1, showSymbol: false, data: data.rows, itemStyle: { color: "#2e7d32" } },
      ],
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
