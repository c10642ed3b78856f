"""Linear probe vs zero-shot on KAGL: where does a model's classification gap come from?

Embeds KAGL's training split and validation split (the stable 10% hash split) with a
model, fits a multinomial logistic regression on the training split's image vectors
(scikit-learn, a test requirement; C = 1, no tuning), and scores it on the validation
split next to the model's zero-shot result on the same items and labels ("a photo of
a {}.").  A probe far above zero-shot means the image features separate the classes and
the loss is in the image-text alignment; a probe near zero-shot means the image tower
itself cannot tell them apart.  (CLIP's paper reports linear probes the same way.)

    python scripts/linear_probe.py --model vestis-mini --column articleType
    python scripts/linear_probe.py --model vestis-mini --column subCategory --out results/probe
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    import vestis
    from vestis.classify import DEFAULT_TEMPLATES, label_embeddings
    from vestis.data import shared_data_dir
    from vestis.embed import EmbeddingCache, cached_image_embeddings
    from vestis.eval.datasets import from_parquet
    from vestis.eval.metrics import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vestis-mini")
    ap.add_argument("--column", default="articleType")
    ap.add_argument("--data", default=None, help="KAGL parquet folder (default: the shared data folder's kagl)")
    ap.add_argument("--out", default="results/probe")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    data = args.data or str(shared_data_dir() / "kagl")
    enc = vestis.load_encoder(args.model)
    cache = EmbeddingCache()
    sets = {}
    for split in ("train", "val"):
        items = from_parquet(data, "image", args.column, split=split)
        keep = [i for i, lbl in enumerate(items.labels) if lbl]
        emb = cached_image_embeddings(enc, [items.images[i] for i in keep], cache, quiet=args.quiet)
        ok = emb.ok
        sets[split] = (emb.vectors[ok], [items.labels[i] for i, good in zip(keep, ok) if good])
    (xt, lt), (xv, lv) = sets["train"], sets["val"]
    labels = sorted(set(lt) & set(lv))  # classes the probe can learn and the split can test
    index = {lbl: k for k, lbl in enumerate(labels)}
    tr = [i for i, lbl in enumerate(lt) if lbl in index]
    va = [i for i, lbl in enumerate(lv) if lbl in index]
    yt = np.array([index[lt[i]] for i in tr])
    yv = np.array([index[lv[i]] for i in va])
    t0 = time.perf_counter()
    probe = LogisticRegression(C=1.0, max_iter=2000).fit(xt[tr], yt)
    fit_s = time.perf_counter() - t0
    probe_m = classification_metrics(yv, probe.predict(xv[va]), labels)
    zs_pred = np.argmax(xv[va] @ label_embeddings(enc, labels, DEFAULT_TEMPLATES[:1]).T, axis=1)
    zs_m = classification_metrics(yv, zs_pred, labels)
    result = {
        "model": args.model,
        "runtime": enc.runtime,
        "column": args.column,
        "labels": len(labels),
        "n_train": len(tr),
        "n_val": len(va),
        "probe": {"weighted_f1": probe_m["weighted_f1"], "accuracy": probe_m["accuracy"], "C": 1.0,
                  "fit_seconds": round(fit_s, 1)},
        "zero_shot": {"weighted_f1": zs_m["weighted_f1"], "accuracy": zs_m["accuracy"],
                      "template": DEFAULT_TEMPLATES[0]},
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{Path(args.model).name}__kagl-val-{args.column.lower()}.json"
    (out / name).write_text(json.dumps(result, indent=2))
    print("| model | column | labels | train | val | linear probe wF1 | zero-shot wF1 |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.column} | {len(labels)} | {len(tr)} | {len(va)} | "
          f"{probe_m['weighted_f1']:.3f} | {zs_m['weighted_f1']:.3f} |")  # fmt: skip
    print(f"written {out / name}")


if __name__ == "__main__":
    main()
