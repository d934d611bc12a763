// The import page's progress: poll the job every half second and move the bar; when the
// job ends, reload so the server renders the result (the report, or what was imported).
(function () {
  "use strict";
  var section = document.getElementById("import-progress");
  if (!section || section.dataset.finished === "true") {
    return;
  }
  var bar = document.getElementById("import-bar");
  var percent = document.getElementById("import-percent");
  var phase = document.getElementById("import-phase");
  var processed = document.getElementById("import-processed");
  var url = "/members/import/" + encodeURIComponent(section.dataset.job);
  var failures = 0;

  function show(job) {
    bar.value = job.percent;
    bar.textContent = job.percent + " %";
    percent.textContent = String(job.percent);
    var word = phase.dataset[job.status];
    if (word) {
      phase.textContent = word;
    }
    processed.textContent = String(job.processed);
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (job) {
        failures = 0;
        show(job);
        if (job.finished) {
          window.location.reload();
          return;
        }
        window.setTimeout(poll, 500);
      })
      .catch(function () {
        // a dropped connection is retried, more slowly; the reload shows any error
        failures += 1;
        if (failures > 5) {
          window.location.reload();
          return;
        }
        window.setTimeout(poll, 1000 * failures);
      });
  }

  window.setTimeout(poll, 500);
})();
