// The demo dashboard's live page: a WebSocket through the gateway that counts.
"use strict";
(function () {
  const counter = document.getElementById("counter");
  const state = document.getElementById("state");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/live/ws");
  ws.addEventListener("open", function () { state.textContent = "open"; });
  ws.addEventListener("message", function (e) { counter.textContent = e.data; });
  ws.addEventListener("close", function () { state.textContent = "closed"; });
  ws.addEventListener("error", function () { state.textContent = "error"; });
})();
