/* The declare page: draw the area on the map (a circle: click its centre, drag the
   round handle for its radius; or a polygon: click each corner), mirrored into the
   typed fields (which remain the way in without JavaScript), and the live reach preview
   from POST /emergencies/preview. */
"use strict";
(function () {
  var form = document.getElementById("declare-form");
  var mapEl = document.getElementById("declare-map");
  if (!form || !mapEl || !window.L) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var i18n = $("i18n").dataset;
  var csrf = form.querySelector("input[name=csrf_token]").value;
  var lat = $("lat"), lon = $("lon"), radius = $("radius_m"), polygonField = $("polygon");

  mapEl.classList.remove("hidden");
  $("clear-shape").classList.remove("hidden");
  var start = (mapEl.dataset.centre || "").split(",");
  var centre = [MusterMaps.numberOr(lat.value, MusterMaps.numberOr(start[0], 45.0)),
                MusterMaps.numberOr(lon.value, MusterMaps.numberOr(start[1], 12.0))];
  var zoom = (lat.value || start.length === 2) ? 12 : 5;
  var map = MusterMaps.create(mapEl, centre, zoom);

  var circle = null, handle = null, polygon = null, vertices = [];
  var handleIcon = L.divIcon({ className: "radius-handle", iconSize: [22, 22] });
  var vertexIcon = L.divIcon({ className: "polygon-vertex", iconSize: [12, 12] });
  var vertexMarkers = [];

  function shape() { return $("shape-polygon").checked ? "polygon" : "circle"; }
  function round(n, digits) { var f = Math.pow(10, digits); return Math.round(n * f) / f; }

  function showFields() {
    var isPolygon = shape() === "polygon";
    $("circle-fields").classList.toggle("hidden", isPolygon);
    $("polygon-fields").classList.toggle("hidden", !isPolygon);
  }

  function handlePosition(c, r) {
    // the handle sits on the circle's east edge
    var dLon = r / (111320 * Math.cos(c.lat * Math.PI / 180));
    return L.latLng(c.lat, c.lng + dLon);
  }

  function drawCircle() {
    var la = parseFloat(lat.value), lo = parseFloat(lon.value), r = parseFloat(radius.value);
    if (!isFinite(la) || !isFinite(lo) || Math.abs(la) > 90 || Math.abs(lo) > 180 || !(r > 0)) {
      clearCircle();
      return;
    }
    var c = L.latLng(la, lo);
    if (!circle) {
      circle = L.circle(c, { radius: r, weight: 2, color: "#0b4f8a", fillOpacity: 0.12 }).addTo(map);
      handle = L.marker(handlePosition(c, r), {
        draggable: true, icon: handleIcon, keyboard: true,
        title: mapEl.dataset.handleLabel || "radius", alt: mapEl.dataset.handleLabel || "radius"
      }).addTo(map);
      handle.on("drag", function () {
        var meters = Math.max(1, Math.round(circle.getLatLng().distanceTo(handle.getLatLng())));
        radius.value = String(meters);
        circle.setRadius(meters);
      });
      handle.on("dragend", function () { drawCircle(); schedulePreview(); });
    } else {
      circle.setLatLng(c);
      circle.setRadius(r);
      handle.setLatLng(handlePosition(c, r));
    }
  }
  function clearCircle() {
    if (circle) { map.removeLayer(circle); circle = null; }
    if (handle) { map.removeLayer(handle); handle = null; }
  }

  function readPolygonField() {
    vertices = [];
    polygonField.value.split(/\n|;/).forEach(function (line) {
      var parts = line.trim().split(/[,\s]+/);
      if (parts.length === 2 && isFinite(parseFloat(parts[0])) && isFinite(parseFloat(parts[1]))) {
        vertices.push(L.latLng(parseFloat(parts[0]), parseFloat(parts[1])));
      }
    });
  }
  function writePolygonField() {
    polygonField.value = vertices.map(function (v) {
      return round(v.lat, 6) + ", " + round(v.lng, 6);
    }).join("\n");
  }
  function drawPolygon() {
    if (polygon) { map.removeLayer(polygon); polygon = null; }
    vertexMarkers.forEach(function (m) { map.removeLayer(m); });
    vertexMarkers = [];
    if (!vertices.length) { return; }
    polygon = (vertices.length >= 3 ? L.polygon(vertices) : L.polyline(vertices))
      .setStyle({ weight: 2, color: "#0b4f8a", fillOpacity: 0.12 }).addTo(map);
    vertices.forEach(function (v) {
      vertexMarkers.push(L.marker(v, { icon: vertexIcon, interactive: false, keyboard: false }).addTo(map));
    });
  }

  map.on("click", function (event) {
    if (shape() === "polygon") {
      vertices.push(event.latlng);
      writePolygonField();
      drawPolygon();
    } else {
      lat.value = String(round(event.latlng.lat, 6));
      lon.value = String(round(event.latlng.lng, 6));
      if (!(parseFloat(radius.value) > 0)) { radius.value = "2000"; }
      drawCircle();
    }
    schedulePreview();
  });

  $("clear-shape").addEventListener("click", function () {
    if (shape() === "polygon") { vertices = []; writePolygonField(); drawPolygon(); }
    else { lat.value = ""; lon.value = ""; clearCircle(); }
    schedulePreview();
  });
  [lat, lon, radius].forEach(function (input) {
    input.addEventListener("input", function () { drawCircle(); schedulePreview(); });
  });
  polygonField.addEventListener("input", function () { readPolygonField(); drawPolygon(); schedulePreview(); });
  form.querySelectorAll("input[name=shape]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      showFields();
      if (shape() === "polygon") { clearCircle(); readPolygonField(); drawPolygon(); }
      else { vertices = []; drawPolygon(); drawCircle(); }
      schedulePreview();
    });
  });

  // --- reach preview ------------------------------------------------------------------
  var timer = null, sequence = 0;
  function formJson() {
    var data = {};
    new FormData(form).forEach(function (value, key) {
      if (key === "csrf_token") { return; }
      if (key === "required_qualifications") {
        (data[key] = data[key] || []).push(value);
      } else { data[key] = value; }
    });
    return data;
  }
  function setPreview(text, counts) {
    $("preview-text").textContent = text;
    $("preview-counts").classList.toggle("hidden", !counts);
    if (counts) {
      $("pv-eligible").textContent = String(counts.eligible);
      $("pv-first_wave").textContent = String(counts.first_wave);
      ["outside", "unqualified", "unavailable", "quiet_hours", "no_consent", "committed"]
        .forEach(function (k) {
          $("pv-" + k).textContent = String((counts.excluded || {})[k] === undefined ? "–" : counts.excluded[k]);
        });
    }
  }
  function schedulePreview() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(runPreview, 500);
  }
  async function runPreview() {
    var mine = ++sequence;
    setPreview(i18n.loading, null);
    try {
      var response = await fetch("/emergencies/preview", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json",
                   "X-CSRF-Token": csrf },
        body: JSON.stringify(formJson()),
        credentials: "same-origin"
      });
      if (mine !== sequence) { return; }
      if (response.status === 401) { window.location.assign("/login?next=/emergencies/new"); return; }
      var answer = await response.json();
      if (!response.ok) { setPreview(i18n.unavailable, null); return; }
      if (answer.available) { setPreview(i18n.ready + " " + answer.eligible, answer); }
      else if (answer.errors) { setPreview(i18n.incomplete, null); }
      else { setPreview(i18n.unavailable, null); }
    } catch (err) {
      if (mine === sequence) { setPreview(i18n.unavailable, null); }
    }
  }
  ["members_needed", "section", "severity", "assisting_sections"].forEach(function (id) {
    $(id).addEventListener("change", schedulePreview);
  });
  form.querySelectorAll("input[name=required_qualifications]").forEach(function (box) {
    box.addEventListener("change", schedulePreview);
  });

  showFields();
  readPolygonField();
  if (shape() === "polygon") { drawPolygon(); } else { drawCircle(); }
  if (circle) { map.fitBounds(circle.getBounds(), { maxZoom: 14 }); }
  else if (polygon && vertices.length >= 2) { map.fitBounds(polygon.getBounds(), { maxZoom: 14 }); }
  schedulePreview();
  document.body.dataset.declareReady = "1";
})();
