"""Encoders: one interface over transformers, open_clip and ONNX checkpoints."""

from vestis.models.base import Encoder, l2_normalize
from vestis.models.loading import detect_format, load_encoder
from vestis.models.registry import DEFAULT_MODEL, REGISTRY, ModelSpec

__all__ = ["DEFAULT_MODEL", "REGISTRY", "Encoder", "ModelSpec", "detect_format", "l2_normalize", "load_encoder"]
