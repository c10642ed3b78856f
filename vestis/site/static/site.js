// The static catalog search page made by `vestis export site`: everything runs here.
//
// At load: vestis-site.json (what to fetch and how), the vocabulary and character tables, the text tower (ONNX, on
// onnxruntime-web's WebAssembly build, vendored beside the page), the float16 vectors and the
// items. A query is read as `vestis search` reads it (comma-separated terms, "-term" negative,
// "term:w" weighted), each term tokenised (wordpiece.js) and embedded, the weighted sum
// normalised, and every item scored by its inner product with it; the best k are shown.
//
// window.vestisSite = { ready, embed(texts), search(text, k), timings } is the same code the
// form runs, for tests and benchmarks.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const timings = { start: performance.now() };

  // ------------------------------------------------------------------ loading

  async function fetchOk(url, kind) {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`cannot load ${url} (HTTP ${res.status})`);
    return kind === "json" ? res.json() : kind === "text" ? res.text() : res.arrayBuffer();
  }

  // float16 -> float32 through a 65,536-entry table
  function halfTable() {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      if (exp === 0) table[h] = sign * frac * 2 ** -24;
      else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
      else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
    return table;
  }

  function toFloat32(buffer, n, dim) {
    const half = new Uint16Array(buffer);
    if (half.length !== n * dim) throw new Error(`vectors: ${half.length} values, expected ${n} x ${dim}`);
    const table = halfTable();
    const out = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) out[i] = table[half[i]];
    return out;
  }

  async function load() {
    const site = await fetchOk("vestis-site.json", "json");
    const base = new URL(".", location.href);
    ort.env.wasm.wasmPaths = new URL(site.runtime.dir + "/", base).href;
    ort.env.wasm.numThreads = 1; // a static host sends no cross-origin isolation headers: no threads
    const [vocab, chars, items, vectors, session] = await Promise.all([
      fetchOk(site.tokenizer.vocab, "text"),
      fetchOk(site.tokenizer.chars, "json"),
      fetchOk(site.items, "json"),
      fetchOk(site.vectors.file, "bytes"),
      fetchOk(site.text_model.file, "bytes").then((bytes) =>
        ort.InferenceSession.create(new Uint8Array(bytes), {
          executionProviders: ["wasm"],
          graphOptimizationLevel: "all",
        })
      ),
    ]);
    const [n, dim] = site.vectors.shape;
    const state = {
      site,
      n,
      dim,
      items,
      session,
      tokenizer: VestisWordPiece.WordPiece.fromText(vocab, site.tokenizer, chars),
      vectors: toFloat32(vectors, n, dim),
    };
    timings.ready = performance.now();
    return state;
  }

  // ------------------------------------------------------------------ queries

  // vestis.search.parse_terms: "summer dress, -floral, beach:0.5" -> weighted terms
  function parseTerms(query, rules) {
    const terms = [];
    for (const raw of query.split(rules.separator)) {
      let text = raw.trim();
      if (!text) continue;
      let weight = 1.0;
      const m = /^([\s\S]*?):\s*(-?\d+(?:\.\d+)?)$/.exec(text);
      const weighted = Boolean(m && m[1].trim());
      if (weighted) {
        text = m[1].trim();
        weight = parseFloat(m[2]);
      }
      if (text.startsWith("-") && text.length > 1) {
        text = text.slice(1).trim();
        weight = weighted ? -Math.abs(weight) : rules.negative_weight;
      }
      terms.push({ text, weight });
    }
    if (!terms.length) throw new Error("the query is empty");
    return terms;
  }

  // Unit embeddings of texts (one batch, padded to its longest), as encode_texts gives them.
  async function embed(state, texts) {
    const model = state.site.text_model;
    const seqs = texts.map((t) => {
      if (!t.trim()) throw new Error("empty strings cannot be embedded");
      return state.tokenizer.encode(t);
    });
    const width = Math.max(...seqs.map((s) => s.length));
    const ids = new BigInt64Array(seqs.length * width).fill(BigInt(model.pad_id));
    const mask = new BigInt64Array(seqs.length * width);
    seqs.forEach((s, row) => {
      s.forEach((id, j) => {
        ids[row * width + j] = BigInt(id);
        mask[row * width + j] = 1n;
      });
    });
    const feeds = {
      input_ids: new ort.Tensor("int64", ids, [seqs.length, width]),
      attention_mask: new ort.Tensor("int64", mask, [seqs.length, width]),
    };
    const result = await state.session.run(feeds);
    const data = result[model.output].data;
    const dim = state.dim;
    const out = [];
    for (let r = 0; r < seqs.length; r++) {
      const v = Float32Array.from(data.subarray(r * dim, (r + 1) * dim));
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += v[j] * v[j];
      norm = Math.sqrt(norm) || 1;
      for (let j = 0; j < dim; j++) v[j] /= norm;
      out.push(v);
    }
    return out;
  }

  async function queryVector(state, text) {
    const terms = parseTerms(text, state.site.query);
    const embs = await embed(state, terms.map((t) => t.text));
    const q = new Float32Array(state.dim);
    terms.forEach((t, i) => {
      for (let j = 0; j < state.dim; j++) q[j] += t.weight * embs[i][j];
    });
    let norm = 0;
    for (let j = 0; j < state.dim; j++) norm += q[j] * q[j];
    norm = Math.sqrt(norm);
    if (norm < 1e-6) throw new Error("the query's terms cancel out; give it a positive term");
    for (let j = 0; j < state.dim; j++) q[j] /= norm;
    return { q, terms };
  }

  // The k best items by inner product (every item scored; a sorted list of k kept).
  function nearest(state, q, k) {
    const { vectors, n, dim } = state;
    const best = []; // [score, index], best first
    for (let i = 0; i < n; i++) {
      let s = 0;
      const o = i * dim;
      for (let j = 0; j < dim; j++) s += q[j] * vectors[o + j];
      s = Math.fround(s);
      if (best.length === k && s <= best[k - 1][0]) continue;
      let at = best.length;
      while (at > 0 && best[at - 1][0] < s) at--;
      best.splice(at, 0, [s, i]);
      if (best.length > k) best.pop();
    }
    return best;
  }

  function item(state, i) {
    const fields = {};
    for (const [name, col] of Object.entries(state.items.fields)) {
      const code = col.codes[i];
      if (code >= 0) fields[name] = col.values[code];
    }
    const thumbs = state.items.thumbs;
    const ext = thumbs.codes[i] >= 0 ? thumbs.values[thumbs.codes[i]] : "";
    const per = state.site.thumbs.per_folder;
    const thumb = ext ? `thumbs/${Math.floor(i / per)}/${i}.${ext}` : null;
    return { id: state.items.ids[i], fields, thumb };
  }

  async function search(state, text, k) {
    const t0 = performance.now();
    const { q, terms } = await queryVector(state, text);
    const t1 = performance.now();
    const hits = nearest(state, q, Math.min(k, state.n)).map(([score, i]) => ({ score, ...item(state, i) }));
    const t2 = performance.now();
    return { hits, terms, ms: { embed: t1 - t0, scan: t2 - t1, total: t2 - t0 } };
  }

  // ------------------------------------------------------------------ the page

  const TITLE_FIELDS = ["productDisplayName", "title", "name"];
  const SHOWN_FIELDS = ["articleType", "baseColour", "usage", "season", "gender", "masterCategory", "subCategory"];

  function titleOf(hit) {
    for (const f of TITLE_FIELDS) if (hit.fields[f]) return String(hit.fields[f]);
    const parts = ["baseColour", "articleType"].map((f) => hit.fields[f]).filter(Boolean);
    return parts.length ? parts.join(" ") : `Item ${hit.id}`;
  }

  function card(hit) {
    const li = document.createElement("li");
    li.className = "card";
    li.dataset.id = String(hit.id);
    const img = document.createElement("img");
    const title = titleOf(hit);
    img.alt = title;
    img.loading = "lazy";
    img.width = 60;
    img.height = 80;
    if (hit.thumb) img.src = hit.thumb;
    const body = document.createElement("div");
    const h3 = document.createElement("h3");
    h3.textContent = title;
    const score = document.createElement("p");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)} · id ${hit.id}`;
    const dl = document.createElement("dl");
    for (const f of SHOWN_FIELDS) {
      if (hit.fields[f] === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = f;
      const dd = document.createElement("dd");
      dd.dataset.field = f;
      dd.textContent = String(hit.fields[f]);
      dl.append(dt, dd);
    }
    body.append(h3, score, dl);
    li.append(img, body);
    return li;
  }

  async function run(state, text, k, push) {
    const status = $("status");
    status.textContent = "Searching…";
    try {
      const out = await search(state, text, k);
      $("results").replaceChildren(...out.hits.map(card));
      status.textContent = `${out.hits.length} results for “${text}” in ${Math.round(out.ms.total)} ms`;
      if (timings.firstQuery === undefined) timings.firstQuery = out.ms.total;
      if (push) {
        const url = new URL(location.href);
        url.searchParams.set("q", text);
        url.searchParams.set("k", String(k));
        history.pushState({ q: text, k }, "", url);
      }
    } catch (err) {
      $("results").replaceChildren();
      status.textContent = `Error: ${err.message}`;
    }
  }

  function fromUrl(state) {
    const params = new URLSearchParams(location.search);
    const q = params.get("q");
    const k = parseInt(params.get("k") || "10", 10);
    if ([...$("k").options].some((o) => o.value === String(k))) $("k").value = String(k);
    if (q) {
      $("q").value = q;
      return run(state, q, k, false);
    }
    $("results").replaceChildren();
    $("status").textContent = `Ready: type a query (${state.n} items)`;
    return undefined;
  }

  const ready = load();
  window.vestisSite = {
    ready: ready.then(() => true),
    timings,
    embed: async (texts) => (await embed(await ready, texts)).map((v) => Array.from(v)),
    search: async (text, k = 10) => {
      const out = await search(await ready, text, k);
      return { ...out, hits: out.hits.map((h) => ({ id: h.id, score: h.score })) };
    },
  };

  ready.then(
    (state) => {
      const m = state.site.text_model;
      $("catalog-info").textContent =
        `${state.n} items · ${state.site.model} (${m.precision} text tower) · ` +
        `loaded in ${((timings.ready - timings.start) / 1000).toFixed(1)} s`;
      $("q").disabled = false;
      $("go").disabled = false;
      $("search").addEventListener("submit", (ev) => {
        ev.preventDefault();
        const text = $("q").value;
        if (!text.trim()) {
          $("status").textContent = "Type a few words to search for.";
          return;
        }
        run(state, text, parseInt($("k").value, 10), true);
      });
      window.addEventListener("popstate", () => fromUrl(state));
      fromUrl(state);
    },
    (err) => {
      $("catalog-info").textContent = "The catalog could not be loaded.";
      $("status").textContent = `Error: ${err.message}`;
    }
  );
})();
