/* Muster console maps: Leaflet without a tile server (command posts may be offline):
   a plain ground, a metric scale, and what we draw on it. Shared by declare and board. */
"use strict";
window.MusterMaps = (function () {
  function create(element, centre, zoom) {
    var map = L.map(element, {
      attributionControl: false,
      zoomControl: true,
      keyboard: true,
      worldCopyJump: false
    });
    map.setView(centre, zoom);
    L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
    return map;
  }
  function numberOr(value, fallback) {
    var n = parseFloat(value);
    return isFinite(n) ? n : fallback;
  }
  return { create: create, numberOr: numberOr };
})();
