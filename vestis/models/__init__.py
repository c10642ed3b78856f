"""Encoders: one interface over transformers, open_clip and ONNX checkpoints."""

from vestis.models.base import Encoder, l2_normalize
from vestis.models.loading import detect_format, load_encoder
from vestis.models.registry import REGISTRY, ModelSpec, default_model

__all__ = ["REGISTRY", "Encoder", "ModelSpec", "default_model", "detect_format", "l2_normalize", "load_encoder"]
