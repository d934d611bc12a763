// The authority summary page, kept current without a reload: every few seconds the
// counts-only summary is fetched as JSON and written into the elements the server
// rendered (data-field, data-count, data-eta, data-qualification). Without JavaScript
// the page still works: its Refresh link renders it anew.
(function () {
  "use strict";
  var root = document.getElementById("authority-summary");
  if (!root) { return; }
  var url = root.getAttribute("data-summary-url");
  var every = parseInt(root.getAttribute("data-poll-ms"), 10) || 3000;
  var status = document.getElementById("summary-connection");
  var failures = 0;

  function show(kind) {
    if (!status) { return; }
    status.classList.remove("hidden", "connection-live", "connection-lost");
    status.classList.add("connection-" + kind);
    status.textContent = status.getAttribute("data-" + kind) || "";
  }

  function put(selector, value) {
    var node = root.querySelector(selector);
    var text = String(value);
    // only a real change touches the DOM, so the live region speaks only then
    if (node && node.textContent !== text) { node.textContent = text; }
  }

  function apply(view) {
    put('[data-field="accepted"]', view.accepted);
    put('[data-field="needed"]', view.needed);
    Object.keys(view.counts || {}).forEach(function (name) {
      put('[data-count="' + name + '"]', view.counts[name]);
    });
    Object.keys(view.eta_bands || {}).forEach(function (band) {
      put('[data-eta="' + band + '"]', view.eta_bands[band]);
    });
    Object.keys(view.by_qualification || {}).forEach(function (code) {
      put('[data-qualification="' + code + '"]', view.by_qualification[code]);
    });
    if (view.first_accept_seconds !== null && view.first_accept_seconds !== undefined) {
      put('[data-field="first_accept"]', Math.round(view.first_accept_seconds) + " s");
    }
    if (view.updated_at) {
      put('[data-field="updated_at"]', new Date(view.updated_at).toLocaleTimeString(document.documentElement.lang || undefined));
    }
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (view) {
        if (!view) { return; }
        failures = 0;
        apply(view);
        show("live");
        window.setTimeout(poll, every);
      })
      .catch(function () {
        failures += 1;
        show("lost");
        // back off while the console or dispatch is unreachable, up to a minute
        window.setTimeout(poll, Math.min(60000, every * Math.pow(2, failures)));
      });
  }

  window.setTimeout(poll, every);
}());
