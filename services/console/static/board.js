/* The live board: keeps the server-rendered rows, counts, distance bands and the roll
   call's list current from the console's SSE stream (GET /emergencies/{id}/stream:
   dispatch's `board` snapshot, then one `row` event per change), says honestly whether
   it is live, reconnects with backoff, and draws the area and the distance bands on a
   tile-less map. Each row keeps its safety-loop buttons (plain forms posting to the
   console, as the server renders them). Text goes into the DOM with textContent only. */
"use strict";
(function () {
  var i18n = document.getElementById("i18n");
  if (!i18n) { return; }
  var data = i18n.dataset;
  var LABELS = JSON.parse(data.labels);
  var CHANNELS = JSON.parse(data.channels);
  var CONTACTS = JSON.parse(data.contacts);
  var ACTIONS = JSON.parse(data.actions);
  var NEXT = JSON.parse(data.nextStates);
  var ORDER = ["on_scene", "en_route", "accepted", "standby", "released", "delivered", "notified",
               "declined", "failed", "stood_down", "home_safe"];
  var SAFETY = ["en_route", "on_scene", "released", "home_safe"];
  var rollCall = JSON.parse(data.rollCall || "null");
  var rollCallTimer = null;
  var BANDS = [500, 1000, 2000, 5000, 10000, 20000, 50000];
  var emergencyId = data.emergency;
  var $ = function (id) { return document.getElementById(id); };
  var rows = new Map();
  var lastUpdate = null;
  var source = null, timer = null, delayMs = 1000;

  function fmtClock(date) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return p(date.getHours()) + ":" + p(date.getMinutes()) + ":" + p(date.getSeconds());
  }
  function fmtHm(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return "—"; }
    return fmtClock(d).slice(0, 5);
  }
  function fmtDistance(m) {
    if (typeof m !== "number") { return "—"; }
    if (m < 1000) { return (Math.round(m / 10) * 10) + " m"; }
    if (m < 10000) { return (m / 1000).toFixed(1) + " km"; }
    return Math.round(m / 1000) + " km";
  }
  function setConnection(live) {
    var el = $("connection");
    el.classList.toggle("connection-live", live);
    el.classList.toggle("connection-lost", !live);
    if (live) { el.textContent = data.live; }
    else if (lastUpdate) { el.textContent = data.reconnecting.replace("{time}", fmtClock(lastUpdate)); }
    else { el.textContent = data.never; }
  }

  // --- table and counts ---------------------------------------------------------------
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function badge(status) {
    var label = LABELS[status] || ["?", status, "info"];
    var span = document.createElement("span");
    span.className = "badge badge-" + label[2];
    span.dataset.status = status;
    var mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = label[0];
    span.appendChild(mark);
    span.appendChild(document.createTextNode(" " + label[1]));
    return span;
  }
  function rank(row) {
    var i = ORDER.indexOf(String(row.status));
    return i < 0 ? ORDER.length : i;
  }
  function render() {
    var list = Array.from(rows.values());
    list.sort(function (a, b) {
      if (rank(a) !== rank(b)) { return rank(a) - rank(b); }
      var ea = typeof a.eta_minutes === "number" ? a.eta_minutes : 1e9;
      var eb = typeof b.eta_minutes === "number" ? b.eta_minutes : 1e9;
      if (ea !== eb) { return ea - eb; }
      return String(a.member_id).localeCompare(String(b.member_id));
    });
    var fresh = document.createDocumentFragment();
    var c = { alerted: 0, delivered: 0, accepted: 0, en_route: 0, on_scene: 0, released: 0,
              home_safe: 0, overdue: 0, standby: 0, declined: 0, no_answer: 0, failed: 0,
              stood_down: 0 };
    var bands = {};
    list.forEach(function (row) {
      var status = String(row.status);
      c.alerted += 1;
      if (status !== "notified" && status !== "failed") { c.delivered += 1; }
      if (status === "notified" || status === "delivered") { c.no_answer += 1; }
      else if (c[status] !== undefined) { c[status] += 1; }
      if (row.overdue) { c.overdue += 1; }
      if (typeof row.distance_m === "number") {
        var band = BANDS.find(function (b) { return row.distance_m <= b; }) || BANDS[BANDS.length - 1];
        bands[band] = (bands[band] || 0) + 1;
      }
      var tr = document.createElement("tr");
      tr.dataset.member = String(row.member_id);
      if (row.overdue) { tr.className = "overdue"; }
      var id = cell(tr, String(row.member_id).slice(0, 8), "id");
      id.title = String(row.member_id);
      var td = document.createElement("td");
      td.appendChild(badge(status));
      if (row.overdue) { td.appendChild(document.createTextNode(" ")); td.appendChild(overdueFlag()); }
      tr.appendChild(td);
      var eta = "—";
      if (typeof row.eta_minutes === "number") {
        eta = data.minutes.replace("{m}", String(row.eta_minutes));
        if (row.expected_arrival_at) { eta += " (" + fmtHm(row.expected_arrival_at) + ")"; }
      }
      cell(tr, eta);
      cell(tr, fmtDistance(row.distance_m));
      cell(tr, row.answered_at ? fmtHm(row.answered_at) : "—");
      cell(tr, row.channel ? (CHANNELS[row.channel] || row.channel) : "—");
      cell(tr, row.contact_step ? (CONTACTS[row.contact_step] || row.contact_step) : "—");
      cell(tr, row.wave === null || row.wave === undefined ? "—" : String(row.wave), "opt");
      var actions = document.createElement("td");
      var form = stateButtons(row);
      if (form) { actions.appendChild(form); }
      tr.appendChild(actions);
      fresh.appendChild(tr);
    });
    if (!list.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      var td2 = cell(empty, data.empty);
      td2.colSpan = 9;
      fresh.appendChild(empty);
    }
    $("rows").replaceChildren(fresh);
    Object.keys(c).forEach(function (k) { var el = $("c-" + k); if (el) { el.textContent = String(c[k]); } });
    $("c-filled").textContent = String(c.accepted + c.en_route + c.on_scene + c.released + c.home_safe);
    renderBands(bands);
    renderRollCall();
  }
  function overdueFlag() {
    var span = document.createElement("span");
    span.className = "badge badge-bad overdue-flag";
    var mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = "⚠";
    span.appendChild(mark);
    span.appendChild(document.createTextNode(" " + data.overdue));
    return span;
  }
  // the same form the server renders: one button per state the coordinator may set next
  function stateButtons(row) {
    var next = NEXT[String(row.status)];
    if (!next || data.status === "pending_approval") { return null; }
    var form = document.createElement("form");
    form.method = "post";
    form.className = "row-actions";
    form.action = "/emergencies/" + encodeURIComponent(emergencyId) + "/responders/" +
      encodeURIComponent(String(row.member_id));
    var csrf = document.createElement("input");
    csrf.type = "hidden"; csrf.name = "csrf_token"; csrf.value = data.csrf;
    form.appendChild(csrf);
    next.forEach(function (state) {
      var button = document.createElement("button");
      button.type = "submit"; button.name = "status"; button.value = state;
      button.className = "button-small";
      button.textContent = ACTIONS[state] || state;
      form.appendChild(button);
    });
    return form;
  }

  // --- roll call: who has confirmed, who is waited for, who is missing after the deadline
  function setRollCall(latest) {
    if (!latest || !$("rc-started")) { return; }
    if (rollCall && rollCall.roll_call_id === latest.roll_call_id) { return; }
    rollCall = latest;
    if (rollCallTimer) { clearTimeout(rollCallTimer); rollCallTimer = null; }
    $("rc-started").textContent = data.rcStarted
      .replace("{time}", fmtHm(rollCall.started_at))
      .replace("{deadline}", fmtHm(rollCall.missing_after));
  }
  function renderRollCall() {
    var list = $("rc-list");
    if (!rollCall || !list) { return; }
    $("rc-none").hidden = true;
    $("rc-current").hidden = false;
    var late = Date.now() >= new Date(rollCall.missing_after).getTime();
    var asked = rollCall.confirmed.concat(rollCall.waiting, rollCall.missing);
    var confirmed = 0, pending = [];
    asked.forEach(function (member) {
      var row = rows.get(String(member));
      var done = rollCall.confirmed.indexOf(member) >= 0 ||
        (row && (row.confirmed_roll_calls || []).indexOf(rollCall.roll_call_id) >= 0);
      if (done) { confirmed += 1; } else { pending.push(member); }
    });
    $("rc-confirmed").textContent = String(confirmed);
    $("rc-unconfirmed").textContent = String(pending.length);
    var fresh = document.createDocumentFragment();
    pending.sort().forEach(function (member) {
      var li = document.createElement("li");
      li.className = late ? "rc-missing" : "rc-waiting";
      li.dataset.member = member;
      var tag = document.createElement("span");
      tag.className = "badge " + (late ? "badge-bad" : "badge-warn");
      tag.textContent = late ? data.missing : data.waiting;
      li.appendChild(tag);
      li.appendChild(document.createTextNode(" "));
      var id = document.createElement("span");
      id.className = "id"; id.title = member; id.textContent = member.slice(0, 8);
      li.appendChild(id);
      fresh.appendChild(li);
    });
    list.replaceChildren(fresh);
    if (!late && !rollCallTimer) {
      // the deadline passes without any event: redraw then, the waiting become missing
      var wait = new Date(rollCall.missing_after).getTime() - Date.now() + 250;
      rollCallTimer = setTimeout(function () { rollCallTimer = null; renderRollCall(); }, wait);
    }
  }

  // --- map: the area, and rings for the distance bands (never positions) -------------
  var map = null, bandLayer = null, centre = null;
  function setUpMap() {
    var el = $("board-map");
    if (!el || !window.L) { return; }
    var area = JSON.parse(el.dataset.area || "{}");
    el.classList.remove("hidden");
    var shape;
    if (area.polygon) {
      var ring = area.polygon.coordinates[0].map(function (p) { return [p[1], p[0]]; });
      map = MusterMaps.create(el, ring[0], 12);
      shape = L.polygon(ring, { weight: 2, color: "#0b4f8a", fillOpacity: 0.1 }).addTo(map);
      centre = shape.getBounds().getCenter();
    } else {
      centre = L.latLng(area.lat, area.lon);
      map = MusterMaps.create(el, centre, 12);
      shape = L.circle(centre, { radius: area.radius_m, weight: 2, color: "#0b4f8a", fillOpacity: 0.1 }).addTo(map);
    }
    map.fitBounds(shape.getBounds(), { maxZoom: 15 });
    L.circleMarker(centre, { radius: 5, color: "#1a1a1a", fillOpacity: 1 }).addTo(map);
    bandLayer = L.layerGroup().addTo(map);
  }
  function renderBands(bands) {
    var body = $("band-rows");
    var fresh = document.createDocumentFragment();
    var keys = BANDS.filter(function (b) { return bands[b]; });
    keys.forEach(function (b) {
      var tr = document.createElement("tr");
      tr.dataset.band = String(b);
      cell(tr, fmtDistance(b));
      cell(tr, String(bands[b]), "num");
      fresh.appendChild(tr);
    });
    if (!keys.length) { var tr0 = document.createElement("tr"); cell(tr0, "—").colSpan = 2; fresh.appendChild(tr0); }
    body.replaceChildren(fresh);
    if (!bandLayer) { return; }
    bandLayer.clearLayers();
    keys.forEach(function (b) {
      L.circle(centre, { radius: b, weight: 1, color: "#4a4a4a", dashArray: "4 4", fill: false,
                         interactive: false }).addTo(bandLayer);
      var east = L.latLng(centre.lat, centre.lng + b / (111320 * Math.cos(centre.lat * Math.PI / 180)));
      L.marker(east, { interactive: false, keyboard: false,
        icon: L.divIcon({ className: "band-label", html: "", iconSize: null }) })
        .addTo(bandLayer).getElement().textContent = fmtDistance(b) + ": " + bands[b];
    });
  }

  // --- the stream ---------------------------------------------------------------------
  function scheduleReconnect() {
    if (source) { source.close(); source = null; }
    setConnection(false);
    if (timer) { return; }
    timer = setTimeout(function () { timer = null; connect(); }, delayMs);
    delayMs = Math.min(delayMs * 2, 30000);
  }
  function connect() {
    source = new EventSource("/emergencies/" + encodeURIComponent(emergencyId) + "/stream");
    source.addEventListener("board", function (event) {
      delayMs = 1000;
      rows.clear();
      var snapshot = JSON.parse(event.data);
      (snapshot.rows || []).forEach(function (row) { rows.set(String(row.member_id), row); });
      setRollCall(snapshot.roll_call);
      lastUpdate = new Date();
      render();
      setConnection(true);
    });
    source.addEventListener("row", function (event) {
      var row = JSON.parse(event.data);
      rows.set(String(row.member_id), row);
      lastUpdate = new Date();
      render();
      setConnection(true);
    });
    // a roll call started from any console: this board shows it at once
    source.addEventListener("roll_call", function (event) {
      setRollCall(JSON.parse(event.data));
      lastUpdate = new Date();
      renderRollCall();
      setConnection(true);
    });
    source.onerror = scheduleReconnect;
  }

  setUpMap();
  renderRollCall();
  // a closed emergency stays live too: members still out report home safe after the close
  setConnection(false);
  connect();
  document.body.dataset.boardReady = "1";
})();
