"""The official ``openai`` client, pointed at vestis with ``base_url``, works unchanged."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import openai
import pytest

from .conftest import KEY, data_url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-on-an-open-server", max_retries=0)


@pytest.fixture(scope="module")
def jeans_image(catalog_table) -> bytes:
    return next(r["image"] for r in catalog_table.to_pylist() if r["articleType"] == "Jeans")


def test_text_embeddings_equal_the_library(client, mini):
    texts = ["red summer dress", "black leather boots", "a navy blue t-shirt for casual wear"]
    resp = client.embeddings.create(model="vestis-mini", input=texts)  # the client asks for base64 and decodes it
    assert resp.object == "list" and resp.model == "vestis-mini"
    assert [d.index for d in resp.data] == [0, 1, 2] and all(d.object == "embedding" for d in resp.data)
    got = np.array([d.embedding for d in resp.data])
    assert got.shape == (3, mini.dim)
    np.testing.assert_allclose(got, mini.encode_texts(texts), atol=1e-5)
    assert resp.usage.prompt_tokens == sum(mini.tokenizer.lengths(texts)) == resp.usage.total_tokens > 0


def test_single_string_and_float_format(client, mini):
    resp = client.embeddings.create(model="vestis-mini", input="red summer dress", encoding_format="float")
    assert len(resp.data) == 1
    np.testing.assert_allclose(resp.data[0].embedding, mini.encode_texts(["red summer dress"])[0], atol=1e-5)
    # asked for explicitly, base64 comes back as OpenAI sends it: little-endian float32, base64-encoded
    b64 = client.embeddings.create(model="vestis-mini", input="red summer dress", encoding_format="base64")
    raw = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype="<f4")
    np.testing.assert_allclose(raw, resp.data[0].embedding, atol=1e-7)


def test_images_as_data_urls_and_image_url_items(client, mini, jeans_image):
    url = data_url(jeans_image)
    resp = client.embeddings.create(
        model="vestis-mini",
        input=[url, {"type": "image_url", "image_url": {"url": url}}, "blue denim jeans", "a wrist watch"],
    )
    got = np.array([d.embedding for d in resp.data])
    want = mini.encode_images([jeans_image])[0]
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    np.testing.assert_allclose(got[1], want, atol=1e-5)
    assert got[0] @ got[2] > got[0] @ got[3]  # the photo of jeans is nearer "jeans" than "watch"
    assert resp.usage.prompt_tokens == sum(mini.tokenizer.lengths(["blue denim jeans", "a wrist watch"]))


def test_dimensions_truncates_and_renormalises(client, mini):
    resp = client.embeddings.create(model="vestis-mini", input=["linen shirt"], dimensions=64)
    v = np.array(resp.data[0].embedding)
    full = mini.encode_texts(["linen shirt"])[0][:64]
    assert v.shape == (64,) and abs(np.linalg.norm(v) - 1) < 1e-5
    np.testing.assert_allclose(v, full / np.linalg.norm(full), atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="vestis-mini", input="x shirt", dimensions=mini.dim + 1)


def test_models_and_errors(client):
    assert [m.id for m in client.models.list().data] == ["vestis-mini"]
    assert client.models.retrieve("vestis-mini").id == "vestis-mini"
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="text-embedding-3-small", input="dress")
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="vestis-mini", input=[[101, 2023, 102]])  # token arrays


def test_api_keys_with_the_client(keyed_server):
    good = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEY, max_retries=0)
    assert len(good.embeddings.create(model="vestis-mini", input="dress").data[0].embedding) == 256
    bad = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key="wrong-key-0000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.embeddings.create(model="vestis-mini", input="dress")
    assert err.value.code == "invalid_api_key"


def test_async_client_concurrent_requests(server, mini):
    async def main():
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        texts = [f"{c} cotton t-shirt" for c in ("red", "blue", "green", "black", "white", "grey", "pink", "navy")]
        resps = await asyncio.gather(*(client.embeddings.create(model="vestis-mini", input=t) for t in texts))
        await client.close()
        return texts, np.array([r.data[0].embedding for r in resps])

    texts, got = asyncio.run(main())
    np.testing.assert_allclose(got, mini.encode_texts(texts), atol=1e-5)
