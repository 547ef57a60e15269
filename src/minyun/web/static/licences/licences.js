// The statistics chart of the e-licence page: issued, live, revoked and uses per kind.
(function () {
  function draw(el) {
    var data = JSON.parse(document.getElementById(el.dataset.chart).textContent);
    if (!window.echarts || !data.types.length) return;
    el.style.height = Math.max(260, data.types.length * 56 + 80) + "px";
    var names = JSON.parse(el.dataset.series);
    var chart = window.echarts.init(el);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 8, bottom: 8, top: 32, containLabel: true },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: data.types, axisLabel: { width: 110, overflow: "truncate" } },
      series: [
        { name: names[0], type: "bar", data: data.issued },
        { name: names[1], type: "bar", data: data.live },
        { name: names[2], type: "bar", data: data.revoked },
        { name: names[3], type: "bar", data: data.uses }
      ]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".licence-chart").forEach(draw);
  });
})();
