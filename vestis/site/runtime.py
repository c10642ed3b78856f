"""onnxruntime-web, the in-browser ONNX runtime a static site vendors: pinned, fetched once, copied offline.

The files come from the npm registry's ``onnxruntime-web`` package at the pinned
version, checked against the pinned ``sha512`` integrity (the ``dist.integrity``
npm itself records in lock files).  :func:`fetch_runtime` runs ``npm pack`` once
(``make`` does it after installing the Python packages, or ``python
scripts/fetch_onnxruntime_web.py``) and unpacks the few files the page needs into
the cache folder; :func:`runtime_files` finds them there, so ``vestis export site``
itself never touches the network and works offline.

Only the plain WebAssembly build is vendored (no WebGPU/WebGL/JSEP builds, no
source maps): ``ort.wasm.min.js`` (the API, a classic script defining ``ort``),
``ort-wasm-simd-threaded.mjs`` (its loader) and ``ort-wasm-simd-threaded.wasm``
(the runtime, about 14 MB).  The package ships no licence file (its
``package.json`` says ``"license": "MIT"``), so the MIT licence of ONNX Runtime,
© Microsoft Corporation, is written beside them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from vestis.errors import InputError

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
#: ``npm view onnxruntime-web@1.30.0 dist.integrity``: the tarball must hash to this.
INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
#: What the page loads, from the package's ``dist/``.
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
LICENSE_FILE = "LICENSE"

MIT_LICENSE = """onnxruntime-web {version} (npm registry: {package}), files {files}.
The npm package ships no licence file; its package.json declares "license": "MIT".
ONNX Runtime's licence (https://github.com/microsoft/onnxruntime/blob/main/LICENSE):

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def runtime_dir() -> Path:
    """Where the unpacked files live: ``<vestis cache>/npm/onnxruntime-web-<version>/``."""
    from vestis.models.registry import cache_root

    return cache_root() / "npm" / f"{PACKAGE}-{VERSION}"


def check_integrity(data: bytes, integrity: str = INTEGRITY) -> None:
    algo, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != expected:
        raise InputError(f"{PACKAGE}@{VERSION}: the tarball's {algo} is {got}, not the pinned {expected}")


def unpack(tarball: bytes, target: Path) -> Path:
    """Check ``tarball`` (the npm package) against the pin and put :data:`FILES` + the licence in ``target``."""
    check_integrity(tarball)
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=".ort-", dir=target.parent if target.parent.exists() else None))
    staging.chmod(0o755)
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            for name in FILES:
                member = tar.getmember(f"package/dist/{name}")
                (staging / name).write_bytes(tar.extractfile(member).read())
            meta = json.loads(tar.extractfile("package/package.json").read())
        if meta.get("version") != VERSION or meta.get("license") != "MIT":
            raise InputError(f"{PACKAGE}: unexpected package.json (version {meta.get('version')})")
        licence = MIT_LICENSE.format(version=VERSION, package=PACKAGE, files=", ".join(FILES))
        (staging / LICENSE_FILE).write_text(licence)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch_runtime(*, npm: str = "npm", force: bool = False) -> Path:
    """``npm pack onnxruntime-web@<version>``, checked against the pinned integrity, unpacked into the cache."""
    target = runtime_dir()
    if not force and runtime_complete(target):
        return target
    exe = shutil.which(npm)
    if exe is None:
        raise InputError(f"npm is not installed: it fetches {PACKAGE}@{VERSION} once (apt-get install npm)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            [exe, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or not tarballs:
            raise InputError(f"npm pack {PACKAGE}@{VERSION} failed: {run.stderr.strip()[-500:]}")
        return unpack(tarballs[0].read_bytes(), target)


def runtime_complete(directory: Path) -> bool:
    return all((Path(directory) / name).is_file() for name in (*FILES, LICENSE_FILE))


def runtime_files() -> Path:
    """The folder holding the vendored files; an error saying how to fetch them when they are missing."""
    target = runtime_dir()
    if not runtime_complete(target):
        raise InputError(
            f"{PACKAGE} {VERSION} is not in {target}: fetch it once with `python scripts/fetch_onnxruntime_web.py` "
            "(npm pack from the npm registry, checked against the pinned integrity; `make` does this)"
        )
    return target
