// vestis web page: search by words or photo, filter facets, "more like this", steering, tags,
// thumbs up/down that re-rank (POST /v1/recommend) and "Why?" (POST /v1/explain).
// Plain JavaScript, no build step. Everything the server sends is shown with textContent.
"use strict";

(() => {
  const PAGE = 24;
  const META_FIELDS = ["articleType", "baseColour", "season", "usage"];
  const TITLE_FIELDS = ["productDisplayName", "title", "name", "product_name"];
  const FACET_DEPTH = 200; // facet counts are taken over this many of the best results
  const TAG_TAXONOMIES = ["articleType", "baseColour", "masterCategory", "season", "usage"];

  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem("vestis-key") || "",
    catalog: null,
    query: "",
    image: null, // data URL of the uploaded photo
    item: null, // {id, title} for "more like this"
    saved: null, // the search to go back to after "more like this"
    steer: new Set(),
    steers: [], // the server's built-in steering directions
    filters: new Map(), // field -> Set of values
    like: new Map(), // item id -> title: thumbs up (the query moves towards them)
    dislike: new Map(), // item id -> title: thumbs down (and away from these)
    where: "", // a filter expression from the URL (?where=...)
    offset: 0,
    busy: 0,
  };

  // ------------------------------------------------------------------ API calls

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const init = { headers, method: body === undefined ? "GET" : "POST" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const msg = (data && data.error && data.error.message) || res.statusText || "request failed";
      if (res.status === 401) askForKey(msg);
      throw new ApiError(res.status, msg);
    }
    return data;
  }

  // ---------------------------------------------------------------- API key dialog

  function askForKey(reason) {
    const dialog = $("key-dialog");
    if (dialog.open) return;
    $("key-input").value = "";
    if (reason) $("key-dialog").querySelector("p").textContent = reason + ". The key is kept in this tab only.";
    dialog.showModal();
  }

  $("key-form").addEventListener("submit", () => {
    state.key = $("key-input").value.trim();
    sessionStorage.setItem("vestis-key", state.key);
    init();
  });
  $("key-cancel").addEventListener("click", () => $("key-dialog").close());
  $("key-button").addEventListener("click", () => askForKey(""));

  // ------------------------------------------------------------------- start-up

  async function init() {
    setStatus("Loading the catalog…");
    let catalogs;
    try {
      catalogs = (await api("/v1/catalogs")).data;
    } catch (err) {
      setStatus(err.status === 401 ? "This server needs an API key." : "Cannot reach the server: " + err.message, true);
      return;
    }
    if (!catalogs.length) {
      setStatus("This server has no catalog (start it with --catalog DIR). Photo tagging still works.");
      return;
    }
    const select = $("catalog");
    select.replaceChildren(...catalogs.map((c) => new Option(`${c.name} (${c.items} items)`, c.name)));
    select.closest("label").hidden = catalogs.length < 2;
    if (!state.catalog || !catalogs.some((c) => c.name === state.catalog)) state.catalog = catalogs[0].name;
    select.value = state.catalog;
    showCatalogInfo(catalogs.find((c) => c.name === state.catalog));
    try {
      state.steers = (await api("/v1/steers")).data.map((s) => s.name);
    } catch (_) {
      state.steers = [];
    }
    renderSteers();
    syncForm();
    if (hasQuery()) {
      search(false, { push: false });
    } else {
      await loadFacets();
      setStatus("Type what you are looking for, or drop a photo.");
    }
  }

  function showCatalogInfo(c) {
    $("catalog-info").textContent = c ? `${c.name}: ${c.items.toLocaleString()} items · model ${c.model}` : "";
  }

  $("catalog").addEventListener("change", async (e) => {
    state.catalog = e.target.value;
    state.filters.clear();
    state.item = null;
    await init();
  });

  // --------------------------------------------------------------------- facets

  async function loadFacets() {
    try {
      const out = await api(`/v1/catalogs/${encodeURIComponent(state.catalog)}/facets?limit=12`);
      renderFacets(out.facets, "Counts over the whole catalog.");
    } catch (err) {
      $("facets").textContent = "Filters unavailable: " + err.message;
    }
  }

  function renderFacets(facets, scope) {
    $("facets-scope").textContent = scope;
    const sets = facets.map((facet) => {
      const fs = document.createElement("fieldset");
      fs.className = "facet";
      fs.dataset.field = facet.field;
      const legend = document.createElement("legend");
      legend.textContent = facet.field;
      fs.append(legend);
      const values = facet.values.map((v) => [String(v.value), v.count]);
      for (const chosen of state.filters.get(facet.field) || []) { // a selection stays in view
        if (!values.some(([v]) => v === chosen)) values.push([chosen, 0]);
      }
      for (const [value, count] of values) {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = value;
        box.dataset.field = facet.field;
        box.checked = !!state.filters.get(facet.field)?.has(value);
        box.addEventListener("change", onFacet);
        const text = document.createElement("span");
        text.textContent = value;
        const n = document.createElement("span");
        n.className = "count";
        n.textContent = count;
        label.append(box, text, n);
        fs.append(label);
      }
      return fs;
    });
    $("facets").replaceChildren(...sets);
    $("clear-filters").hidden = state.filters.size === 0;
  }

  function onFacet(e) {
    const { field } = e.target.dataset;
    const set = state.filters.get(field) || new Set();
    if (e.target.checked) set.add(e.target.value); else set.delete(e.target.value);
    if (set.size) state.filters.set(field, set); else state.filters.delete(field);
    $("clear-filters").hidden = state.filters.size === 0;
    if (hasQuery()) search();
  }

  $("clear-filters").addEventListener("click", () => {
    state.filters.clear();
    for (const box of $("facets").querySelectorAll("input[type=checkbox]")) box.checked = false;
    $("clear-filters").hidden = true;
    if (hasQuery()) search();
  });

  // ------------------------------------------------------------------- steering

  function renderSteers() {
    const box = $("steer-buttons");
    box.replaceChildren(...state.steers.map((name) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip";
      b.textContent = name;
      b.setAttribute("aria-pressed", String(state.steer.has(name)));
      b.addEventListener("click", () => {
        if (state.steer.has(name)) state.steer.delete(name); else state.steer.add(name);
        b.setAttribute("aria-pressed", String(state.steer.has(name)));
        if (hasQuery()) search(); else setStatus("Search first, then steer the results.");
      });
      return b;
    }));
  }

  // --------------------------------------------------------------------- photos

  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) usePhoto(file);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files[0]) usePhoto(e.target.files[0]);
  });
  $("clear-image").addEventListener("click", () => {
    state.image = null;
    $("file").value = "";
    $("preview-box").hidden = true;
    $("tags").hidden = true;
    if (hasQuery()) search(); else { clearResults(); loadFacets(); }
  });

  function usePhoto(file) {
    if (!file.type.startsWith("image/")) {
      setStatus(`${file.name} is not an image.`, true);
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      state.image = reader.result;
      state.item = null;
      clearFeedback();
      state.query = "";
      $("q").value = "";
      $("preview").src = state.image;
      $("preview").alt = "Your photo: " + file.name;
      $("preview-box").hidden = false;
      search();
      tagPhoto();
    };
    reader.onerror = () => setStatus("Could not read " + file.name, true);
    reader.readAsDataURL(file);
  }

  async function tagPhoto() {
    const panel = $("tags");
    panel.hidden = false;
    $("tags-status").textContent = "Tagging your photo…";
    $("tag-list").replaceChildren();
    try {
      const out = await api("/v1/classify", { image: state.image, taxonomies: TAG_TAXONOMIES, k: 3 });
      const labels = out.results[0].labels;
      const rows = [];
      for (const name of Object.keys(labels)) {
        const group = document.createElement("section");
        group.className = "tag-group";
        const h = document.createElement("h3");
        h.textContent = name;
        const list = document.createElement("ul");
        for (const { label, score } of labels[name]) {
          const li = document.createElement("li");
          const text = document.createElement("span");
          text.className = "tag-label";
          text.textContent = label;
          const bar = document.createElement("span");
          bar.className = "bar";
          bar.setAttribute("aria-hidden", "true");
          bar.style.setProperty("--w", Math.round(score * 100) + "%");
          const pct = document.createElement("span");
          pct.className = "pct";
          pct.textContent = Math.round(score * 100) + "%";
          li.append(text, bar, pct);
          list.append(li);
        }
        group.append(h, list);
        rows.push(group);
      }
      $("tag-list").replaceChildren(...rows);
      $("tags-status").textContent = "";
    } catch (err) {
      $("tags-status").textContent = "Tagging failed: " + err.message;
    }
  }

  // --------------------------------------------------------------------- search

  function hasQuery() {
    return Boolean(state.query || state.image || state.item || state.like.size);
  }

  // ------------------------------------------------------------------- feedback

  function clearFeedback() {
    state.like.clear();
    state.dislike.clear();
    renderFeedback();
  }

  function vote(hit, liked) {
    const id = String(hit.id);
    const mine = liked ? state.like : state.dislike;
    const other = liked ? state.dislike : state.like;
    if (mine.has(id)) mine.delete(id); else { mine.set(id, { id: hit.id, title: titleOf(hit) }); other.delete(id); }
    renderFeedback();
    if (hasQuery()) search(); else clearResults();
  }

  function renderFeedback() {
    const items = [];
    for (const [map, word] of [[state.like, "liked"], [state.dislike, "disliked"]]) {
      for (const [id, entry] of map) {
        const li = document.createElement("li");
        li.dataset.id = id;
        li.dataset.vote = word;
        const text = document.createElement("span");
        text.textContent = `${word === "liked" ? "Liked" : "Disliked"}: ${entry.title}`;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "\u00D7";
        remove.setAttribute("aria-label", `Forget that you ${word} ${entry.title}`);
        remove.addEventListener("click", () => {
          map.delete(id);
          renderFeedback();
          if (hasQuery()) search(); else clearResults();
        });
        li.append(text, remove);
        items.push(li);
      }
    }
    $("feedback-list").replaceChildren(...items);
    $("feedback").hidden = items.length === 0;
  }

  $("clear-feedback").addEventListener("click", () => {
    clearFeedback();
    if (hasQuery()) search(); else clearResults();
  });

  // ----------------------------------------------------------------------- why?

  async function explainHit(hit) {
    const dialog = $("why-dialog");
    const title = titleOf(hit);
    $("why-title").textContent = `Why “${title}” matches “${state.query}”`;
    $("why-status").textContent = "Working out which parts of the photo and which words count…";
    $("why-overlay").hidden = true;
    $("why-caption").textContent = "";
    $("why-words").replaceChildren();
    if (!dialog.open) dialog.showModal();
    let out;
    try {
      out = await api("/v1/explain", { catalog: state.catalog, item_id: hit.id, query: state.query, grid: 8 });
    } catch (err) {
      $("why-status").textContent = "Could not explain it: " + err.message;
      return;
    }
    $("why-status").textContent = "";
    const img = $("why-overlay");
    img.src = out.overlay;
    img.alt = `${title} with a heat map: the brighter a region, the more it raises the score for “${state.query}”`;
    img.hidden = false;
    $("why-caption").textContent = `${out.method} map · score ${out.score.toFixed(3)} · photo alone ${out.image_score.toFixed(3)}`;
    const most = Math.max(1e-9, ...out.words.map((w) => Math.abs(w.contribution)));
    $("why-words").replaceChildren(...out.words.map((w) => {
      const li = document.createElement("li");
      const word = document.createElement("span");
      word.className = "word";
      word.textContent = w.word;
      const bar = document.createElement("span");
      bar.className = "bar" + (w.contribution < 0 ? " negative" : "");
      bar.setAttribute("aria-hidden", "true");
      bar.style.setProperty("--w", Math.round((Math.abs(w.contribution) / most) * 100) + "%");
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = (w.contribution >= 0 ? "+" : "") + w.contribution.toFixed(3);
      li.append(word, bar, value);
      return li;
    }));
  }

  $("why-close").addEventListener("click", () => $("why-dialog").close());

  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.query = $("q").value.trim();
    if (state.item) { state.item = null; $("back").hidden = true; }
    clearFeedback(); // thumbs were for the previous search
    if (!hasQuery()) {
      setStatus("Type what you are looking for, or drop a photo.");
      return;
    }
    search();
  });
  $("hybrid").addEventListener("change", () => { if (state.query) search(); });

  // ------------------------------------------------------------- the search in the URL

  // ?q=red+dress&steer=darker&filter=baseColour:Red&where=...&hybrid=1&item=ID&catalog=NAME
  // (a photo is not put in the URL: it stays in this tab)
  function readUrl() {
    const p = new URLSearchParams(location.search);
    state.query = p.get("q") || "";
    state.where = p.get("where") || "";
    const item = p.get("item");
    state.item = item ? { id: item, title: null } : null;
    state.image = null;
    state.steer = new Set(p.getAll("steer"));
    state.filters = new Map();
    for (const f of p.getAll("filter")) {
      const at = f.indexOf(":");
      if (at < 1) continue;
      const field = f.slice(0, at);
      if (!state.filters.has(field)) state.filters.set(field, new Set());
      state.filters.get(field).add(f.slice(at + 1));
    }
    $("hybrid").checked = p.get("hybrid") === "1";
    if (p.get("catalog")) state.catalog = p.get("catalog");
  }

  function urlOf() {
    const p = new URLSearchParams();
    if (state.query) p.set("q", state.query);
    if (state.item) p.set("item", String(state.item.id));
    if (state.where) p.set("where", state.where);
    for (const s of state.steer) p.append("steer", s);
    for (const [field, values] of state.filters) for (const v of values) p.append("filter", `${field}:${v}`);
    if (state.query && $("hybrid").checked) p.set("hybrid", "1");
    const select = $("catalog");
    if (state.catalog && select.options.length > 1 && state.catalog !== select.options[0].value) {
      p.set("catalog", state.catalog);
    }
    const text = p.toString();
    return location.pathname + (text ? "?" + text : "");
  }

  function pushUrl() {
    const url = state.image ? location.pathname : urlOf(); // a photo is not shared by the URL

    if (url !== location.pathname + location.search) history.pushState(null, "", url);
  }

  function syncForm() {
    $("q").value = state.query;
    for (const b of $("steer-buttons").querySelectorAll(".chip")) {
      b.setAttribute("aria-pressed", String(state.steer.has(b.textContent)));
    }
    for (const box of $("facets").querySelectorAll("input[type=checkbox]")) {
      box.checked = !!state.filters.get(box.dataset.field)?.has(box.value);
    }
    $("clear-filters").hidden = state.filters.size === 0;
    $("preview-box").hidden = !state.image;
    if (!state.image) $("tags").hidden = true;
    $("back").hidden = true;
  }

  window.addEventListener("popstate", () => {
    readUrl();
    clearFeedback();
    syncForm();
    if (hasQuery()) search(false, { push: false });
    else { clearResults(); loadFacets(); }
  });

  $("back").addEventListener("click", () => {
    if (state.saved) Object.assign(state, state.saved);
    state.item = null;
    state.saved = null;
    $("back").hidden = true;
    $("q").value = state.query;
    if (hasQuery()) search(); else clearResults();
  });

  function moreLikeThis(hit) {
    if (!state.item) state.saved = { query: state.query, image: state.image };
    state.item = { id: hit.id, title: titleOf(hit) };
    state.query = "";
    state.image = null;
    clearFeedback();
    $("back").hidden = !state.saved || !(state.saved.query || state.saved.image);
    search();
  }

  function request(offset) {
    const body = { catalog: state.catalog, k: PAGE, offset, include_thumbnails: true };
    if (offset === 0) { body.facets = true; body.facet_depth = FACET_DEPTH; }
    if (state.where) body.where = state.where;
    if (state.item) body.item_id = state.item.id;
    if (state.query) body.query = state.query;
    if (state.image) body.image = state.image;
    if (state.query && $("hybrid").checked) body.hybrid = 0.3;
    if (state.steer.size) body.steer = [...state.steer];
    if (state.filters.size) {
      body.filters = {};
      for (const [field, values] of state.filters) body.filters[field] = [...values];
    }
    if (state.like.size) body.like = [...state.like.values()].map((e) => e.id);
    if (state.dislike.size) body.dislike = [...state.dislike.values()].map((e) => e.id);
    return body;
  }

  function describe() {
    const parts = [];
    if (state.item) parts.push(`items like “${state.item.title || "item " + state.item.id}”`);
    if (state.query) parts.push(`“${state.query}”`);
    if (state.image) parts.push("your photo");
    let text = parts.join(" + ");
    if (state.steer.size) text += `, steered ${[...state.steer].join(", ")}`;
    const n = [...state.filters.values()].reduce((a, s) => a + s.size, 0) + (state.where ? 1 : 0);
    if (n) text += `, ${n} filter${n > 1 ? "s" : ""}`;
    if (state.like.size || state.dislike.size) text += `, ${state.like.size} liked, ${state.dislike.size} disliked`;
    return text;
  }

  async function search(append = false, { push = true } = {}) {
    if (!state.catalog) return;
    state.offset = append ? state.offset + PAGE : 0;
    if (!append && push) pushUrl();
    const ticket = ++state.busy;
    setStatus("Searching " + describe() + "…");
    document.body.setAttribute("aria-busy", "true");
    let out;
    try {
      const feedback = state.like.size || state.dislike.size;
      out = await api(feedback ? "/v1/recommend" : "/v1/search", request(state.offset));
    } catch (err) {
      if (ticket === state.busy) setStatus("Search failed: " + err.message, true);
      return;
    } finally {
      if (ticket === state.busy) document.body.removeAttribute("aria-busy");
    }
    if (ticket !== state.busy) return; // a newer search is under way
    $("results-title").textContent = state.item ? `More like “${state.item.title || "item " + state.item.id}”`
      : "Results";
    if (!append && out.facets) renderFacets(out.facets, `Counts over the best ${FACET_DEPTH} results.`);
    const cards = out.results.map(card);
    if (append) $("results").append(...cards); else $("results").replaceChildren(...cards);
    const shown = $("results").children.length;
    setStatus(shown ? `${shown} results for ${describe()} (${Math.round(out.took_ms)} ms)` : `No results for ${describe()}.`);
    $("more").hidden = out.results.length < PAGE;
    if (!append) $("results").focus({ preventScroll: true });
  }

  $("more").addEventListener("click", () => search(true));

  function clearResults() {
    $("results").replaceChildren();
    $("more").hidden = true;
    $("results-title").textContent = "Results";
    setStatus("Type what you are looking for, or drop a photo.");
  }

  function titleOf(hit) {
    const m = hit.metadata || {};
    for (const f of TITLE_FIELDS) if (m[f]) return String(m[f]);
    const kind = [m.baseColour, m.articleType].filter(Boolean).join(" ");
    return kind || `Item ${hit.id}`;
  }

  function card(hit) {
    const node = $("card").content.firstElementChild.cloneNode(true);
    const title = titleOf(hit);
    node.dataset.id = String(hit.id);
    const img = node.querySelector("img");
    if (hit.thumbnail) {
      img.src = hit.thumbnail;
      img.alt = title;
    } else {
      img.replaceWith(Object.assign(document.createElement("span"), { className: "no-image", textContent: "no image" }));
    }
    node.querySelector(".title").textContent = title;
    const fused = hit.cosine !== null && hit.cosine !== undefined && hit.cosine !== hit.score;
    const score = fused ? `fusion ${hit.score.toFixed(4)} · cosine ${hit.cosine.toFixed(3)}` : `score ${hit.score.toFixed(3)}`;
    node.querySelector(".score").textContent = `${score} · #${hit.rank} · id ${hit.id}`;
    const meta = node.querySelector(".meta");
    for (const f of META_FIELDS) {
      const v = hit.metadata && hit.metadata[f];
      if (v === undefined || v === null || v === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = f;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      dd.dataset.field = f;
      meta.append(dt, dd);
    }
    const btn = node.querySelector(".more-like");
    btn.setAttribute("aria-label", `More like this: ${title}`);
    btn.addEventListener("click", () => moreLikeThis(hit));
    const up = node.querySelector(".like");
    const down = node.querySelector(".dislike");
    up.setAttribute("aria-label", `Like: ${title}`);
    down.setAttribute("aria-label", `Dislike: ${title}`);
    up.setAttribute("aria-pressed", String(state.like.has(String(hit.id))));
    down.setAttribute("aria-pressed", String(state.dislike.has(String(hit.id))));
    up.addEventListener("click", () => vote(hit, true));
    down.addEventListener("click", () => vote(hit, false));
    const why = node.querySelector(".why");
    why.setAttribute("aria-label", `Why does this match? ${title}`);
    why.hidden = !state.query; // explains a text query
    why.addEventListener("click", () => explainHit(hit));
    return node;
  }

  function setStatus(text, error = false) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", error);
  }

  readUrl();
  init();
})();
