// The open dataset page: a chart of a numeric column (Apache ECharts) and the copy buttons.
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("od-chart-data");
    var box = document.getElementById("od-chart");
    if (!source || !box || typeof echarts === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    box.hidden = false;
    var chart = echarts.init(box);
    chart.setOption({
      tooltip: { trigger: "axis" },
      grid: { left: 8, right: 16, top: 24, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: data.labels, axisLabel: { rotate: 30, width: 80, overflow: "truncate" } },
      yAxis: { type: "value", name: data.name },
      series: [{ name: data.name, type: "bar", data: data.values }],
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function usage() {
    if (typeof echarts === "undefined") {
      return;
    }
    document.querySelectorAll(".od-usage").forEach(function (box) {
      var source = document.getElementById(box.getAttribute("data-usage"));
      if (!source) {
        return;
      }
      var data = JSON.parse(source.textContent);
      box.hidden = false;
      var chart = echarts.init(box);
      chart.setOption({
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
        xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: "API", type: "bar", stack: "calls", data: data.api },
          { name: "下载", type: "bar", stack: "calls", data: data.downloads },
        ],
      });
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  function copying() {
    document.querySelectorAll(".od-copy").forEach(function (button) {
      button.addEventListener("click", function () {
        var block = document.getElementById(button.getAttribute("data-copy"));
        if (block && navigator.clipboard) {
          navigator.clipboard.writeText(block.textContent);
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(); usage(); copying(); });
})();
