"""Chinese keyword search: how should Chinese titles be cut into the words FTS5 indexes?

A mixed catalog is made from KAGL products: those with an English title keep it, the others get
a Chinese shop title composed from the reviewed term table (``vestis/data/terms_zh.yaml``), as
Chinese shops write them ("Puma夏季黑色运动鞋", "红色的长裙", "休闲蓝色T恤"): colour, article,
sometimes a season or occasion, sometimes a Latin brand glued on, in one of several orders. The
body is the product's English metadata text, as ``vestis index build`` makes it. Every way of
cutting is run on the same catalog by SQLite's FTS5 (title weight 2, body 1, ``bm25()``), as the
embedded store runs it. The rules, written before measuring:

* **one-word queries**: every Chinese name of an article type, sub-category, colour, season and
  occasion in the term table that occurs in some title; an item is relevant when its title
  contains the query (what a shopper typing 连衣裙 expects);
* **two-word queries**: colour + article written together ("黑色运动鞋"), for the 60 most frequent
  pairs; relevant when the title contains both words;
* **traditional**: the one-word queries that differ in traditional characters (OpenCC ``s2t``),
  against the same simplified titles;
* **English**: the 80 most frequent words of the English titles; the baseline's results among the
  English-titled items are the truth (the current behaviour must stay). The other items are left
  out: a Latin brand glued to a Chinese title ("Puma夏季黑色运动鞋") is one token to the baseline,
  so it misses those items, which the new ways find.

Per way of cutting: recall over all matches (k = the catalog), precision of all matches, P@10
(queries with at least 10 relevant items), median and p99 query time (the top 10 by bm25), the
time to load its dictionary (once per process), the time to prepare and index the titles and
bodies, the FTS5 index size. ::

    python benchmarks/keywords_zh.py                 # 20,000 KAGL products

Prints a table and writes results/bench/keywords_zh.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOKENIZE = "porter unicode61 remove_diacritics 2"
FIELDS = ("articleType", "subCategory", "baseColour", "season", "usage")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


# ----------------------------------------------------------------------------- the catalog


def compose_title(row: dict, terms, rng: np.random.Generator, brands: list[str]) -> tuple[str, dict]:
    """A Chinese shop title for ``row`` and the term-table words it was made of."""

    def pick(field: str) -> str:
        names = terms.names(field, (row.get(field) or "").strip())
        return str(rng.choice(names)) if names else ""

    article, colour, season, usage = pick("articleType"), pick("baseColour"), pick("season"), pick("usage")
    brand = str(rng.choice(brands)) if rng.random() < 0.4 else ""
    style = int(rng.integers(0, 5))
    if style == 0:
        title = f"{brand}{season}{colour}{article}"
    elif style == 1:
        title = f"{colour}的{article}"
    elif style == 2:
        title = f"{usage}{colour}{article}" + (f" {brand}" if brand else "")
    elif style == 3:
        title = f"{brand} {article} {colour}".strip()
    else:
        title = f"{season}新款{colour}{article}"
    return title, {"article": article, "colour": colour}


def make_catalog(n: int, seed: int = 0) -> list[dict]:
    import pyarrow.parquet as pq

    from vestis.data import kagl_parquets
    from vestis.data.terms import load_terms

    terms = load_terms("zh")
    cols = ["id", "productDisplayName", *FIELDS, "masterCategory"]
    rows = []
    for f in kagl_parquets():
        rows += pq.read_table(f, columns=cols).to_pylist()
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    brands = sorted(Counter(r["productDisplayName"].split()[0] for r in rows if r["productDisplayName"]))
    brands = [b for b in brands if b.isalpha()][:60] or ["Nike"]
    out = []
    for r in rows:
        english = (r["productDisplayName"] or "").strip()
        title, words = (english, {}) if english else compose_title(r, terms, rng, brands)
        body = " ".join(str(r[k]) for k in (*FIELDS, "masterCategory") if r.get(k))
        out.append({"id": r["id"], "title": title, "body": body, "zh": not english, "words": words})
    return out


# ----------------------------------------------------------------------------- ways of cutting


class Way:
    """How titles are prepared and queries become an FTS5 MATCH expression."""

    name = ""
    tokenize = TOKENIZE
    init_s = 0.0  # loading what it needs (a dictionary), once per process

    def doc(self, text: str) -> str:
        return text

    def match(self, query: str) -> str | None:
        words = dict.fromkeys(re.findall(r"\w+", self.query_text(query).lower()))
        return " OR ".join(f'"{w}"' for w in words) or None

    def query_text(self, query: str) -> str:
        return query


class Baseline(Way):
    name = "unicode61 as before (no change)"


def _fold(text: str) -> str:
    from vestis.index.words import to_simplified

    return to_simplified(text)


class Trigram(Way):
    name = "FTS5 trigram tokenizer"
    tokenize = "trigram"

    def doc(self, text: str) -> str:
        return _fold(text)

    def match(self, query: str) -> str | None:
        words = dict.fromkeys(_fold(query).lower().split())
        return " OR ".join('"' + w.replace('"', "") + '"' for w in words) or None


def _bigrams(run: str) -> str:
    return " " + (" ".join(run[i : i + 2] for i in range(len(run) - 1)) if len(run) > 1 else run) + " "


class Bigram(Way):
    name = "character bigrams"

    def doc(self, text: str) -> str:
        return _HAN.sub(lambda m: _bigrams(m.group()), _fold(text))

    def match(self, query: str) -> str | None:  # a word: the phrase of its bigrams (adjacent, in order)
        words = dict.fromkeys(re.findall(r"\w+", _fold(query).lower()))
        return " OR ".join('"' + _HAN.sub(lambda m: _bigrams(m.group()), w).strip() + '"' for w in words) or None


class Jieba(Way):
    def __init__(self, index_mode: str, query_mode: str, dictionary: list[str] | None = None) -> None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        t0 = time.perf_counter()
        self.seg = jieba.Tokenizer()
        self.seg.initialize()
        self.init_s = time.perf_counter() - t0
        for w in dictionary or []:
            self.seg.add_word(w)
        self.index_mode, self.query_mode = index_mode, query_mode
        extra = " + term-table words" if dictionary else ""
        self.name = f"jieba, titles {index_mode} / queries {query_mode}{extra}"

    def _cut(self, text: str, mode: str) -> str:
        cut = self.seg.cut_for_search if mode == "search" else self.seg.cut
        return _HAN.sub(lambda m: " " + " ".join(w for w in cut(m.group()) if w.strip()) + " ", _fold(text))

    def doc(self, text: str) -> str:
        return self._cut(text, self.index_mode)

    def query_text(self, query: str) -> str:
        return self._cut(query, self.query_mode)


class Vestis(Way):
    """What vestis ships (:func:`vestis.index.words.keyword_text`)."""

    name = "vestis.index.words (shipped)"

    def __init__(self) -> None:
        from vestis.index.words import keyword_text

        t0 = time.perf_counter()
        keyword_text("连衣裙")  # loads jieba, the term table's words, OpenCC
        self.init_s = time.perf_counter() - t0

    def doc(self, text: str) -> str:
        from vestis.index.words import keyword_text

        return keyword_text(text)

    def match(self, query: str) -> str | None:
        from vestis.index.words import query_words

        return " OR ".join(f'"{w}"' for w in query_words(query)) or None


# ----------------------------------------------------------------------------- measuring


def index(way: Way, catalog: list[dict]) -> tuple[sqlite3.Connection, float, int]:
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE VIRTUAL TABLE fts USING fts5(title, body, tokenize='{way.tokenize}')")
    t0 = time.perf_counter()
    docs = [(i, way.doc(c["title"]), way.doc(c["body"])) for i, c in enumerate(catalog)]
    con.executemany("INSERT INTO fts(rowid, title, body) VALUES (?, ?, ?)", docs)
    con.commit()
    seconds = time.perf_counter() - t0
    size = con.execute("SELECT sum(length(block)) FROM fts_data").fetchone()[0]
    return con, seconds, int(size)


def search(con: sqlite3.Connection, match: str | None, k: int) -> list[int]:
    if match is None:
        return []
    try:
        q = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts, 2.0, 1.0) LIMIT ?"
        return [r[0] for r in con.execute(q, (match, k))]
    except sqlite3.OperationalError:
        return []


def measure(way: Way, con: sqlite3.Connection, queries: list[tuple[str, set[int]]], n: int, only=None) -> dict:
    """``only``: the items judged (the others are left out of the results before counting)."""
    recalls, precisions, p10, times = [], [], [], []
    for q, relevant in queries:
        match = way.match(q)
        got = search(con, match, n)
        if only is not None:
            got = [i for i in got if i in only]
        hit = len(relevant & set(got))
        recalls.append(hit / len(relevant) if relevant else 1.0)
        precisions.append(hit / len(got) if got else (1.0 if not relevant else 0.0))
        if len(relevant) >= 10:
            p10.append(len(relevant & set(got[:10])) / 10)
        t0 = time.perf_counter()
        search(con, way.match(q), 10)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "queries": len(queries),
        "recall": round(float(np.mean(recalls)), 4),
        "precision": round(float(np.mean(precisions)), 4),
        "p_at_10": round(float(np.mean(p10)), 4) if p10 else None,
        "found_none": sum(r == 0 for r in recalls),
        "ms_p50": round(statistics.median(times), 3),
        "ms_p99": round(float(np.percentile(times, 99)), 3),
    }


def query_sets(catalog: list[dict], baseline: sqlite3.Connection, n: int) -> dict[str, list[tuple[str, set[int]]]]:
    from vestis.data.terms import load_terms
    from vestis.index.words import to_simplified

    terms = load_terms("zh")
    titles = [to_simplified(c["title"]) for c in catalog]
    zh = [i for i, c in enumerate(catalog) if c["zh"]]

    def containing(*words: str) -> set[int]:
        return {i for i in zh if all(w in titles[i] for w in words)}

    names = sorted({nm for f in FIELDS for vals in terms.table.get(f, {}).values() for nm in vals})
    one = [(w, containing(w)) for w in names if containing(w)]
    pairs = Counter((catalog[i]["words"]["colour"], catalog[i]["words"]["article"]) for i in zh)
    pairs = Counter({p: c for p, c in pairs.items() if all(p)})
    two = [(c + a, containing(c, a)) for (c, a), _ in pairs.most_common(60)]
    import opencc

    s2t = opencc.OpenCC("s2t")
    trad = [(s2t.convert(w), rel) for w, rel in one if s2t.convert(w) != w]
    english_words = Counter(w for c in catalog if not c["zh"] for w in re.findall(r"[a-z]+", c["title"].lower()))
    english_items = {i for i, c in enumerate(catalog) if not c["zh"]}
    english = []
    for w, _ in english_words.most_common(80):
        english.append((w, set(search(baseline, f'"{w}"', n)) & english_items))
    return {"one word": one, "two words": two, "traditional": trad, "English": english}


def main() -> None:
    from vestis.data.terms import load_terms

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="KAGL products in the catalog")
    ap.add_argument("--out", default="results/bench/keywords_zh.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    catalog = make_catalog(args.n)
    n = len(catalog)
    terms = load_terms("zh")
    table_words = sorted({nm for f in terms.table for vals in terms.table[f].values() for nm in vals})
    ways: list[Way] = [
        Baseline(), Trigram(), Bigram(), Jieba("precise", "precise"), Jieba("search", "precise"),
        Jieba("search", "search"), Jieba("search", "precise", table_words), Vestis(),
    ]  # fmt: skip
    base_con, _, _ = index(ways[0], catalog)
    sets = query_sets(catalog, base_con, n)
    rows = []
    for way in ways:
        con, seconds, size = index(way, catalog)
        row = {"way": way.name, "init_s": round(way.init_s, 2), "index_s": round(seconds, 2), "fts_kb": size // 1024}
        english_items = {i for i, c in enumerate(catalog) if not c["zh"]}
        for name, queries in sets.items():
            row[name] = measure(way, con, queries, n, english_items if name == "English" else None)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        con.close()
    result = {
        "catalog": {"items": n, "chinese_titles": sum(c["zh"] for c in catalog), "seed": 0,
                    "examples": [c["title"] for c in catalog if c["zh"]][:12]},
        "queries": {k: len(v) for k, v in sets.items()},
        "query_examples": {k: [q for q, _ in v[:8]] for k, v in sets.items()},
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "note": "2-core machine shared with a training job and other helpers: times are upper bounds; compare ratios",
    }  # fmt: skip
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    lines = [
        "| way | load s | index s | FTS KB | one word: recall / precision / P@10 | none found "
        "| two words: recall / P@10 | traditional: recall | English: recall / precision | query ms p50 (one word) |",
        "|---|---:|---:|---:|---|---:|---|---:|---|---:|",
    ]
    for r in result["rows"]:
        o, t, tr, en = r["one word"], r["two words"], r["traditional"], r["English"]
        lines.append(
            f"| {r['way']} | {r['init_s']} | {r['index_s']} | {r['fts_kb']} "
            f"| {o['recall']} / {o['precision']} / {o['p_at_10']} "
            f"| {o['found_none']} of {o['queries']} | {t['recall']} / {t['p_at_10']} | {tr['recall']} "
            f"| {en['recall']} / {en['precision']} | {o['ms_p50']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
