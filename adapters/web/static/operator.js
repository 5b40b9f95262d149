// imagine-bot operator view: live queue by server push, chart read-out, quick-fill of the forms.
"use strict";
(() => {
  const live = document.getElementById("live");
  const readout = document.getElementById("readout");

  // The live queue is pushed (server-sent events); the stream is reopened whenever it drops,
  // also after an answer other than 200, which an EventSource does not retry by itself.
  let retry = 1000;
  function connect() {
    const source = new EventSource("/operator/events");
    const again = () => { source.close(); setTimeout(connect, retry); retry = Math.min(retry * 2, 8000); };
    source.addEventListener("open", () => { retry = 1000; });
    source.addEventListener("live", (e) => { live.innerHTML = JSON.parse(e.data).html; });
    source.addEventListener("bye", again);
    source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) again(); });
  }
  if (live) connect();

  function show(day) {
    const title = day.querySelector("title");
    if (!title || !readout) return;
    document.querySelectorAll("svg .day.sel").forEach((d) => d.classList.remove("sel"));
    day.classList.add("sel");
    readout.textContent = title.textContent;
  }
  document.querySelectorAll("svg.chart .day").forEach((day) => {
    day.addEventListener("click", () => show(day));
    day.addEventListener("focus", () => show(day));
  });

  // A refund gives money back: asked once more (the form says what happens to the credits).
  document.addEventListener("submit", (e) => {
    const ask = e.target.dataset ? e.target.dataset.confirm : "";
    if (ask && !window.confirm(ask)) e.preventDefault();
  });

  document.addEventListener("click", (e) => {
    const fill = e.target.closest("[data-fill]");
    if (!fill) return;
    for (const id of ["grant-user", "ban-user"]) {
      const input = document.getElementById(id);
      if (input) input.value = fill.dataset.fill;
    }
    document.getElementById("manage").scrollIntoView({ behavior: "smooth", block: "start" });
    document.getElementById("grant-credits").focus({ preventScroll: true });
  });
})();
