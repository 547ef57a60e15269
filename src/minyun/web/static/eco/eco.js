// Eco-cloud pages: the station map (Leaflet over Fujian's outlines, no tiles: nothing loads from
// the internet) and time-series charts (ECharts). Data comes from <script type="application/json">
// blocks. Station names and cities are data: they reach the page as text nodes, never as HTML.
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // An element holding lines of text (each a text node): safe for any station name.
  function textBox(lines, link) {
    var box = document.createElement("div");
    lines.forEach(function (line, i) {
      if (i) box.appendChild(document.createElement("br"));
      box.appendChild(document.createTextNode(line));
    });
    if (link) {
      box.appendChild(document.createElement("br"));
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      box.appendChild(a);
    }
    return box;
  }

  var STATION_RADIUS = 7;

  function stationLines(s, labels) {
    var lines = [s.city + " " + s.name + " (" + s.code + ")"];
    lines.push("AQI " + (s.aqi === null ? "—" : s.aqi) + (s.primary ? " · " + s.primary : ""));
    if (s.missing && s.missing.length) lines.push(labels.missing.replace("%s", s.missing.join(", ")));
    if (s.outside) lines.push(labels.outside.replace("%c", s.city).replace("%p", s.lon + ", " + s.lat));
    return lines;
  }

  function overlaps(a, b) {
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }

  // Put each city's name on the first of its candidate spots whose box covers no station
  // marker and no other name at the current zoom; a name with no free spot is hidden.
  function placeLabels(map, labels, markers) {
    var taken = markers.map(function (m) {
      var p = map.latLngToContainerPoint(m.getLatLng());
      var r = STATION_RADIUS + 3;
      return { left: p.x - r, right: p.x + r, top: p.y - r, bottom: p.y + r };
    });
    labels.forEach(function (label) {
      var el = label.tooltip.getElement();
      if (!el) return;
      var w = el.offsetWidth, h = el.offsetHeight, chosen = null;
      for (var i = 0; i < label.spots.length && !chosen; i++) {
        var p = map.latLngToContainerPoint(label.spots[i]);
        var box = { left: p.x - w / 2, right: p.x + w / 2, top: p.y - h / 2, bottom: p.y + h / 2 };
        if (!taken.some(function (t) { return overlaps(box, t); })) chosen = { spot: label.spots[i], box: box };
      }
      if (chosen) {
        label.tooltip.setLatLng(chosen.spot);
        taken.push(chosen.box);
        el.classList.remove("eco-label-hidden");
      } else {
        el.classList.add("eco-label-hidden");
      }
    });
  }

  function drawBoundaries(map, box, geo, labelSpots, markers) {
    var cities = geo.features.filter(function (f) { return f.properties.level === "city"; });
    var counties = geo.features.filter(function (f) { return f.properties.level === "county"; });
    map.createPane("eco-land").style.zIndex = 350;  // under the stations (overlayPane, 400)
    var land = { pane: "eco-land", interactive: false };
    // The province's edge: a wide stroke under every city, whose opaque county fills hide
    // its inner half along the borders between cities, leaving only the outer edge.
    L.geoJSON(cities, Object.assign({ style: { color: "#2f4858", weight: 5, fill: false, className: "eco-province" } }, land)).addTo(map);
    L.geoJSON(counties, Object.assign({ style: { color: "#b7c2cc", weight: 0.7, fillColor: "#f7f4ec", fillOpacity: 1, className: "eco-county" } }, land)).addTo(map);
    var cityLayer = L.geoJSON(cities, Object.assign({ style: { color: "#5b7083", weight: 1.6, fill: false, className: "eco-city-outline" } }, land)).addTo(map);
    // Smallest cities first: they have the fewest free places for their names.
    var labels = labelSpots.filter(function (l) { return l.spots.length; }).map(function (l) {
      var tooltip = L.tooltip({ permanent: true, direction: "center", className: "eco-label", interactive: false })
        .setLatLng(l.spots[0]).setContent(textBox([l.name])).addTo(map);
      return { tooltip: tooltip, spots: l.spots };
    });
    box.setAttribute("data-cities", String(cityLayer.getLayers().length));
    box.setAttribute("data-counties", String(counties.length));
    return { bounds: cityLayer.getBounds(), labels: labels };
  }

  function drawMap() {
    var box = document.getElementById("eco-map");
    var d = data("eco-map-data");
    if (!box || !d || !window.L) return;
    var labels = {
      missing: box.getAttribute("data-missing-label") || "Missing: %s",
      outside: box.getAttribute("data-outside-label") || "Outside %c: %p"
    };
    // A first view so that layers are drawn (and their elements exist) at once; fit() refines it.
    var map = L.map(box, { attributionControl: false, zoomSnap: 0.25 }).setView([26.0, 118.3], 7);
    var markers = d.stations.map(function (s) {
      var marker = L.circleMarker([s.lat, s.lon], {
        radius: STATION_RADIUS, color: s.outside ? "#c62828" : "#333", weight: s.outside ? 3 : 1,
        dashArray: s.outside ? "3 2" : null, fillColor: s.colour, fillOpacity: 0.95,
        className: "eco-station" + (s.outside ? " eco-station-outside" : "")
      });
      var lines = stationLines(s, labels);
      marker.bindTooltip(textBox(lines), { direction: "top", className: "eco-station-tip" });
      marker.bindPopup(textBox(lines, { href: "/eco/stations/" + encodeURIComponent(s.code), text: "›" }));
      marker.addTo(map);
      marker.getElement().setAttribute("data-code", s.code);
      if (s.outside) {
        L.tooltip({ permanent: true, direction: "right", offset: [10, 0], className: "eco-outside-tip", interactive: false })
          .setLatLng([s.lat, s.lon]).setContent(textBox(["⚠ " + s.name])).addTo(map);
      }
      return marker;
    });
    box.setAttribute("data-stations", String(markers.length));
    box.setAttribute("data-outside", String(d.stations.filter(function (s) { return s.outside; }).length));

    function fit(bounds) {
      // The province, widened to show a station whose coordinates put it outside.
      markers.forEach(function (m) { bounds.extend(m.getLatLng()); });
      if (bounds.isValid()) map.fitBounds(bounds, { padding: [12, 12], animate: false });
      else map.setView([26.0, 118.3], 7);
    }

    if (!d.boundaries) { fit(L.latLngBounds([])); return; }
    fetch(d.boundaries, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (geo) {
        var drawn = drawBoundaries(map, box, geo, d.labels || [], markers);
        fit(drawn.bounds);
        var place = function () { placeLabels(map, drawn.labels, markers); };
        place();
        map.on("zoomend moveend resize", place);
        box.setAttribute("data-ready", "1");
      })
      .catch(function () { fit(L.latLngBounds([])); box.setAttribute("data-ready", "no-outlines"); });
  }

  // AQI has an axis of its own (left); concentrations share the µg/m³ axis (right). Every
  // series has one fixed colour, so the legend shows the colour its line is drawn in; the
  // AQI levels are bands behind the AQI axis.
  var COLOURS = { aqi: "#263238", pm2_5: "#1565c0", pm10: "#8d6e63", no2: "#7b1fa2", o3: "#2e7d32", so2: "#ef6c00", co: "#546e7a" };
  var BANDS = [[0, 50, "#00e400"], [50, 100, "#ffff00"], [100, 150, "#ff7e00"], [150, 200, "#ff0000"], [200, 300, "#99004c"], [300, 500, "#7e0023"]];

  function seriesName(n) { return n === "aqi" ? "AQI" : n.toUpperCase().replace("_", "."); }

  function drawCharts() {
    if (!window.echarts) return;
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      var d = data(box.getAttribute("data-chart"));
      if (!d) return;
      var unit = box.getAttribute("data-concentration-unit") || "µg/m³";
      var names = Object.keys(d).filter(function (k) { return k !== "hours" && k !== "title"; });
      var top = Math.max.apply(null, (d.aqi || []).filter(function (v) { return v !== null; }).concat([100]));
      var chart = echarts.init(box);
      chart.setOption({
        tooltip: { trigger: "axis" },
        legend: { data: names.map(seriesName), top: 0 },
        grid: { left: 48, right: 56, top: 40, bottom: 28 },
        xAxis: { type: "category", data: d.hours },
        yAxis: [
          { type: "value", name: "AQI", min: 0, position: "left" },
          { type: "value", name: unit, min: 0, position: "right", splitLine: { show: false } }
        ],
        series: names.map(function (n) {
          var colour = COLOURS[n] || "#455a64";
          var s = {
            name: seriesName(n), type: "line", data: d[n], connectNulls: false,
            yAxisIndex: n === "aqi" ? 0 : 1, color: colour,
            lineStyle: { color: colour, width: n === "aqi" ? 3 : 1.5 }, itemStyle: { color: colour },
            symbolSize: n === "aqi" ? 5 : 3
          };
          if (n === "aqi") {
            s.markArea = { silent: true, data: BANDS.filter(function (b) { return b[0] < top; }).map(function (b) {
              return [{ yAxis: b[0], itemStyle: { color: b[2], opacity: 0.12 } }, { yAxis: Math.min(b[1], top) }];
            }) };
          }
          return s;
        })
      });
      box.setAttribute("data-ready", "1");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawMap(); drawCharts(); });
})();
