"""Request and response models of the HTTP API (pydantic; they are also the OpenAPI spec).

The embeddings models follow OpenAI's ``POST /v1/embeddings`` exactly, plus image
inputs (data URLs, or ``{"type": "image_url", "image_url": {"url": ...}}`` items).
vestis' own endpoints forbid unknown fields, so a misspelt option is an error rather
than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from vestis.data.catalog import INT64_MAX, INT64_MIN, MAX_ID_LENGTH, normalize_id
from vestis.errors import InputError
from vestis.models.text import text_problem


def _checked_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _checked_id(value: int | str) -> int | str:
    try:
        return normalize_id(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


#: Text the tokenizer can read: no lone surrogates, no NUL or other control characters (400 naming it).
Text = Annotated[str, AfterValidator(_checked_text)]
#: An id: text, or an integer within int64 (booleans, floats, lists and objects are refused).
ItemId = Annotated[
    Annotated[int, Field(strict=True, ge=INT64_MIN, le=INT64_MAX)]
    | Annotated[str, Field(strict=True, min_length=1, max_length=MAX_ID_LENGTH)],
    AfterValidator(_checked_id),
]
Scalar = Text | int | float | bool | None
#: A string with something in it besides spaces (a text to embed, or an image data URL).
#: (The schema says so; the route checks it, with a message naming the item.)
NonBlank = Annotated[str, Field(json_schema_extra={"pattern": r"\S"})]


class _Strict(BaseModel):
    # JSON has no NaN or infinities: Python's parser accepts them, the API does not
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ------------------------------------------------------------------------- errors


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, as OpenAI shapes them."""

    error: ErrorBody


# --------------------------------------------------------------------- embeddings


class ImageURL(BaseModel):
    url: str = Field(description="A data URL: data:image/jpeg;base64,... (remote URLs are not fetched).")
    detail: str | None = None


class ImageInputItem(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL | str


class TextInputItem(BaseModel):
    type: Literal["text"]
    text: NonBlank


InputItem = Annotated[ImageInputItem | TextInputItem, Field(discriminator="type")]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Strings that are ``data:image/...;base64,`` URLs are images."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    input: NonBlank | Annotated[list[NonBlank | InputItem], Field(min_length=1)] = Field(
        description="A string, or a list of strings, image data URLs and image_url/text items."
    )
    model: str | None = Field(None, description="The served model's name (GET /v1/models).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None,
        ge=1,
        strict=True,
        description="Keep the first N dimensions and re-normalise (vestis models are not Matryoshka-trained).",
    )
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_arrays(cls, value):
        if isinstance(value, int) or (isinstance(value, list) and any(isinstance(x, (int, list)) for x in value)):
            raise ValueError("token arrays are not supported: send strings (the server tokenises)")
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    images: int = Field(0, description="vestis extension: image inputs (they are not tokenised).")


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vestis"
    dim: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# ------------------------------------------------------------------------- search


class SearchRequest(_Strict):
    """A text query, a photo, an item id, or several of them (their vectors are summed)."""

    catalog: str | None = Field(None, description="Catalog name (default: the first served).")
    query: Text | None = Field(
        None, max_length=2000, description="Text; 'a, -b, c:0.5' weights terms (negative with '-')."
    )
    image: str | None = Field(None, description="A photo as a data URL or base64 (multipart: a file field).")
    item_id: ItemId | None = Field(None, description="Search by this item ('more like this' when alone).")
    k: int = Field(10, ge=1, le=200)
    offset: int = Field(0, ge=0, le=10_000)
    where: Text | None = Field(None, max_length=4096, description="Filter, e.g. baseColour = 'Red' AND season IN (...)")
    filters: dict[Text, list[Text | int | float]] | None = Field(
        None, description="Facet selections {field: [values]}: values of one field OR-ed, fields AND-ed."
    )
    hybrid: float = Field(0.0, ge=0.0, le=1.0, description="Keyword (BM25) weight in rank fusion; 0 = vector only.")
    steer: list[Text] = Field(default_factory=list, max_length=8, description="darker, more formal, ... or 'a->b'.")
    steer_strength: float | None = Field(
        None, ge=-5.0, le=5.0, description="How far to steer (default: 0.5 for texts, 1.0 for photos and items)."
    )
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="Leave out results whose cosine is lower.")
    exclude: list[ItemId] = Field(default_factory=list, max_length=1000)
    exact: bool = False
    include_thumbnails: bool = Field(False, description="Inline each result's thumbnail as a data URL.")
    facets: bool | list[Text] = Field(
        False, description="Count field values over the best facet_depth results (true: the filter fields)."
    )
    facet_depth: int = Field(200, ge=1, le=1000)
    facet_limit: int = Field(12, ge=1, le=500, description="Most values listed per facet.")
    boost: dict[Text, Annotated[float, Field(ge=-10.0, le=10.0)]] | None = Field(
        None,
        max_length=8,
        description="Score modifiers {field: weight}: adds weight x the field's value scaled 0..1 over the catalog "
        "to the cosine (missing or NaN values add 0); not with hybrid.",
    )


class RecommendRequest(SearchRequest):
    """Feedback: items like ``like`` and unlike ``dislike`` (Rocchio), optionally for a query or photo,
    with every search option. The liked and disliked items are never among the results."""

    like: list[ItemId] = Field(default_factory=list, max_length=100, description="Item ids to move towards.")
    dislike: list[ItemId] = Field(default_factory=list, max_length=100, description="Item ids to move away from.")
    # a plain mapping, not a nested model: the request schema is inlined in the spec, where $defs cannot resolve
    weights: dict[Literal["query", "like", "dislike"], Annotated[float, Field(ge=0.0, le=10.0)]] = Field(
        default_factory=dict,
        description="Rocchio weights of the query, the liked items' mean and the disliked items' mean "
        "(defaults 1, 0.75, 0.25).",
    )


