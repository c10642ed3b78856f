"""``embed_images``: several batches per encoder call, unreadable images skipped and named."""

from __future__ import annotations

import numpy as np

import vestis
from vestis.embed import CHUNK_BATCHES, embed_images


def test_chunks_match_the_encoder_and_skip_only_the_bad_images(sample_images, monkeypatch):
    enc = vestis.load_encoder("vestis-tiny-random")
    images = [sample_images[i % len(sample_images)] for i in range(4 * CHUNK_BATCHES + 3)]
    bad = {5, 4 * CHUNK_BATCHES + 1}
    for i in bad:
        images[i] = b"not an image"
    calls = []
    original = type(enc).encode_images
    monkeypatch.setattr(
        type(enc), "encode_images", lambda self, imgs, **kw: calls.append(len(imgs)) or original(self, imgs, **kw)
    )
    result = embed_images(enc, images, batch_size=4, quiet=True)
    assert [i for i, _ in result.failed] == sorted(bad)
    assert all("not a readable image" in reason for _, reason in result.failed)
    assert calls[0] == 4 * CHUNK_BATCHES  # several batches per call, so decoding can overlap inference
    good = [i for i in range(len(images)) if i not in bad]
    expected = original(enc, [images[i] for i in good], batch_size=4)
    np.testing.assert_allclose(result.vectors[good], expected, atol=1e-6)
    assert not result.vectors[sorted(bad)].any()
    assert result.ok.sum() == len(good)
