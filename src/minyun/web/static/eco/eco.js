// Eco-cloud pages: the station map (Leaflet, no tiles: nothing loads from the internet) and
// time-series charts (ECharts). Data comes from <script type="application/json"> blocks.
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function drawMap() {
    var box = document.getElementById("eco-map");
    var d = data("eco-map-data");
    if (!box || !d || !window.L) return;
    // "Missing: %s" in the page's language (缺测：%s), for partial hours.
    var missingLabel = box.getAttribute("data-missing-label") || "Missing: %s";
    var map = L.map(box, { attributionControl: false, zoomSnap: 0.25 });
    var bounds = [];
    Object.keys(d.outlines).forEach(function (city) {
      var ring = d.outlines[city];
      if (ring.length >= 3) {
        L.polygon(ring, { color: "#5b7083", weight: 1, fillColor: "#cfd8e3", fillOpacity: 0.35, className: "eco-outline" })
          .bindTooltip(city, { permanent: true, direction: "center", className: "eco-label" }).addTo(map);
      } else if (ring.length) {
        L.circle(ring[0], { radius: 4000, color: "#5b7083", weight: 1, fillOpacity: 0.2, className: "eco-outline" })
          .bindTooltip(city, { permanent: true, direction: "center", className: "eco-label" }).addTo(map);
      }
    });
    d.stations.forEach(function (s) {
      bounds.push([s.lat, s.lon]);
      var label = s.city + " " + s.name + " (" + s.code + ")<br>AQI " + (s.aqi === null ? "—" : s.aqi) +
        (s.primary ? " · " + s.primary : "") +
        (s.missing && s.missing.length ? " · " + missingLabel.replace("%s", s.missing.join(", ")) : "");
      L.circleMarker([s.lat, s.lon], { radius: 8, color: "#333", weight: 1, fillColor: s.colour, fillOpacity: 0.95, className: "eco-station" })
        .bindPopup(label + '<br><a href="/eco/stations/' + encodeURIComponent(s.code) + '">›</a>')
        .addTo(map);
    });
    if (bounds.length) map.fitBounds(bounds, { padding: [30, 30] });
    else map.setView([26.0, 118.3], 7);
    box.setAttribute("data-stations", String(d.stations.length));
  }

  function drawCharts() {
    if (!window.echarts) return;
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      var d = data(box.getAttribute("data-chart"));
      if (!d) return;
      var names = Object.keys(d).filter(function (k) { return k !== "hours" && k !== "title"; });
      var chart = echarts.init(box);
      chart.setOption({
        tooltip: { trigger: "axis" },
        legend: { data: names.map(function (n) { return n.toUpperCase().replace("_", "."); }) },
        xAxis: { type: "category", data: d.hours },
        yAxis: { type: "value" },
        visualMap: { show: false, seriesIndex: 0, pieces: [
          { lte: 50, color: "#00e400" }, { gt: 50, lte: 100, color: "#ffff00" }, { gt: 100, lte: 150, color: "#ff7e00" },
          { gt: 150, lte: 200, color: "#ff0000" }, { gt: 200, lte: 300, color: "#99004c" }, { gt: 300, color: "#7e0023" }] },
        series: names.map(function (n) {
          return { name: n.toUpperCase().replace("_", "."), type: "line", data: d[n], connectNulls: false };
        })
      });
      box.setAttribute("data-ready", "1");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawMap(); drawCharts(); });
})();
