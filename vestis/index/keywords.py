"""Keyword search over a snapshot's term table: FTS5's ``bm25()``, computed with numpy.

FTS5 answers ``MATCH`` quickly, but ranks by calling ``bm25()`` once per matching row,
and a catalog's common words (a gender, a category, a colour: every item's metadata
is in its ``body``) match thousands of rows: 15 ms per query at 40k items, almost all
of it scoring. :class:`TermTable` keeps, per snapshot position, the tokens FTS5 made
of ``title`` and ``body`` (the same tokenizer, run by SQLite on an in-memory FTS5
table, so a term here is a term there) as postings sorted by term, and scores a
query with the same formula as FTS5::

    score = sum over the query's phrases p of
            idf(p) * f(p) * (k1 + 1) / (f(p) + k1 * (1 - b + b * |D| / avgdl))

with ``f(p)`` the column-weighted count of ``p`` in the item, ``|D|`` its tokens in
all columns, ``avgdl`` their mean and ``idf(p) = log((N - n(p) + 0.5) / (n(p) + 0.5))``
(1e-6 when not positive), ``k1 = 1.2``, ``b = 0.75``; N and n(p) over the live
items. A filter is the allowed-position mask the vector search takes. A query word
that FTS5 splits into several tokens (a phrase) is answered by FTS5 itself
(:class:`Unsupported`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOKENIZE = "porter unicode61 remove_diacritics 2"
K1, B = 1.2, 0.75


class Unsupported(Exception):
    """A query FTS5 must answer itself."""


class Tokenizer:
    """FTS5's tokenizer, run by SQLite on an in-memory table (no reimplementation to drift)."""

    def __init__(self) -> None:
        self._con = sqlite3.connect(":memory:", check_same_thread=False)
        self._con.execute(f"CREATE VIRTUAL TABLE t USING fts5(title, body, tokenize='{TOKENIZE}')")
        self._con.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        self._words: dict[str, list[str]] = {}

    def documents(self, docs: Sequence[tuple[str, str]]) -> list[tuple[int, int, str, int]]:
        """``(document index, column, term, count)`` for the tokens of ``docs`` (title, body)."""
        con = self._con
        con.execute("BEGIN")
        try:
            con.executemany("INSERT INTO t(rowid, title, body) VALUES (?, ?, ?)", [(i, a, b) for i, (a, b) in
                                                                                  enumerate(docs)])  # fmt: skip
            got = con.execute(
                "SELECT doc, col = 'body', term, count(*) FROM v GROUP BY term, doc, col ORDER BY term, doc"
            ).fetchall()
        finally:
            con.execute("ROLLBACK")
        return got

    def word(self, word: str) -> list[str]:
        """The tokens FTS5 makes of one query word (a phrase when more than one)."""
        if word not in self._words:
            con = self._con
            con.execute("BEGIN")
            try:
                con.execute("INSERT INTO t(rowid, title, body) VALUES (1, ?, '')", (word,))
                self._words[word] = [r[0] for r in con.execute("SELECT term FROM v ORDER BY offset")]
            finally:
                con.execute("ROLLBACK")
        return self._words[word]


