"""What the CPU can do, and how many threads decoding and inference get.

On a small machine the image decoder and the model share a handful of cores,
and neither may take the other's (oversubscription): torch's OpenMP threads
wait for each other at every operator, so one of them losing its core to a
decoder stalls them all.  vestis therefore:

* gives inference ``threads`` intra-op threads: the CPUs this process may use
  (``os.sched_getaffinity``) unless set;
* on onnxruntime (whose pool tolerates it, with spinning off for image
  graphs), decodes the next batch in ``decode_threads`` workers *while* the
  model runs the current one: one worker per four CPUs (1 to 4), one batch
  ahead, never more.  Decoding a 224-px batch costs under a tenth of a
  ViT-B's time, so one worker beside the inference threads hides it;
* on torch, decodes *between* batches with one worker per inference thread,
  so decoding and inference each have every core in turn and never overlap.

Both can be set per encoder (``load_encoder(threads=..., decode_threads=...)``)
or for the process with ``VESTIS_THREADS`` and ``VESTIS_DECODE_THREADS``;
``decode_threads=0`` decodes inline in the calling thread.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from vestis.errors import InputError

PRECISIONS = ("fp32", "bf16", "int8")


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity masks and containers' cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if n < 0:
        raise InputError(f"{name} must be >= 0, got {n}")
    return n


def default_threads() -> int:
    """Intra-op threads for inference: ``$VESTIS_THREADS`` or every CPU."""
    return _env_int("VESTIS_THREADS") or cpu_count()


def default_decode_threads() -> int:
    """Image-decoding workers: ``$VESTIS_DECODE_THREADS`` or one per four CPUs (1 to 4)."""
    env = _env_int("VESTIS_DECODE_THREADS")
    if env is not None:
        return env
    return min(4, max(1, cpu_count() // 4))


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """True where torch runs bfloat16 matrix products natively (AVX512-BF16 or AMX)."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older torch or no oneDNN: fall back on the flags
        flags = cpu_flags()
        return "avx512_bf16" in flags or "amx_bf16" in flags


def int8_fast() -> bool:
    """True where int8 products have a dedicated instruction (AVX512-VNNI, AVX-VNNI or AMX)."""
    flags = cpu_flags()
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def cpu_description() -> str:
    """One line: model name, CPU count and the vector extensions that matter here."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    have = [f for f in wanted if f in cpu_flags()]
    return f"{name or 'unknown CPU'}, {cpu_count()} CPUs, {' '.join(have) or 'no AVX2'}"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision
