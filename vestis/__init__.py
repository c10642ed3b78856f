"""vestis: fashion images and text in one embedding space.

>>> import vestis
>>> enc = vestis.load_encoder("vestis-tiny-random")
>>> enc.encode_texts(["red summer dress"]).shape
(1, 32)
"""

from importlib.metadata import PackageNotFoundError, version

from vestis.errors import ImageError, InputError, ModelFormatError, ModelNotFoundError, VestisError
from vestis.models import Encoder, default_model, load_encoder

try:
    __version__ = version("vestis")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

__all__ = [
    "Encoder",
    "ImageError",
    "InputError",
    "ModelFormatError",
    "ModelNotFoundError",
    "VestisError",
    "default_model",
    "__version__",
    "load_encoder",
]
