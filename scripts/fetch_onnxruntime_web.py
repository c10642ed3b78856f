"""Fetch onnxruntime-web (pinned, integrity-checked) into vestis' cache for `vestis export site`.

Runs `npm pack onnxruntime-web@<pinned version>` once; `vestis export site` then copies the
files from the cache and works offline. `make` runs this after installing the Python packages.
"""

from __future__ import annotations

import argparse
import sys

from vestis.errors import VestisError
from vestis.site.runtime import VERSION, fetch_runtime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even when the cache is complete")
    args = parser.parse_args()
    try:
        path = fetch_runtime(force=args.force)
    except VestisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"onnxruntime-web {VERSION}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
