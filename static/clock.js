// M-4: warn on the enrollment screen when this device's clock differs from the
// gateway's by more than 15 seconds (codes depend on it). No inline script: the CSP
// allows scripts from this origin only.
(function () {
  "use strict";
  var el = document.getElementById("clock-skew");
  if (!el) return;
  var server = Number(el.getAttribute("data-server-time"));
  if (!isFinite(server) || server <= 0) return;
  var skew = Math.abs(Date.now() / 1000 - server);
  if (skew > 15) el.hidden = false;
})();
