// imagine-bot playground: composer, references (drag and drop, paste, picker), jobs, buttons.
"use strict";
(() => {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const S = cfg.strings;
  const $ = (id) => document.getElementById(id);
  const thread = $("thread"), form = $("composer"), prompt = $("prompt"), send = $("send");
  const model = $("model"), size = $("size"), aspect = $("aspect"), fileInput = $("files");
  const count = $("n"), style = $("style");
  const refsBox = $("refs"), errorBox = $("form-error"), dropzone = $("dropzone");
  const editing = $("editing"), editingPrompt = $("editing-prompt");
  let files = [];
  let parent = null;

  const option = (value, label, selected) => {
    const o = document.createElement("option");
    o.value = value; o.textContent = label; o.selected = !!selected;
    return o;
  };

  function fillSelects(keep) {
    const spec = cfg.models[model.value];
    const same = parent !== null;
    for (const [select, items] of [[size, spec ? spec.sizes : []], [aspect, spec ? spec.aspects : []]]) {
      const previous = keep ? select.value : null;
      select.replaceChildren();
      if (same) select.append(option("", S.same));
      for (const item of items) {
        const [value, label] = Array.isArray(item) ? item : [item, item];
        select.append(option(value, label, value === previous));
      }
      if (!keep && !same) select.value = select === size ? cfg.defaults.size : cfg.defaults.aspect;
      if (select.selectedIndex < 0) select.selectedIndex = 0;
    }
  }

  function setupModels() {
    model.replaceChildren();
    if (parent !== null) model.append(option("", S.same, true));
    for (const name of Object.keys(cfg.models)) {
      model.append(option(name, name, parent === null && name === cfg.defaults.model));
    }
    fillSelects(false);
  }

  function showCost() {  // what the chosen model and size cost, next to what is left
    const box = $("cost"), spec = cfg.models[model.value || cfg.defaults.model], quota = $("quota");
    if (!box || !spec) return;
    const each = spec.costs[size.value] ?? spec.costs[cfg.defaults.size] ?? Object.values(spec.costs)[0];
    const cost = each * Number(count.value || 1);  // a batch holds every candidate's credits
    const left = quota ? quota.dataset.left : "";
    box.textContent = S.cost.replace("{cost}", cost).replace("{left}", left);
    box.classList.toggle("short", quota !== null && quota.dataset.exempt !== "1" && Number(left) < cost);
  }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function renderRefs() {
    refsBox.replaceChildren();
    refsBox.hidden = files.length === 0;
    files.forEach((file, index) => {
      const box = document.createElement("div");
      box.className = "ref";
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      const remove = document.createElement("button");
      remove.type = "button"; remove.textContent = "×"; remove.title = S.remove;
      remove.addEventListener("click", () => { files.splice(index, 1); renderRefs(); });
      box.append(img, remove);
      refsBox.append(box);
    });
  }

  function addFiles(list) {
    showError("");
    for (const file of list) {
      if (file.type && !file.type.startsWith("image/")) { showError(S.not_image); continue; }
      if (file.size > cfg.maxFileBytes) {
        showError(S.too_large.replace("{size_mb}", (file.size / 1e6).toFixed(1)));
        continue;
      }
      if (files.length < cfg.maxFiles) files.push(file);
    }
    renderRefs();
  }

  function enterEdit(turnId, text) {
    parent = turnId;
    editingPrompt.textContent = text;
    editing.hidden = false;
    prompt.placeholder = prompt.dataset.editPlaceholder;
    setupModels();
    showCost();
    prompt.focus();
  }

  function leaveEdit() {
    parent = null;
    editing.hidden = true;
    prompt.placeholder = prompt.getAttribute("aria-label");
    setupModels();
    showCost();
  }

  const scrollDown = () => window.scrollTo({ top: document.body.scrollHeight, behavior: "smooth" });

  function userBubble(text, tag, thumbs) {
    const div = document.createElement("div");
    div.className = "msg me";
    if (tag) { const t = document.createElement("span"); t.className = "tag"; t.textContent = tag; div.append(t); }
    const p = document.createElement("p"); p.textContent = text; div.append(p);
    if (thumbs && thumbs.length) {
      const row = document.createElement("div"); row.className = "refthumbs";
      for (const f of thumbs) { const i = document.createElement("img"); i.src = URL.createObjectURL(f); i.alt = ""; row.append(i); }
      div.append(row);
    }
    const welcome = $("welcome");
    if (welcome) welcome.remove();
    thread.append(div);
  }

  // ----- live updates: one server-sent event stream, reopened whenever it drops -----------
  let generation = 0;  // counts stream openings; a card older than the last one was in its sync
  const early = new Map();  // events for a job whose card is not on the page yet
  const pendingOf = (id) => thread.querySelector(`article.pending[data-job="${CSS.escape(id)}"]`);

  function pendingBubble(text, jobId) {
    const el = document.createElement("article");
    el.className = "msg bot pending";
    el.setAttribute("aria-busy", "true");
    el.dataset.job = jobId;
    el.dataset.gen = String(generation);
    const spin = document.createElement("span"); spin.className = "spinner";
    const label = document.createElement("span"); label.className = "status"; label.textContent = text;
    el.append(spin, label);
    thread.append(el);
    if (early.has(jobId)) { const data = early.get(jobId); early.delete(jobId); apply(data); }
    scrollDown();
    return el;
  }

  function updateQuota(html, bump) {
    const old = $("quota");
    if (!old || !html) return;
    const open = old.open;
    old.outerHTML = html;
    const now = $("quota");
    now.open = open;
    if (bump) now.classList.add("bump");
    showCost();
  }

  function insertCard(html, before) {
    const found = /data-turn="([^"]+)"/.exec(html);
    if (found && document.getElementById(`turn-${found[1]}`)) return false;  // already shown
    if (before) before.insertAdjacentHTML("beforebegin", html);
    else thread.insertAdjacentHTML("beforeend", html);
    const welcome = $("welcome");
    if (welcome) welcome.remove();
    return true;
  }

  function apply(data) {
    const el = pendingOf(data.job);
    if (!el) {
      // Its card is not made yet (the POST's answer may come after the event), or the job is
      // another tab's: a result still unclaimed shortly after is shown at the end.
      early.set(data.job, data);
      if (data.html) {
        setTimeout(() => {
          if (early.get(data.job) !== data) return;
          early.delete(data.job);
          if (data.state === "done" && insertCard(data.html, null)) { updateQuota(data.quota, true); scrollDown(); }
        }, 1500);
      }
      return;
    }
    if (data.html) {
      insertCard(data.html, el);
      el.remove();
      updateQuota(data.quota, true);
      scrollDown();
      return;
    }
    el.dataset.state = data.state;
    el.querySelector(".status").textContent = data.text;
    if (data.tick) {
      el.dataset.tick = data.tick;
      el.dataset.since = String(Date.now() - (data.running_ms ?? data.elapsed * 1000));
    } else {
      delete el.dataset.tick;
    }
  }

  function sync(data) {
    const known = new Set(data.jobs.map((j) => j.job));
    for (const job of data.jobs) apply(job);
    const orphans = [...thread.querySelectorAll("article.pending[data-job]")]
      .filter((el) => !known.has(el.dataset.job) && Number(el.dataset.gen || 0) < generation);
    let added = 0;
    for (const turn of data.turns) {
      if (insertCard(turn.html, orphans[0] || thread.querySelector("article.pending"))) added++;
    }
    for (const el of orphans) {  // this server does not know the job: a restart came between
      if (added) { el.remove(); continue; }
      const note = document.createElement("article");
      note.className = "msg bot error"; note.setAttribute("role", "alert");
      const p = document.createElement("p"); p.textContent = data.interrupted; note.append(p);
      el.replaceWith(note);
    }
    updateQuota(data.quota, false);
    if (added) scrollDown();
  }

  let retry = 1000;
  function connect() {
    const source = new EventSource("/api/events");
    const again = () => { source.close(); setTimeout(connect, retry); retry = Math.min(retry * 2, 8000); };
    source.addEventListener("open", () => { generation++; retry = 1000; document.body.classList.remove("offline"); });
    source.addEventListener("sync", (e) => sync(JSON.parse(e.data)));
    source.addEventListener("job", (e) => apply(JSON.parse(e.data)));
    source.addEventListener("bye", again);
    source.addEventListener("error", () => {
      document.body.classList.add("offline");
      if (source.readyState === EventSource.CLOSED) again();  // not reopened by the browser
    });
  }

  setInterval(() => {  // the seconds of a running job, counted here between pushes
    for (const el of thread.querySelectorAll("article.pending[data-tick]")) {
      const seconds = Math.max(0, Math.floor((Date.now() - Number(el.dataset.since)) / 1000));
      const text = el.dataset.tick.replace("{elapsed}", seconds), status = el.querySelector(".status");
      if (status.textContent !== text) status.textContent = text;
    }
  }, 250);

  async function post(url, body) {
    const res = await fetch(url, { method: "POST", body, headers: { "X-CSRF-Token": cfg.csrf } });
    let data = {};
    try { data = await res.json(); } catch (e) { data = { error: S.network }; }
    return [res.ok, data];
  }

  async function submit(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) { prompt.focus(); return; }
    const spec = cfg.models[model.value];
    if (spec && files.length > spec.maxRefs) {  // told before sending: nothing is cleared
      showError(S.too_many_refs.replace("{model}", model.value).replace("{limit}", spec.maxRefs)
        .replace("{count}", files.length));
      return;
    }
    const body = new FormData();
    body.append("prompt", text);
    body.append("model", model.value);
    body.append("size", size.value);
    body.append("aspect", aspect.value);
    if (!parent) { body.append("n", count.value); body.append("style", style.value); }
    if (parent) body.append("parent", parent);
    for (const f of files) body.append("files", f, f.name);
    send.disabled = true;
    showError("");
    try {
      const [ok, data] = await post("/api/jobs", body);
      if (!ok) { showError(data.error || S.network); return; }
      userBubble(text, parent ? S.editing_result : "", files);
      pendingBubble(data.text || S.sending, data.job);
      prompt.value = ""; autosize();
      files = []; renderRefs();
      if (parent) leaveEdit();
    } catch (e) {
      showError(S.network);
    } finally {
      send.disabled = false;
    }
  }

  async function press(button) {
    const kind = button.dataset.kind;
    const card = button.closest(".result");
    if (kind === "edit") { enterEdit(card.dataset.turn, button.dataset.prompt || ""); return; }
    if (kind === "delete" && !window.confirm(button.dataset.confirm)) return;
    const body = new FormData();
    body.append("action", button.dataset.action);
    button.disabled = true;
    const [ok, data] = await post("/api/act", body);
    button.disabled = false;
    if (!ok) { showError(data.error || S.network); return; }
    if (kind === "delete") {
      const note = document.createElement("p");
      note.className = "msg bot pending"; note.textContent = data.text;
      card.replaceWith(note);
      return;
    }
    userBubble(button.textContent, "", []);
    pendingBubble(data.text || S.sending, data.job);
  }

  async function describe() {  // prompts for the first attached image, each runnable
    if (!files.length) { showError(S.describe_usage); return; }
    const body = new FormData();
    body.append("files", files[0], files[0].name);
    const button = $("describe");
    button.disabled = true;
    showError("");
    try {
      const [ok, data] = await post("/api/describe", body);
      if (!ok) { showError(data.error || S.network); return; }
      userBubble("🔍", "", files.slice(0, 1));
      thread.insertAdjacentHTML("beforeend", data.html);
      files = []; renderRefs();
      scrollDown();
    } catch (e) {
      showError(S.network);
    } finally {
      button.disabled = false;
    }
  }

  function autosize() {
    prompt.style.height = "auto";
    prompt.style.height = `${Math.min(prompt.scrollHeight + 2, 200)}px`;
  }

  // events
  form.addEventListener("submit", submit);
  prompt.addEventListener("input", autosize);
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  prompt.addEventListener("paste", (e) => {
    const pasted = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (pasted.length) { e.preventDefault(); addFiles(pasted); }
  });
  model.addEventListener("change", () => { fillSelects(true); showCost(); });
  size.addEventListener("change", showCost);
  count.addEventListener("change", showCost);
  $("describe").addEventListener("click", describe);
  fileInput.addEventListener("change", () => { addFiles([...fileInput.files]); fileInput.value = ""; });
  $("cancel-edit").addEventListener("click", leaveEdit);
  thread.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-kind]");
    if (button) { press(button); return; }
    const use = e.target.closest("button[data-use]");
    if (use) { prompt.value = use.dataset.use; autosize(); form.requestSubmit(); return; }
    const chip = e.target.closest("[data-example]");
    if (chip) { prompt.value = chip.dataset.example; autosize(); prompt.focus(); }
  });
  $("locale").addEventListener("change", async (e) => {
    const body = new FormData();
    body.append("locale", e.target.value);
    await post("/api/locale", body);
    window.location.reload();
  });
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; dropzone.hidden = false; } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) dropzone.hidden = true; });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault(); depth = 0; dropzone.hidden = true;
    addFiles([...e.dataTransfer.files]);
    prompt.focus();
  });

  setupModels();
  showCost();
  connect();
  window.scrollTo(0, document.body.scrollHeight);
})();
