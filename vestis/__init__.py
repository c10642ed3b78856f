"""vestis: fashion images and text in one embedding space.

The whole user API is here (the CLI and the HTTP service call the same functions)::

    import vestis

    enc = vestis.load_encoder()                                   # vestis-mini, bundled
    report = vestis.build_index("catalog.parquet", "my-index")    # embed a catalog (resumable)
    with vestis.Catalog.open("my-index") as catalog:
        hits = catalog.search("red summer dress", k=5, where="season = 'Summer'")
        like = catalog.similar(hits.hits[0].id, steer=["darker"])
    tags = vestis.tag_catalog("catalog.parquet", "articleType,baseColour", "tags.parquet")
    labels = vestis.classify(["photo.jpg"], "kagl")
    scores = vestis.evaluate_zero_shot(enc, images, true_labels)

Models: :func:`load_encoder`, :class:`Encoder`, :func:`default_model`.
Catalogs: :func:`build_index` (a :class:`BuildReport`; ``engine="ray"``, with :class:`RayOptions`,
embeds on a Ray cluster), :class:`Catalog` (``open``, ``search``, ``similar``, ``recommend`` with
:class:`RocchioWeights`; results are :class:`SearchResults` of :class:`Hit`; ``explain`` gives an
:class:`Explanation`).
Zero-shot labels: :func:`tag_catalog` (a :class:`TagReport`), :func:`classify` (a
:class:`Classification`), :func:`parse_labels` and :class:`Taxonomy`.
Evaluation: :func:`evaluate_zero_shot` (a :class:`ZeroShotResult`) and
:func:`evaluate_retrieval` (a :class:`RetrievalResult`).
A catalog as a static site that searches itself in the browser: :func:`export_site` (a :class:`SiteReport`).
Results have ``to_dict()`` and ``to_pandas()`` (pandas installed).  Errors a user
can cause are :class:`VestisError` subclasses with a message that says what to fix.

Names are imported when first used, so ``import vestis`` stays fast (the CLI's start-up).

>>> import vestis
>>> enc = vestis.load_encoder("vestis-tiny-random")
>>> enc.encode_texts(["red summer dress"]).shape
(1, 32)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vestis.errors import ImageError, InputError, ModelFormatError, ModelNotFoundError, VestisError
from vestis.models import Encoder, default_model, load_encoder


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vestis")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0+local"


#: name -> module it lives in (imported on first access).
_LAZY = {
    "Catalog": "vestis.search",
    "SearchResults": "vestis.search",
    "Hit": "vestis.search",
    "RocchioWeights": "vestis.recommend",
    "Explanation": "vestis.explain",
    "build_index": "vestis.index.build",
    "BuildReport": "vestis.index.steps",
    "RayOptions": "vestis.index.distributed",
    "tag_catalog": "vestis.tag",
    "TagReport": "vestis.tag",
    "classify": "vestis.classify",  # the module, callable: vestis.classify(images, labels)
    "Classification": "vestis.tag",
    "parse_labels": "vestis.tag",
    "Taxonomy": "vestis.tag",
    "evaluate_zero_shot": "vestis.eval.classification",
    "ZeroShotResult": "vestis.eval.results",
    "evaluate_retrieval": "vestis.eval.retrieval",
    "export_site": "vestis.site",
    "SiteReport": "vestis.site",
    "RetrievalResult": "vestis.eval.results",
}

__all__ = [
    "Encoder",
    "ImageError",
    "InputError",
    "ModelFormatError",
    "ModelNotFoundError",
    "VestisError",
    "__version__",
    "default_model",
    "load_encoder",
    "Catalog",
    "SearchResults",
    "Hit",
    "RocchioWeights",
    "Explanation",
    "build_index",
    "BuildReport",
    "RayOptions",
    "tag_catalog",
    "TagReport",
    "classify",
    "Classification",
    "parse_labels",
    "Taxonomy",
    "evaluate_zero_shot",
    "ZeroShotResult",
    "evaluate_retrieval",
    "RetrievalResult",
    "export_site",
    "SiteReport",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vestis' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"vestis.{name}" else getattr(imported, name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from vestis.eval.classification import evaluate_zero_shot
    from vestis.eval.results import RetrievalResult, ZeroShotResult
    from vestis.eval.retrieval import evaluate_retrieval
    from vestis.explain import Explanation
    from vestis.index.build import build_index
    from vestis.index.distributed import RayOptions
    from vestis.index.steps import BuildReport
    from vestis.recommend import RocchioWeights
    from vestis.search import Catalog, Hit, SearchResults
    from vestis.tag import Classification, TagReport, Taxonomy, classify, parse_labels, tag_catalog  # noqa: F811
