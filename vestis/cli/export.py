"""``vestis export``: ONNX graphs for faster runtimes, each with a parity report.

``vestis export onnx MODEL --out DIR [--int8]`` writes the layout the ONNX backend
reads (``onnx/vision_model.onnx``, ``onnx/text_model.onnx``, dynamic batch and
sequence length; with ``--int8`` also ``*_quantized.onnx`` for each tower where int8
passes parity), then measures every variant against the torch fp32 model on real
catalog images and titles, prints the table and saves it as ``DIR/parity.json``.

``vestis export text-tower [MODEL]`` writes vestis-mini's text tower into the model's
own folder (:func:`vestis.export.export_text_tower`), which then runs by default.

``vestis export site INDEX --out site/`` writes a catalog as a static folder that searches
itself in the browser (:func:`vestis.site.export_site`).

With ``--json`` the report is one JSON object on the last line of stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vestis.cli.options import DownloadOpt, IndexArg, JsonOpt, QuietOpt, StoreOpt, ThreadsOpt, store_location
from vestis.cli.output import note, print_json
from vestis.cli.output import wide as out
from vestis.errors import InputError

#: How many real catalog images and titles every export's parity check measures on.
ParityImagesOpt = Annotated[
    int,
    typer.Option("--parity-images", min=8, help="Catalog images to measure parity on (cosines, zero-shot agreement)."),
]
ParityTextsOpt = Annotated[int, typer.Option("--parity-texts", min=1, help="Product titles to measure parity on.")]


def _logger(quiet: bool) -> Any:
    """Progress lines on stderr, unless --quiet."""
    return (lambda line: None) if quiet else note


export_app = typer.Typer(
    help="Export a model for faster runtimes (ONNX fp32/int8), with a parity report.", no_args_is_help=True
)


@export_app.command("onnx")
def export_onnx_command(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Registry name, model directory or hub id (a torch-format model).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the export to.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write int8 graphs (kept per tower only where they pass parity).")
    ] = False,
    parity_images: ParityImagesOpt = 500,
    parity_texts: ParityTextsOpt = 500,
    calibration_images: Annotated[
        int, typer.Option("--calibration-images", min=8, help="Images to calibrate static int8 quantisation.")
    ] = 128,
    no_bf16: Annotated[bool, typer.Option("--no-bf16", help="Do not measure torch bf16 parity.")] = False,
    threads: ThreadsOpt = None,
    download: DownloadOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export MODEL's image and text towers to ONNX (fp32, and int8 with --int8) and report parity."""
    from vestis.export import export_onnx, verify_export
    from vestis.models import load_encoder
    from vestis.models.parity import parity_data

    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a directory")

    log = _logger(quiet)
    enc = load_encoder(model, runtime="torch", precision="fp32", threads=threads, download=download or None)
    data = parity_data(parity_images, parity_texts, calibration_images if int8 else 0)
    log(f"{enc.name}: {enc.runtime}; parity data: {data.describe()}")
    export_onnx(enc, out_dir, int8=int8, calibration_images=data.calibration, log=log)
    report = verify_export(enc, out_dir, data, threads=threads, bf16=not no_bf16, log=log)
    report["out"] = str(out_dir)
    if as_json:
        print_json(report)
        return
    out.print(parity_table(report))
    for line in int8_attempts(report):
        out.print(line, highlight=False)
    out.print(f"wrote {out_dir}/onnx and {out_dir}/parity.json")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def parity_table(report: dict[str, Any]) -> Table:
    """The parity report as a rich table (one row per variant)."""
    th = report["thresholds"]
    ref = next(iter(report["rows"].values()))
    margin = ref.get("top1_margin_median")
    caption = f"passes: every cosine >= {th['cosine_min']} and zero-shot top-1 agreement >= {th['top1_agreement']:.0%}"
    if margin is not None:
        caption += f"; fp32's median top-1 margin {margin:.4f} (near 0: choices are coin flips, e.g. random weights)"
    table = Table(title=f"{report['model']}: parity with {report['reference']} ({report['data']})", caption=caption)
    columns = ("variant", "img cos min", "img cos mean", "txt cos min", "txt cos mean", "top-1 agree", "img/s",
               "txt/s", "parity")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=col == "variant")
    for name, row in report["rows"].items():
        if "passed" not in row:
            verdict = "reference"
        elif row.get("written") is False:
            verdict = "[yellow]none written[/]"
        else:
            verdict = "[green]pass[/]" if row["passed"] else "[red]fail[/]"
        agree = row.get("top1_agreement")
        table.add_row(
            name,
            _fmt(row.get("image_cos_min")),
            _fmt(row.get("image_cos_mean")),
            _fmt(row.get("text_cos_min")),
            _fmt(row.get("text_cos_mean")),
            "-" if agree is None else f"{agree:.1%}",
            _fmt(row.get("images_per_s"), 1),
            _fmt(row.get("texts_per_s"), 1),
            verdict,
        )
    return table


