"""Export an encoder's towers to ONNX in the layout the ONNX backend reads, fp32 and int8.

``onnx/vision_model.onnx`` (``pixel_values`` -> ``image_embeds``) and
``onnx/text_model.onnx`` (``input_ids``, ``attention_mask`` -> ``text_embeds``),
with a dynamic batch and a dynamic sequence length, the tokenizer and
preprocessor config beside them, and ``vestis_onnx.json`` holding what the
graphs cannot (logit scale, context length, embedding size, which graph to
run for each precision, and the parity measured for each).  It is the layout
FashionCLIP's and Marqo-FashionCLIP's published ONNX files use.  (Chinese-CLIP's
own export fixes the batch at 1; these graphs take any batch.)

Two rewrites make the fp32 graphs faster without changing what they compute:
a ViT's patch embedding (a convolution whose stride equals its kernel) is
exported as a reshape and a matrix product, which int8 quantisation then
covers (onnxruntime's ``ConvInteger`` is slow), and attention is exported in
its eager form, which traces to shape-generic ONNX.

int8 (``int8=True``) writes ``*_quantized.onnx`` beside the fp32 graphs, with
the method that suits each tower:

* transformer towers (ViT, CLIP's text transformer, BERT): dynamic
  quantisation of every MatMul/Gemm (int8 weights, activations quantised per
  batch at run time, u8 x s8 products on AVX512-VNNI);
* convolutional towers (vestis-mini's image tower): static QDQ quantisation,
  activations calibrated on real catalog images.

For each tower the per-tensor variant is tried first (fastest), then the
per-channel one; :func:`verify_export` keeps the first that passes parity
with the torch fp32 model and leaves a tower in fp32 when none does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vestis.errors import InputError
from vestis.models.base import Encoder
from vestis.models.onnx_backend import META_FILE
from vestis.models.torch_backend import TorchEncoder, _features, image_features

OPSET = 17
INT8_SUFFIX = "_quantized"


class _ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_features(self.model, pixel_values)


class _TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, token_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.token_type_ids = token_type_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_type_ids else {}
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask, **extra))


class _MiniText(torch.nn.Module):
    """vestis-mini's text side: frozen sentence encoder, then the learned head."""

    def __init__(self, sentence: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.sentence = sentence
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.sentence(input_ids, attention_mask))


