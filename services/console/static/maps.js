/* Muster console maps: Leaflet on a plain ground (command posts may be offline), or on
   the command post's own tile server when CONSOLE_TILE_URL names one; a metric scale and
   what we draw on it. Shared by declare and board. */
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
    var tiles = document.querySelector('meta[name="muster-tiles"]');
    if (tiles && tiles.content) {
      var attribution = tiles.getAttribute("data-attribution") || "";
      L.tileLayer(tiles.content, { maxZoom: 19, attribution: attribution }).addTo(map);
      if (attribution) {
        L.control.attribution({ prefix: false }).addAttribution(attribution).addTo(map);
      }
    }
    L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
    return map;
  }
  function numberOr(value, fallback) {
    var n = parseFloat(value);
    return isFinite(n) ? n : fallback;
  }
  return { create: create, numberOr: numberOr };
})();
