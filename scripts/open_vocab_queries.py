"""Open-vocabulary queries against held-out KAGL products: what comes back, for the model card.

There is no ground truth for these queries; the script prints, for each, the
labels of the top 5 validation-split products so a reader can judge them.

    python scripts/open_vocab_queries.py [--model vestis-mini] > table.md
"""

from __future__ import annotations

import argparse

import numpy as np

from vestis.data import kagl_parquets
from vestis.data.catalog import read_catalog
from vestis.data.split import select_split
from vestis.embed import EmbeddingCache, cached_image_embeddings
from vestis.models import load_encoder

QUERIES = (
    "something for a beach wedding",
    "office wear for women",
    "running gear",
    "keep my feet warm in winter",
    "shoes for a party",
    "a gift for someone who loves watches",
    "traditional Indian outfit for a festival",
    "something to carry my laptop",
    "protect my eyes from the sun",
    "cosy knitwear",
    "a smart outfit for a job interview",
    "lipstick in a bold colour",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    files = kagl_parquets()
    if not files:
        raise SystemExit("needs ../shared/data/kagl")
    table = select_split(read_catalog(files[0].parent), "val")
    rows = table.select(["articleType", "baseColour", "usage"]).to_pylist()
    enc = load_encoder(args.model)
    embedded = cached_image_embeddings(enc, table.column("image").to_pylist(), EmbeddingCache(), quiet=True)
    queries = enc.encode_texts(list(QUERIES))
    print(f"| query ({enc.name}, {table.num_rows} held-out KAGL products) | top 5: article type / colour / usage |")
    print("|---|---|")
    for q, v in zip(QUERIES, queries):
        top = np.argsort(-(embedded.vectors @ v))[:5]
        hits = "; ".join(f"{rows[i]['articleType']} / {rows[i]['baseColour']} / {rows[i]['usage']}" for i in top)
        print(f"| {q} | {hits} |")


if __name__ == "__main__":
    main()
