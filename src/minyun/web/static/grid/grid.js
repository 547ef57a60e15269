// Grid pages: the report form (location from the phone, the chosen category's questions) and the
// overview map (Leaflet over the grids' outlines, no tiles) and chart (ECharts). Names reach the
// page as text nodes, never as HTML.
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function reportForm() {
    var form = document.getElementById("report-form");
    if (!form) return;
    function showQuestions() {
      var chosen = form.querySelector("input[name=service_code]:checked");
      form.querySelectorAll(".grid-attributes").forEach(function (box) {
        var on = chosen && box.getAttribute("data-service") === chosen.value;
        box.hidden = !on;
        box.querySelectorAll("input").forEach(function (input) { input.disabled = !on; });
      });
    }
    form.querySelectorAll("input[name=service_code]").forEach(function (radio) {
      radio.addEventListener("change", showQuestions);
    });
    showQuestions();
    var photo = document.getElementById("photo");
    var photoName = document.getElementById("photo-name");
    if (photo && photoName) {
      photo.addEventListener("change", function () {
        photoName.textContent = photo.files.length ? photo.files[0].name : "";
      });
    }
    var locate = document.getElementById("locate");
    var status = document.getElementById("locate-status");
    if (locate && navigator.geolocation) {
      locate.addEventListener("click", function () {
        status.textContent = "…";
        navigator.geolocation.getCurrentPosition(function (pos) {
          document.getElementById("lat").value = pos.coords.latitude.toFixed(6);
          document.getElementById("long").value = pos.coords.longitude.toFixed(6);
          status.textContent = pos.coords.latitude.toFixed(5) + ", " + pos.coords.longitude.toFixed(5);
        }, function (err) {
          status.textContent = err.message;
        }, { enableHighAccuracy: true, timeout: 10000 });
      });
    }
  }

  var COLOURS = { routed: "#c62828", in_progress: "#ef6c00", closed: "#2e7d32" };

  function overviewMap() {
    var box = document.getElementById("grid-map");
    var found = data("grid-map-data");
    if (!box || !found || !window.L) return;
    var map = L.map(box, { zoomSnap: 0.25, attributionControl: false });
    var streets = L.geoJSON(found.areas, {
      filter: function (f) { return f.properties.level === "street"; },
      style: { color: "#0b5cad", weight: 2, fillColor: "#dbe8f5", fillOpacity: 0.5 },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(document.createTextNode(f.properties.name), { permanent: true, direction: "center", className: "grid-label" });
      }
    });
    // The view first: a permanent tooltip needs a map that already has one.
    if (streets.getLayers().length) map.fitBounds(streets.getBounds(), { padding: [8, 8] });
    else map.setView([26.09, 119.29], 13);
    streets.addTo(map);
    L.geoJSON(found.areas, {
      filter: function (f) { return f.properties.level === "grid"; },
      style: { color: "#7a8ea3", weight: 0.6, fill: false, dashArray: "2 3" }
    }).addTo(map);
    found.reports.forEach(function (r) {
      var marker = L.circleMarker([r.lat, r.long], { radius: 9, color: "#fff", weight: 2, fillColor: COLOURS[r.state] || "#555", fillOpacity: 0.95,
        className: r.state === "closed" ? "grid-report-closed" : "grid-report-open" });
      var tip = document.createElement("div");
      var link = document.createElement("a");
      link.href = "/grid/reports/" + r.id;
      link.textContent = "No. " + r.id + " " + (found.services[r.service] || r.service);
      tip.appendChild(link);
      tip.appendChild(document.createElement("br"));
      tip.appendChild(document.createTextNode(r.address || ""));
      marker.bindPopup(tip);
      marker.addTo(map);
    });
  }

  function chart() {
    var box = document.getElementById("grid-chart");
    var found = data("grid-chart-data");
    if (!box || !found || !window.echarts) return;
    var c = echarts.init(box);
    c.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 48, right: 16, bottom: 64, top: 32 },
      xAxis: { type: "category", data: found.categories, axisLabel: { rotate: 30 } },
      yAxis: { type: "value" },
      series: [
        { name: box.getAttribute("data-arrive"), type: "bar", data: found.arrive },
        { name: box.getAttribute("data-close"), type: "bar", data: found.close }
      ]
    });
    window.addEventListener("resize", function () { c.resize(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    reportForm();
    overviewMap();
    chart();
  });
})();
