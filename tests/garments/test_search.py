"""search_garments: the photo's garments as catalog queries, one result list per garment."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from PIL import Image

from vestis.data import demo_catalog_path, demo_street_photo_path
from vestis.errors import InputError
from vestis.garments import find_garments
from vestis.garments.search import search_garments
from vestis.index.build import build_index
from vestis.models import load_encoder
from vestis.search import Catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("garment-search")
    pq.write_table(pq.read_table(demo_catalog_path()).slice(0, 60), folder / "catalog.parquet")
    encoder = load_encoder("vestis-tiny-random")
    build_index(folder / "catalog.parquet", folder / "index", encoder=encoder, quiet=True)
    with Catalog.open(folder / "index", encoder=encoder) as cat:
        yield cat


def ids(results) -> list:
    return [h.id for h in results.hits]


def test_all_searches_with_each_garment_found(catalog):
    photo = Image.open(demo_street_photo_path()).convert("RGB")
    garments = find_garments(photo)
    out = search_garments(catalog, photo, "all", k=5)
    assert [r.garment for r in out] == garments and len(out) >= 2
    for r in out:
        assert r.results.query["garment"]["box"] == list(r.garment.box)
        assert ids(r.results) == ids(catalog.search(image=photo.crop(r.garment.box), k=5))
        assert r.to_dict()["garment"]["group"] == r.garment.group
    main = search_garments(catalog, photo, "main", k=5)
    assert len(main) == 1 and main[0].garment.group == "dress"


def test_none_and_catalog_photos_search_the_whole_photo(catalog):
    photo = Image.open(demo_street_photo_path()).convert("RGB")
    whole = search_garments(catalog, photo, "none", k=5)
    assert len(whole) == 1 and whole[0].garment is None and whole[0].results.query["garment"] is None
    assert ids(whole[0].results) == ids(catalog.search(image=photo, k=5))
    product = pq.read_table(demo_catalog_path(), columns=["image"]).column(0)[0].as_py()
    out = search_garments(catalog, product, "all", k=5)
    assert len(out) == 1 and out[0].garment is None
    assert ids(out[0].results) == ids(catalog.search(image=product, k=5))


def test_an_unknown_garment_is_refused_before_any_work(catalog):
    with pytest.raises(InputError, match="unknown garment 'cape'"):
        search_garments(catalog, demo_street_photo_path(), "cape")
