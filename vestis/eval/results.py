"""Typed results of the evaluations: headline figures as attributes, ``to_dict()``, ``to_pandas()``.

Each result is also a read-only mapping of the flat record the JSON files and
``--json`` carry (``result["weighted_f1"]``), so code written against those keys
keeps working; :meth:`EvalResult.update` adds context (model, data) to the record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def _frame(rows: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return pd.DataFrame(rows)


class EvalResult(Mapping[str, Any]):
    """The record of one evaluation (a flat dict of JSON-able values) behind typed accessors."""

    def __init__(self, record: dict[str, Any]) -> None:
        self._record = dict(record)

    def __getitem__(self, key: str) -> Any:
        return self._record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record)

    def __len__(self) -> int:
        return len(self._record)

    def __setitem__(self, key: str, value: Any) -> None:
        self._record[key] = value

    def update(self, **context: Any) -> None:
        """Add context to the record (``model=``, ``data=``, ...)."""
        self._record.update(context)

    def to_dict(self) -> dict[str, Any]:
        """The flat record, as ``--json`` prints it and the suite writes it."""
        return dict(self._record)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._record.items() if isinstance(v, (int, float, str))}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in list(shown.items())[:6])}, ...)"


class ZeroShotResult(EvalResult):
    """:func:`vestis.evaluate_zero_shot`: FashionCLIP's protocol (weighted macro F1 over the labels)."""

    @property
    def weighted_f1(self) -> float:
        return self._record["weighted_f1"]

    @property
    def accuracy(self) -> float:
        return self._record["accuracy"]

    @property
    def macro_f1(self) -> float:
        return self._record["macro_f1"]

    @property
    def n(self) -> int:
        return self._record["n"]

    @property
    def labels(self) -> list[str]:
        return self._record["labels"]

    @property
    def per_class(self) -> dict[str, dict[str, float]]:
        return self._record["per_class"]

    @property
    def confusion(self) -> list[list[int]]:
        return self._record["confusion"]

    def to_pandas(self):
        """One row per label: precision, recall, F1, support (needs pandas)."""
        return _frame([{"label": label, **scores} for label, scores in self.per_class.items()])


class RetrievalResult(EvalResult):
    """:func:`vestis.evaluate_retrieval`: Marqo's protocol (recall, precision, MRR, nDCG, mAP at k)."""

    def at(self, metric: str, k: int) -> float:
        """``at("recall", 10)`` is ``result["recall@10"]``."""
        return self._record[f"{metric}@{k}"]

    @property
    def metrics(self) -> dict[str, float]:
        """The ranking figures (``recall@1``, ``mrr@10``, ...)."""
        return {k: v for k, v in self._record.items() if "@" in k and isinstance(v, float)}

    @property
    def n_queries(self) -> int:
        return self._record["n_queries"]

    @property
    def n_docs(self) -> int:
        return self._record["n_docs"]

    def to_pandas(self):
        """One row per metric and k: ``metric``, ``k``, ``value`` (needs pandas)."""
        rows = []
        for key, value in self.metrics.items():
            name, k = key.split("@", 1)
            rows.append({"metric": name, "k": int(k), "value": value})
        return _frame(rows)