class PatchMatMul(torch.nn.Module):
    """A ViT patch embedding (Conv2d, stride == kernel, no padding) as reshape + matrix product.

    Same function as the convolution (to float rounding, ~1e-5); in ONNX it is a
    MatMul, which dynamic int8 quantisation covers and runs on VNNI.
    """

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.p = int(conv.kernel_size[0])
        self.out_channels = int(conv.out_channels)
        self.weight = torch.nn.Parameter(conv.weight.detach().reshape(conv.out_channels, -1).t().contiguous())
        self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())

    @staticmethod
    def applies(module: torch.nn.Module) -> bool:
        return (
            isinstance(module, torch.nn.Conv2d)
            and module.kernel_size[0] == module.kernel_size[1] == module.stride[0] == module.stride[1]
            and module.padding in ((0, 0), "valid")
            and module.groups == 1
            and module.dilation == (1, 1)
            and module.kernel_size[0] > 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.p
        gh, gw = h // p, w // p
        if h % p or w % p:  # a conv drops the remainder rows/columns too (no copy when there is none)
            x = x[:, :, : gh * p, : gw * p]
        patches = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        y = patches @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(1, 2).reshape(b, self.out_channels, gh, gw)


@contextlib.contextmanager
def _patch_embeddings_as_matmul(model: torch.nn.Module) -> Iterator[int]:
    """Swap every ViT patch-embedding convolution of ``model`` for :class:`PatchMatMul`, restore after."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    for name, module in list(model.named_modules()):
        if name.rsplit(".", 1)[-1] == "patch_embedding" and PatchMatMul.applies(module):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            attr = name.rsplit(".", 1)[-1]
            swapped.append((parent, attr, module))
            setattr(parent, attr, PatchMatMul(module))
    try:
        yield len(swapped)
    finally:
        for parent, attr, module in swapped:
            setattr(parent, attr, module)


def _towers(encoder: Encoder) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(image module, text module, module whose attention to switch to eager) of a torch encoder."""
    from vestis.models.vestis_mini import VestisMiniEncoder

    if encoder.precision != "fp32":
        raise InputError(
            f"export a model loaded in fp32, not {encoder.precision} (load_encoder(..., precision='fp32'))"
        )
    # The wrappers are put in eval mode: torch.onnx.export restores each module's mode after
    # tracing, and a wrapper left in training mode would switch the encoder's dropout on.
    if isinstance(encoder, TorchEncoder):
        image = _ImageTower(encoder.model).eval()
        return image, _TextTower(encoder.model, encoder._token_type_ids).eval(), encoder.model
    if isinstance(encoder, VestisMiniEncoder):
        text = _MiniText(encoder.text, encoder.model.text_head).eval()
        return encoder.model.image_tower.eval(), text, encoder.text.bert
    raise InputError(f"only torch encoders can be exported to ONNX, not {encoder.runtime}")


def export_onnx(
    encoder: Encoder,
    out_dir: str | Path,
    *,
    int8: bool = False,
    calibration_images: list[Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``encoder`` (a torch fp32 encoder) as two ONNX graphs under ``out_dir``.

    With ``int8``, also the per-tensor int8 variants (``*_quantized.onnx``) and,
    as candidates for :func:`verify_export`, the per-channel ones
    (``*_quantized_pc.onnx``).  ``calibration_images`` (real images) calibrate
    static quantisation of convolutional towers.
    """
    say = log or (lambda _msg: None)
    image_tower, text_tower, attn_owner = _towers(encoder)
    out = Path(out_dir)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    # The eager attention path traces into shape-generic ONNX; SDPA bakes in the trace's length.
    previous = getattr(attn_owner.config, "_attn_implementation", None)
    attn_owner.set_attn_implementation("eager")
    h, w = encoder.image_config.output_hw
    ids, mask = encoder.tokenizer(["a red summer dress", "shoes"])
    t0 = time.perf_counter()
    try:
        with torch.inference_mode(), warnings.catch_warnings(), _patch_embeddings_as_matmul(image_tower):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                image_tower,
                (torch.zeros(2, 3, h, w),),
                str(onnx_dir / "vision_model.onnx"),
                input_names=["pixel_values"],
                output_names=["image_embeds"],
                dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
            _export_text_graph(text_tower, ids, mask, onnx_dir / "text_model.onnx")
    finally:
        if previous:
            attn_owner.set_attn_implementation(previous)
    say(f"exported fp32 graphs in {time.perf_counter() - t0:.0f} s")
    encoder.tokenizer.tokenizer.save_pretrained(str(out))
    cfg = encoder.image_config
    if cfg.crop_rounding == "floor" and cfg.resize_mode != "longest":
        (out / "preprocessor_config.json").write_text(json.dumps(cfg.to_hf_dict(), indent=2))
    graphs: dict[str, dict[str, str]] = {"fp32": {"vision": "vision_model.onnx", "text": "text_model.onnx"}}
    methods: dict[str, Any] = {}
    if int8:
        t0 = time.perf_counter()
        pixels = None
        if calibration_images:
            from vestis.models.preprocess import preprocess_images

            pixels = preprocess_images(calibration_images, cfg)
        for tower, name in (("vision", "vision_model"), ("text", "text_model")):
            methods[tower] = quantize_tower(
                onnx_dir / f"{name}.onnx", calibration=pixels if tower == "vision" else None
            )
        # Until verify_export picks, the fastest candidate of each tower.
        graphs["int8"] = {tower: candidates[0]["file"] for tower, candidates in methods.items()}
        n = sum(len(c) for c in methods.values())
        say(f"quantised to int8 in {time.perf_counter() - t0:.0f} s ({n} candidates)")
    meta = {
        "source": encoder.name,
        "dim": encoder.dim,
        "logit_scale": encoder.logit_scale,
        "context_length": encoder.context_length,
        "image_config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
        "graphs": graphs,
        "int8_candidates": methods,
    }
    write_meta(out, meta)
    return out


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    (Path(out) / "onnx" / META_FILE).write_text(json.dumps(meta, indent=2))


def read_export_meta(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "onnx" / META_FILE).read_text())


def _is_conv_tower(model: Any) -> bool:
    ops = [n.op_type for n in model.graph.node]
    return ops.count("Conv") > ops.count("MatMul") + ops.count("Gemm")


def _ffn_down_projections(model: Any) -> list[str]:
    """MatMul/Gemm nodes whose weight maps a wide hidden layer back down (K >= 2N): the MLPs' second layer.

    Their inputs (after GELU) have the widest ranges in a transformer, so they
    lose the most to int8; the "guarded" variant keeps them in fp32.
    """
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            dims = next((shapes[i] for i in node.input if i in shapes and len(shapes[i]) == 2), None)
            if dims and dims[0] >= 2 * dims[1]:
                out.append(node.name)
    return out


def quantize_tower(path: Path, *, calibration: np.ndarray | None = None) -> list[dict[str, str]]:
    """Write the int8 candidates of one tower beside ``path``, fastest first.

    Transformer towers (dynamic quantisation): per-tensor, per-channel, and
    per-channel with the MLP down-projections in fp32.  Convolutional towers
    with ``calibration`` pixels (static QDQ, u8 activations): per-tensor, per-channel.
    Returns ``[{"file": ..., "method": ...}, ...]``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    conv = _is_conv_tower(model)
    guarded = _ffn_down_projections(model)
    del model
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # onnxruntime's advice to stderr
    name = lambda tag: path.with_name(f"{path.stem}{INT8_SUFFIX}{tag}.onnx")  # noqa: E731
    out: list[dict[str, str]] = []
    if conv and calibration is not None and len(calibration):
        from onnxruntime.quantization import CalibrationDataReader
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"pixel_values": calibration[i : i + 32]} for i in range(0, len(calibration), 32)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.batches, None)

        prepared = path.with_name(path.stem + "_prep.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(path), str(prepared))
            for tag, per_channel in (("", False), ("_pc", True)):
                quantize_static(
                    str(prepared),
                    str(name(tag)),
                    _Reader(),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                )
                kind = "per-channel" if per_channel else "per-tensor"
                out.append(
                    {"file": name(tag).name, "method": f"static QDQ {kind}, {len(calibration)} calibration images"}
                )
        prepared.unlink(missing_ok=True)
        return out
    variants = [("", False, None, "dynamic per-tensor"), ("_pc", True, None, "dynamic per-channel")]
    if guarded:
        variants.append(("_pcg", True, guarded, f"dynamic per-channel, {len(guarded)} MLP down-projections fp32"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag, per_channel, exclude, method in variants:
            # Convolutions stay fp32 (onnxruntime's ConvInteger is slower than its fp32 Conv).
            quantize_dynamic(
                str(path),
                str(name(tag)),
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=per_channel,
                nodes_to_exclude=exclude,
                weight_type=QuantType.QInt8,
            )
            out.append({"file": name(tag).name, "method": method})
    return out


def quantize_weights_only(path: Path, target: Path, *, block: int = 32) -> dict[str, str]:
    """Store a transformer graph's weights in int8 and compute in fp32: a quarter of the file, fp32's accuracy to ~1e-3.

    Every 2-D float weight read by a MatMul, a Gemm (as B) or a Gather (an embedding table)
    becomes int8 with one float16 scale per ``block`` values along the reduction axis
    (symmetric, block-wise as llama.cpp's Q8_0), and a small constant subgraph
    (Cast, Reshape, Mul, Reshape) that rebuilds the fp32 weight under its own name.  The
    subgraph reads initializers only, so onnxruntime folds it once when the session loads:
    inference then runs the fp32 graph.  No activation is quantised: where dynamic int8
    (activations quantised per batch) loses too much, as on all-MiniLM-L6-v2, this keeps
    the size.  For a download (a web page's text tower), not for speed.  Returns
    ``{"file", "method"}``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    axes: dict[str, int] = {}  # weight -> its reduction axis
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) > 1:
            axes.setdefault(node.input[1], 0)
        elif node.op_type == "Gemm" and len(node.input) > 1:
            axes.setdefault(node.input[1], 1 if any(a.name == "transB" and a.i for a in node.attribute) else 0)
        elif node.op_type == "Gather" and not any(a.name == "axis" and a.i for a in node.attribute):
            axes.setdefault(node.input[0], 1)  # rows of a table: blocks within each row
    rebuild: list[onnx.NodeProto] = []
    quantised = []
    for name, axis in axes.items():
        if name not in inits or users.get(name) != 1:
            continue
        w = numpy_helper.to_array(inits[name])
        if w.ndim != 2 or w.dtype != np.float32 or w.size < 4096:
            continue
        size = block if w.shape[axis] % block == 0 else w.shape[axis]
        blocked = (w.shape[0] // size, size, w.shape[1]) if axis == 0 else (w.shape[0], w.shape[1] // size, size)
        scale = np.abs(w.reshape(blocked)).max(axis=1 if axis == 0 else 2, keepdims=True) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float16).astype(np.float32)
        q = np.clip(np.rint(w.reshape(blocked) / scale), -127, 127).astype(np.int8)
        graph.initializer.extend([
            numpy_helper.from_array(q.reshape(w.shape), f"{name}_int8"),
            numpy_helper.from_array(scale.astype(np.float16), f"{name}_scale16"),
            numpy_helper.from_array(np.array(blocked, dtype=np.int64), f"{name}_blocked"),
            numpy_helper.from_array(np.array(w.shape, dtype=np.int64), f"{name}_shape"),
        ])  # fmt: skip
        rebuild += [
            helper.make_node("Cast", [f"{name}_int8"], [f"{name}_f"], to=TensorProto.FLOAT, name=f"{name}_Cast"),
            helper.make_node("Reshape", [f"{name}_f", f"{name}_blocked"], [f"{name}_b"], name=f"{name}_Blocks"),
            helper.make_node(
                "Cast", [f"{name}_scale16"], [f"{name}_scale"], to=TensorProto.FLOAT, name=f"{name}_CastScale"
            ),  # fmt: skip
            helper.make_node("Mul", [f"{name}_b", f"{name}_scale"], [f"{name}_s"], name=f"{name}_Scale"),
            helper.make_node("Reshape", [f"{name}_s", f"{name}_shape"], [name], name=f"{name}_Weight"),
        ]
        quantised.append(name)
    kept = [i for i in graph.initializer if i.name not in set(quantised)]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = rebuild + list(graph.node)  # the rebuilt weights read initializers only: first
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return {
        "file": Path(target).name,
        "method": f"weight-only int8, blocks of {block} ({len(quantised)} weights), fp32 compute",
    }


# ---------------------------------------------------------------------------- verification


def verify_export(
    encoder: Encoder,
    out_dir: str | Path,
    data: Any,
    *,
    threads: int | None = None,
    bf16: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure parity of the exported graphs (and of torch bf16) with ``encoder`` (torch fp32).

    Picks each tower's int8 graph (per-tensor, else per-channel, else fp32),
    records the report in ``vestis_onnx.json`` (``load_encoder`` reads it to
    decide whether int8 may be the default) and writes ``parity.json``.
    """
    from vestis.models.loading import load_encoder
    from vestis.models.parity import MIN_AGREEMENT, MIN_COSINE, Embeddings, compare, reference_margin
    from vestis.models.runtime import bf16_supported

    say = log or (lambda _msg: None)
    if encoder.precision != "fp32":
        raise InputError("parity is measured against the torch fp32 model; load it with precision='fp32'")
    out = Path(out_dir)
    meta = read_export_meta(out)
    reference = Embeddings.of(encoder, data)
    say(f"torch fp32: {reference.images_per_s:.1f} images/s")
    rows: dict[str, dict[str, Any]] = {
        "torch fp32 (reference)": {
            "images_per_s": round(reference.images_per_s, 1),
            "texts_per_s": round(reference.texts_per_s, 1),
            **reference_margin(reference),
        }
    }
    fp32 = load_encoder(out, runtime="onnx", precision="fp32", threads=threads)
    rows["onnx fp32"] = compare(reference, Embeddings.of(fp32, data))
    del fp32
    say(f"onnx fp32: passed={rows['onnx fp32']['passed']}")
    if "int8" in meta.get("graphs", {}):
        rows["onnx int8"] = _pick_int8(reference, out, meta, data, threads, say)
    if bf16 and bf16_supported() and hasattr(encoder, "dtype"):
        try:
            enc = _reload(encoder, precision="bf16", threads=threads)
        except InputError as exc:
            say(f"torch bf16 skipped: {exc}")
        else:
            rows["torch bf16"] = compare(reference, Embeddings.of(enc, data))
            del enc
    report = {
        "model": encoder.name,
        "reference": "torch fp32",
        "data": data.describe(),
        "thresholds": {"cosine_min": MIN_COSINE, "top1_agreement": MIN_AGREEMENT},
        "rows": rows,
    }
    meta["parity"] = {
        k: {"passed": v.get("passed"), "image_cos_min": v.get("image_cos_min"), "text_cos_min": v.get("text_cos_min"),
            "top1_agreement": v.get("top1_agreement")}
        for k, v in rows.items() if "passed" in v
    }  # fmt: skip
    meta["parity_data"] = data.describe()
    write_meta(out, meta)
    (out / "parity.json").write_text(json.dumps(report, indent=2))
    return report


def _pick_int8(
    reference: Any, out: Path, meta: dict[str, Any], data: Any, threads: int | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """Try each tower's int8 candidates (fastest first), keep the first that passes, else fp32."""
    from vestis.models.loading import load_encoder
    from vestis.models.parity import Embeddings, compare

    onnx_dir = out / "onnx"
    candidates: dict[str, list[dict[str, str]]] = meta.get("int8_candidates", {})
    fp32 = meta["graphs"]["fp32"]
    choice: dict[str, dict[str, str]] = {}
    tried: dict[str, list[str]] = {"vision": [], "text": []}
    last: tuple[dict[str, str], dict[str, Any]] | None = None
    for i in range(max((len(c) for c in candidates.values()), default=0)):
        pending = [t for t in ("vision", "text") if t not in choice and i < len(candidates.get(t, []))]
        if not pending:
            break
        graphs = {}
        for tower in ("vision", "text"):
            if tower in choice:
                graphs[tower] = choice[tower]["file"]
            elif tower in pending:
                graphs[tower] = candidates[tower][i]["file"]
            else:
                graphs[tower] = fp32[tower]
        meta["graphs"]["int8"] = graphs
        write_meta(out, meta)
        enc = load_encoder(out, runtime="onnx", precision="int8", threads=threads)
        row = compare(reference, Embeddings.of(enc, data))
        del enc
        last = (graphs, row)
        for tower in pending:
            side = "image" if tower == "vision" else "text"
            ok = row[f"{side}_tower_passed"]
            cand = candidates[tower][i]
            tried[tower].append(
                f"{cand['method']}: {'pass' if ok else 'fail'} (cos min {row[side + '_cos_min']:.4f}, "
                f"top-1 {row['top1_agreement_' + side + '_tower']:.3f})"
            )
            say(f"int8 {tower} tower, {tried[tower][-1]}")
            if ok:
                choice[tower] = cand
    if not choice:  # nothing to gain: no int8 graphs at all
        for tower_candidates in candidates.values():
            for cand in tower_candidates:
                (onnx_dir / cand["file"]).unlink(missing_ok=True)
        meta["graphs"].pop("int8", None)
        meta.pop("int8_candidates", None)
        write_meta(out, meta)
        return {
            "passed": False,
            "written": False,
            "note": "no int8 variant passed parity; none written",
            "tried": tried,
        }
    # The chosen graph of each tower becomes <name>_quantized.onnx; the other candidates go.
    final: dict[str, str] = {}
    methods: dict[str, str] = {}
    chosen = {t: choice[t]["file"] if t in choice else fp32[t] for t in ("vision", "text")}
    for tower, stem in (("vision", "vision_model"), ("text", "text_model")):
        keep = choice.get(tower)
        for cand in candidates.get(tower, []):
            if keep is None or cand["file"] != keep["file"]:
                (onnx_dir / cand["file"]).unlink(missing_ok=True)
        if keep is None:
            final[tower], methods[tower] = fp32[tower], "fp32 (no int8 variant passed parity)"
        else:
            target = f"{stem}{INT8_SUFFIX}.onnx"
            (onnx_dir / keep["file"]).replace(onnx_dir / target)
            final[tower], methods[tower] = target, keep["method"]
    meta["graphs"]["int8"] = final
    meta["int8_methods"] = methods
    meta.pop("int8_candidates", None)
    write_meta(out, meta)
    if last is not None and last[0] == chosen:
        row = last[1]  # the last round ran exactly these graphs
    else:
        enc = load_encoder(out, runtime="onnx", precision="int8", threads=threads)
        row = compare(reference, Embeddings.of(enc, data))
        del enc
    row.update(graphs=final, methods=methods, tried=tried, written=True)
    return row


def _reload(encoder: Encoder, *, precision: str, threads: int | None) -> Encoder:
    """The same weights as ``encoder`` in another torch precision."""
    import copy

    from vestis.models.torch_backend import TorchEncoder
    from vestis.models.vestis_mini import VestisMiniEncoder

    if isinstance(encoder, TorchEncoder):
        return TorchEncoder(
            copy.deepcopy(encoder.model),
            name=encoder.name,
            tokenizer=encoder.tokenizer,
            image_config=encoder.image_config,
            batch_size=encoder.batch_size,
            threads=threads,
            uses_token_type_ids=encoder._token_type_ids,
            precision=precision,
        )
    if isinstance(encoder, VestisMiniEncoder):
        return VestisMiniEncoder(
            copy.deepcopy(encoder.model), name=encoder.name, batch_size=encoder.batch_size, threads=threads,
            precision=precision,
        )  # fmt: skip
    raise InputError(f"{encoder.runtime} has no {precision} variant")


# ---------------------------------------------------------------------------- vestis-mini's text tower


def export_text_tower(
    model: str | Path = "vestis-mini",
    data: Any = None,
    *,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write vestis-mini's text tower (frozen MiniLM + head) as ONNX into the model's own folder.

    The graph keeps the head's weights and points at the MiniLM weights in the
    pinned package (see :mod:`vestis.models.mini_text_onnx`); parity with the
    torch fp32 text tower is measured on ``data`` (:func:`vestis.models.parity.parity_data`)
    and recorded beside it, and ``load_encoder`` runs the graph by default only
    while that record says it passed and the files still match.  Run it again
    after retraining: ``vestis export text-tower vestis-mini``.
    """
    import importlib.metadata
    import os
    import tempfile

    import onnx

    from vestis.models import mini_text_onnx as mto
    from vestis.models.loading import load_encoder, resolve
    from vestis.models.parity import MIN_AGREEMENT, MIN_COSINE, Embeddings, compare, parity_data
    from vestis.models.registry import file_digest
    from vestis.models.vestis_mini import VestisMiniEncoder

    say = log or (lambda _msg: None)
    _, directory, _ = resolve(model)
    encoder = load_encoder(model, runtime="torch", precision="fp32", threads=threads)
    if not isinstance(encoder, VestisMiniEncoder) or encoder.model.cfg.text_tower != "minilm" or directory is None:
        raise InputError(f"{model}: only a vestis-mini model with the MiniLM text tower has a text-tower export")
    target = directory / mto.TEXT_ONNX_DIR
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=target, delete=True)
        probe.close()
    except OSError as exc:
        raise InputError(f"cannot write into {target}: {exc.strerror}") from None
    minilm = mto.text_model_dir(encoder.model.cfg.text_model) / "model.safetensors"
    header, base = _safetensors_header(minilm)
    text = _MiniText(encoder.text, encoder.model.text_head).eval()
    previous = getattr(encoder.text.bert.config, "_attn_implementation", None)
    encoder.text.bert.set_attn_implementation("eager")
    ids, mask = encoder.tokenizer(["a red summer dress", "shoes"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        raw = Path(tmp) / "full.onnx"
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # no constant folding: keeps each MiniLM weight as the tensor the package stores
                _export_text_graph(text, ids, mask, raw, do_constant_folding=False)
        finally:
            if previous:
                encoder.text.bert.set_attn_implementation(previous)
        graph = onnx.load(str(raw))
        shared = _point_at_package(graph, header, base, minilm)
        staged = Path(tmp) / mto.GRAPH_FILE
        onnx.save(graph, str(staged))
        os.replace(staged, target / mto.GRAPH_FILE)
    (target / mto.RECORD_FILE).unlink(missing_ok=True)  # a stale record must not vouch for the new graph
    say(f"exported the text tower in {time.perf_counter() - t0:.0f} s ({shared} MiniLM tensors read from the package)")
    data = data or parity_data(64, 500, 0)
    reference = Embeddings.of(encoder, data)
    candidate = mto.MiniTextOnnxEncoder(directory, name=encoder.name, threads=threads)
    t1 = time.perf_counter()
    titles = candidate.encode_texts(data.titles)
    t2 = time.perf_counter()
    row = compare(
        reference,
        Embeddings(reference.images, titles, candidate.encode_texts(data.prompts), texts_per_s=len(titles) / (t2 - t1)),
    )
    row["passed"] = row["text_tower_passed"]
    say(f"parity: text cos min {row['text_cos_min']:.6f}, zero-shot top-1 agreement {row['top1_agreement']:.1%}")
    record = {
        "graph": mto.GRAPH_FILE,
        "source": encoder.name,
        "made_by": "vestis export text-tower",
        "weights_sha256": file_digest(directory / "model.safetensors"),
        "external": {
            "name": mto.EXTERNAL_NAME,
            "package": encoder.model.cfg.text_model,
            "version": importlib.metadata.version(encoder.model.cfg.text_model.replace("_", "-")),
            "file": "model.safetensors",
            "sha256": file_digest(minilm),
            "tensors": shared,
        },
        "context_length": encoder.context_length,
        "dim": encoder.dim,
        "reference": "torch fp32 text tower",
        "thresholds": {"cosine_min": MIN_COSINE, "top1_agreement": MIN_AGREEMENT},
        "parity": {k: row[k] for k in ("passed", "text_cos_min", "text_cos_mean", "top1_agreement", "n_texts")},
        "parity_data": data.describe(),
        "texts_per_s": {"torch fp32": round(reference.texts_per_s, 1), "onnx fp32": round(row["texts_per_s"], 1)},
    }
    (target / mto.RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return {"out": str(target), **record}


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's header (tensor name -> dtype, shape, byte range) and where its data starts."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)), 8 + n


def _point_at_package(graph: Any, header: dict[str, Any], base: int, file: Path) -> int:
    """Turn the graph's MiniLM initializers into references to their bytes in the package's file.

    Every reference is checked: the byte range must hold exactly the tensor the
    graph had (same dtype, shape and values).  Returns how many were replaced.
    """
    from onnx import TensorProto, numpy_helper

    from vestis.models.mini_text_onnx import EXTERNAL_NAME

    prefix = "sentence.bert."
    replaced = 0
    with open(file, "rb") as f:
        for init in graph.graph.initializer:
            if not init.name.startswith(prefix):
                continue
            key = init.name[len(prefix) :]
            entry = header.get(key)
            if entry is None or entry["dtype"] != "F32" or list(entry["shape"]) != list(init.dims):
                raise InputError(f"{file}: no float32 tensor {key!r} of shape {list(init.dims)}")
            start, end = entry["data_offsets"]
            f.seek(base + start)
            if f.read(end - start) != numpy_helper.to_array(init).astype("<f4").tobytes():
                raise InputError(f"{file}: tensor {key!r} differs from the model's; is the package the pinned one?")
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (
                ("location", EXTERNAL_NAME),
                ("offset", str(base + start)),
                ("length", str(end - start)),
            ):
                item = init.external_data.add()
                item.key, item.value = k, v
            replaced += 1
    return replaced


def _export_text_graph(tower, ids: np.ndarray, mask: np.ndarray, path: Path, **options) -> None:
    """``input_ids, attention_mask -> text_embeds`` with dynamic batch and sequence (the layout vestis loads)."""
    torch.onnx.export(
        tower,
        (torch.from_numpy(ids), torch.from_numpy(mask)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["text_embeds"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
        **options,
    )