def int8_attempts(report: dict[str, Any]) -> list[str]:
    """One line per int8 variant tried, per tower, and the result."""
    int8 = report["rows"].get("onnx int8") or {}
    lines = [f"int8 {tower} tower: {attempt}" for tower, tried in int8.get("tried", {}).items() for attempt in tried]
    for tower, method in int8.get("methods", {}).items():
        lines.append(f"int8 {tower} tower runs: {method}")
    return lines


@export_app.command("text-tower")
def export_text_tower_command(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="vestis-mini, or a vestis-mini-format model directory.")
    ] = "vestis-mini",
    parity_images: ParityImagesOpt = 500,
    parity_texts: ParityTextsOpt = 500,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write vestis-mini's text tower as ONNX into the model's folder, with its parity record.

    Text queries then run without torch (vestis search starts in about a second).
    Run again after retraining: the export is used only while its record matches
    the model's weights.
    """
    from vestis.export import export_text_tower
    from vestis.models.parity import parity_data

    log = _logger(quiet)
    report = export_text_tower(model, parity_data(parity_images, parity_texts, 0), threads=threads, log=log)
    if as_json:
        print_json(report)
        return
    p = report["parity"]
    verdict = "[green]pass[/]" if p["passed"] else "[red]fail (the torch text tower stays the default)[/]"
    out.print(
        f"{report['out']}: text cos min {p['text_cos_min']:.6f}, zero-shot top-1 agreement "
        f"{p['top1_agreement']:.1%} on {report['parity_data']}: {verdict}"
    )


@export_app.command("site")
def export_site_command(
    index: IndexArg = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write the site to: new, empty, or an earlier site (replaced)."),
    ] = None,
    text_precision: Annotated[
        str,
        typer.Option(
            "--text-precision", help="auto: the int8 text tower where it passes parity, else fp32; or int8, fp32."
        ),
    ] = "auto",
    parity_images: ParityImagesOpt = 500,
    parity_texts: ParityTextsOpt = 500,
    store: StoreOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write INDEX as a static web site that searches the catalog by words in the browser, with no server.

    The folder holds the page, the text tower (ONNX, int8 where it passes parity), the vectors
    (float16), the items and their thumbnails, and onnxruntime-web; serve it from any static host.
    """
    from vestis.site import export_site

    if out_dir is None:
        raise typer.BadParameter("give the folder to write the site to", param_hint="'--out'")
    location, shifted = store_location(index, store)
    if shifted:
        raise typer.BadParameter(f"unexpected argument {index!r}", param_hint="'INDEX'")

    log = _logger(quiet)
    report = export_site(
        location, out_dir, text_precision=text_precision, parity=(parity_images, parity_texts), threads=threads, log=log
    )
    if as_json:
        print_json(report.to_dict())
        return
    sizes = report.sizes_mb
    out.print(
        f"{report.out}: {report.items} items, text tower {report.text_precision} ({report.text_method}), "
        f"vectors {report.vectors}; {sizes['total']:.1f} MB, {sizes['first_load']:.1f} MB before the first "
        f"result (thumbnails {sizes.get('thumbnails', 0):.1f} MB, fetched as results show them)",
        highlight=False,
    )
    out.print(f"serve it from any static host, e.g. python -m http.server -d {report.out}", highlight=False)
