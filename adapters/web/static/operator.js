// imagine-bot operator view: live queue refresh, chart read-out, quick-fill of the forms.
"use strict";
(() => {
  const live = document.getElementById("live");
  const readout = document.getElementById("readout");

  async function refresh() {
    try {
      const res = await fetch("/operator/live", { cache: "no-store" });
      if (res.ok) live.innerHTML = (await res.json()).html;
    } catch (e) { /* offline for a moment: keep the last view */ }
  }
  if (live) setInterval(refresh, 3000);

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
