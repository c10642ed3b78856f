"""Loading transformers models without their console noise."""

from __future__ import annotations

from typing import Any


def quiet_from_pretrained(cls: Any, path: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path, local_files_only=True)`` without transformers' "Loading weights" bar.

    The bar is switched back on afterwards if it was on, so callers' settings are kept.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(path, local_files_only=True, **kwargs)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
