"""Tokenizers: one tokenisation per text, batches padded to their own longest item, thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vestis
from vestis.models.text import CLIP_CONTEXT_LENGTH, TextTokenizer, clip_tokenizer_from_bpe, open_clip_clean
from vestis.models.vestis_mini import sentence_tokenizer


@pytest.fixture(params=["clip-bpe", "minilm-wordpiece"])
def tokenizer(request) -> TextTokenizer:
    if request.param == "clip-bpe":
        return TextTokenizer(clip_tokenizer_from_bpe(), CLIP_CONTEXT_LENGTH, clean=open_clip_clean)
    return sentence_tokenizer(32)


def test_batches_equal_tokenising_each_batch(tokenizer, all_titles):
    texts = all_titles[:50] + ["", "a", "word " * 200]  # empty, short, and one past the context length
    seen = []
    for idx, ids, mask in tokenizer.batches(texts, 8):
        ref_ids, ref_mask = tokenizer([texts[i] for i in idx])
        assert np.array_equal(ids, ref_ids) and np.array_equal(mask, ref_mask)
        assert ids.shape[1] <= tokenizer.context_length
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(texts)))
    lengths = [int(m.sum()) for _, _, mask in tokenizer.batches(texts, 8) for m in mask]
    assert lengths == sorted(lengths)  # sorted, so each batch pads little


def test_encode_texts_is_the_same_in_any_batching(all_titles):
    enc = vestis.load_encoder("vestis-tiny-random")
    texts = all_titles[:40]
    together = enc.encode_texts(texts, batch_size=7)
    alone = np.stack([enc.encode_texts([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_a_shared_tokenizer_is_thread_safe(tokenizer, all_titles):
    # padded and unpadded calls change the fast tokenizer's settings: concurrent ones collide
    texts = all_titles[:64]
    expected, expected_lengths = tokenizer(texts), tokenizer.lengths(texts)

    def work(i):
        if i % 2:
            return [tokenizer(texts) for _ in range(30)]
        return [tokenizer.lengths(texts) for _ in range(30)]

    with ThreadPoolExecutor(8) as pool:
        for i, results in enumerate(pool.map(work, range(8))):
            for got in results:
                if i % 2:
                    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
                else:
                    assert got == expected_lengths