class SearchHit(BaseModel):
    rank: int
    id: str | int
    score: float = Field(description="What orders the results: the cosine, or with hybrid the rank-fusion value.")
    cosine: float | None = Field(None, description="Cosine similarity to the query.")
    metadata: dict
    thumbnail_url: str | None = None
    thumbnail: str | None = None


class SearchResponse(BaseModel):
    object: Literal["search.results"] = "search.results"
    catalog: str
    model: str
    results: list[SearchHit]
    query: dict
    took_ms: float
    facets: list[Facet] | None = Field(None, description="Value counts over the best results, when asked for.")


# ------------------------------------------------------------------------ explain


class ExplainRequest(_Strict):
    """Why an item matches a text query: a heat map over its photo and each word's contribution."""

    catalog: str | None = Field(None, description="Catalog name (default: the first served).")
    item_id: ItemId = Field(description="The item whose match to explain.")
    query: Text = Field(min_length=1, max_length=500, description="The text query (embedded as one text).")
    method: Literal["auto", "occlusion", "gradient"] = Field(
        "auto", description="auto: the gradient map for torch models, else occlusion (both returned when computed)."
    )
    grid: int = Field(8, ge=2, le=16, description="Cells per side of the map.")
    include_overlay: bool = Field(True, description="Return the photo with the heat map over it as a PNG data URL.")


class WordScore(BaseModel):
    word: str
    contribution: float = Field(description="The query's cosine minus the cosine without this word.")


class Region(BaseModel):
    row: int
    col: int
    value: float
    box: list[int] = Field(description="x0, y0, x1, y1 in the model's input pixels.")


class ExplainResponse(BaseModel):
    object: Literal["explanation"] = "explanation"
    catalog: str
    model: str
    item_id: str | int
    query: str
    method: Literal["occlusion", "gradient"] = Field(description="The method of ``cells``.")
    score: float = Field(description="Cosine of the query to the item's indexed vector (what search ranks by).")
    image_score: float = Field(description="Cosine of the query to the photo alone (what the map explains).")
    grid: int
    cells: list[list[float]] = Field(description="grid x grid: how much each cell raises the photo's score.")
    occlusion: list[list[float]] | None = None
    gradient: list[list[float]] | None = Field(None, description="Gradient x input per cell (torch models).")
    regions: list[Region] = Field(description="The cells that raise the score most.")
    words: list[WordScore]
    overlay: str | None = Field(None, description="PNG data URL: the photo with the heat map over it.")
    took_ms: float


# ----------------------------------------------------------------------- classify


class ClassifyRequest(_Strict):
    """Zero-shot labels for one or more photos: built-in taxonomies and/or your own labels."""

    image: str | None = Field(None, description="A photo as a data URL or base64.")
    images: list[str] | None = Field(None, max_length=32)
    taxonomies: list[Text] | None = Field(
        None, max_length=32, description="Built-in taxonomies (GET /v1/taxonomies); 'kagl' means all of them."
    )
    labels: list[Text] | Text | None = Field(None, description="Your labels: a list, or a comma-separated string.")
    templates: list[Text] | None = Field(None, max_length=16, description="Prompt templates with {} (ensembled).")
    k: int = Field(3, ge=1, le=50)


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyResult(BaseModel):
    index: int
    labels: dict[str, list[LabelScore]]


class ClassifyResponse(BaseModel):
    object: Literal["classification"] = "classification"
    model: str
    results: list[ClassifyResult]


# -------------------------------------------------------------------------- items


class ItemIn(_Strict):
    id: ItemId = Field(description="The product id (the catalog key): text, or an integer within int64.")
    image: str | None = Field(None, description="Product photo as a data URL or base64; omitted: indexed by title.")
    metadata: dict[Text, Scalar] = Field(
        default_factory=dict, description="Catalog columns (title: productDisplayName/title/name)."
    )


class ItemBody(_Strict):
    """One item for PUT /v1/catalogs/{name}/items/{id} (the id comes from the path)."""

    image: str | None = None
    metadata: dict[Text, Scalar] = Field(default_factory=dict)


class ItemsRequest(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=256)


class DeleteRequest(_Strict):
    ids: list[ItemId] = Field(min_length=1, max_length=10_000)


class WriteReport(BaseModel):
    object: Literal["catalog.write"] = "catalog.write"
    catalog: str
    mode: str
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    deleted: list[str] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)
    skipped_existing: list[str] = Field(default_factory=list)
    skipped_missing: list[str] = Field(default_factory=list)
    unreadable_images: list[dict] = Field(default_factory=list)
    not_indexed: list[dict] = Field(default_factory=list)
    total_items: int


class ItemOut(BaseModel):
    id: str | int
    title: str
    metadata: dict
    image_error: str | None = None
    thumbnail_url: str | None = None


class CatalogInfo(BaseModel):
    name: str
    model: str
    dim: int
    items: int
    fields: list[str]
    generation: int
    last_build: dict[str, Any] | None = Field(
        None, description="The report of the last build, add or update written to this catalog (None before any)."
    )


class CatalogList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CatalogInfo]


class FacetValue(BaseModel):
    value: str | int | float
    count: int


class Facet(BaseModel):
    field: str
    values: list[FacetValue]
    distinct: int
    truncated: bool


class FacetsResponse(BaseModel):
    catalog: str
    facets: list[Facet]


class Taxonomy(BaseModel):
    name: str
    labels: list[str]
    templates: list[str]


class TaxonomyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Taxonomy]


SearchResponse.model_rebuild()