@dataclass
class TermTable:
    """Postings of a snapshot: for each term (``vocab`` sorted), the positions holding it and how often."""

    vocab: list[str]
    starts: np.ndarray  # int64 (len(vocab) + 1,): postings of term t are [starts[t], starts[t + 1])
    positions: np.ndarray  # int32, ascending within a term
    freq: np.ndarray  # uint16 (2, m): count in title, in body
    lengths: np.ndarray  # int32 (n,): tokens of each position, all columns

    @classmethod
    def build(cls, docs: Sequence[tuple[str, str]], tokenizer: Tokenizer, start: int = 0) -> TermTable:
        """The table of ``docs`` (title, body), their positions counted from ``start``."""
        terms: list[str] = []
        parts = []
        for s in range(0, len(docs), 20_000):
            got = tokenizer.documents(docs[s : s + 20_000])
            terms += [g[2] for g in got]
            parts.append(np.array([(s + g[0], g[1], g[3]) for g in got], np.int64).reshape(-1, 3))
        coo = np.concatenate(parts) if parts else np.empty((0, 3), np.int64)
        vocab = sorted(set(terms))
        index = {t: i for i, t in enumerate(vocab)}
        term_ids = np.fromiter((index[t] for t in terms), np.int64, len(terms))
        lengths = np.bincount(coo[:, 0], weights=coo[:, 2], minlength=len(docs)).astype(np.int32)
        if not len(coo):  # no tokens at all
            return cls([], np.zeros(1, np.int64), np.empty(0, np.int32), np.zeros((2, 0), np.uint16), lengths)
        order = np.lexsort((coo[:, 1], coo[:, 0], term_ids))
        term_ids, coo = term_ids[order], coo[order]
        keys = term_ids * (len(docs) + 1) + coo[:, 0]  # one posting per (term, position), title and body counts
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        freq = np.zeros((2, len(first)), np.uint16)
        slot = np.cumsum(np.r_[False, keys[1:] != keys[:-1]])
        np.add.at(freq, (coo[:, 1], slot), coo[:, 2])
        starts = np.searchsorted(term_ids[first], np.arange(len(vocab) + 1)).astype(np.int64)
        return cls(vocab, starts, (coo[first, 0] + start).astype(np.int32), freq, lengths)

    def extend(self, other: TermTable) -> TermTable:
        """This table followed by ``other`` (whose positions come after this one's)."""
        vocab = sorted(set(self.vocab) | set(other.vocab))
        index = {t: i for i, t in enumerate(vocab)}
        ids = [np.repeat(np.array([index[t] for t in tab.vocab], np.int64), np.diff(tab.starts))
               for tab in (self, other)]  # fmt: skip
        term_ids = np.concatenate(ids)
        order = np.argsort(term_ids, kind="stable")  # positions stay ascending within a term
        term_ids = term_ids[order]
        return TermTable(
            vocab,
            np.searchsorted(term_ids, np.arange(len(vocab) + 1)).astype(np.int64),
            np.concatenate([self.positions, other.positions])[order],
            np.concatenate([self.freq, other.freq], axis=1)[:, order],
            np.concatenate([self.lengths, other.lengths]),
        )

    def search(
        self,
        phrases: Sequence[str],
        k: int,
        live: np.ndarray,
        allowed: np.ndarray | None = None,
        weights: tuple[float, float] = (2.0, 1.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of the ``k`` best live, allowed items matching any phrase (one token
        each), best first; the score is FTS5's bm25 with its sign turned (higher is better)."""
        n_rows = int(np.count_nonzero(live))
        if not n_rows or k <= 0:
            return np.empty(0, np.int64), np.empty(0)
        avgdl = float(self.lengths[live].sum()) / n_rows
        scores = np.zeros(len(self.lengths))
        hit = np.zeros(len(self.lengths), bool)
        for term in phrases:
            t = _find(self.vocab, term)
            if t is None:
                continue
            a, b = self.starts[t], self.starts[t + 1]
            pos = self.positions[a:b]
            alive = live[pos]
            n_hit = int(np.count_nonzero(alive))
            idf = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
            idf = idf if idf > 0 else 1e-6
            f = weights[0] * self.freq[0, a:b] + weights[1] * self.freq[1, a:b]
            # as fts5_aux.c writes it, so that equal items score equal to the last bit
            scores[pos] += idf * ((f * (K1 + 1.0)) / (f + K1 * (1 - B + B * self.lengths[pos] / avgdl)))
            hit[pos[alive]] = True
        keep = hit if allowed is None else hit & allowed
        cand = np.flatnonzero(keep)
        if len(cand) > k:
            cand = cand[np.argpartition(-scores[cand], k - 1)[:k]]
        order = np.lexsort((cand, -scores[cand]))  # best first, ties by position (row order)
        return cand[order], scores[cand[order]]

    # ------------------------------------------------------------------ on disk

    def save(self, directory: Path) -> None:
        np.savez(directory / "terms.npz", starts=self.starts, positions=self.positions, freq=self.freq,
                 lengths=self.lengths)  # fmt: skip
        (directory / "terms.json").write_text(json.dumps(self.vocab, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> TermTable | None:
        try:
            vocab = json.loads((directory / "terms.json").read_text())
            with np.load(directory / "terms.npz") as a:
                table = cls(vocab, a["starts"], a["positions"], a["freq"], a["lengths"])
        except (OSError, ValueError, KeyError):
            return None
        return table if len(table.starts) == len(vocab) + 1 else None


def _find(vocab: list[str], term: str) -> int | None:
    import bisect

    i = bisect.bisect_left(vocab, term)
    return i if i < len(vocab) and vocab[i] == term else None
