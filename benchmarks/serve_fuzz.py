"""A bounded property-based fuzz run of ``vestis serve``: schemathesis over the app's own OpenAPI spec.

Every operation of ``/openapi.json`` gets requests generated from its schema (valid ones, and with
``--negative`` invalid ones too), sent to a real uvicorn on 127.0.0.1, and each answer is checked:
no 5xx, no traceback in any body, the status documented for the operation, the content type and
the body matching the spec's response schema. The suite runs this briefly
(``tests/serve/test_fuzz.py``); this script runs it for ``--minutes`` (20 by default) over an index
of the demo catalog and writes ``results/bench/serve_fuzz.json``:

    python benchmarks/serve_fuzz.py [--minutes 20] [--examples 2000]

Traffic goes to 127.0.0.1 only, bounded by ``--examples`` per operation and by the time limit.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fuzz(url: str, *, examples: int, seconds: float, negative: bool = True, seed: int = 0,
         catalog: str | None = "shop", log=print) -> dict:  # fmt: skip
    """Fuzz every operation of ``url``'s spec: at most ``examples`` cases each, ``seconds`` in all
    (shared evenly among the operations); half the requests naming a catalog name ``catalog``.
    Returns counts and the problems found."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    per_operation = seconds / max(1, len(operations))
    stats: dict = {"operations": len(operations), "requests": 0, "statuses": collections.Counter(), "problems": []}
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if negative else [GenerationMode.POSITIVE]
    for op in operations:
        sent = _fuzz_operation(op, url, modes, checks, stats, examples=examples, seconds=per_operation,
                               derandomize=seed == 0, catalog=catalog)  # fmt: skip
        log(f"{op.method.upper() + ' ' + op.path:<55} {sent:6d} requests")
    stats["statuses"] = dict(sorted(stats["statuses"].items()))
    stats["server_errors"] = sum(n for s, n in stats["statuses"].items() if s.startswith("5"))
    return stats


def _fuzz_operation(op, url: str, modes, checks, stats: dict, *, examples: int, seconds: float,
                    derandomize: bool, catalog: str | None) -> int:  # fmt: skip
    """At most ``examples`` generated requests to one operation, for at most ``seconds``; problems into ``stats``."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, settings

    label = f"{op.method.upper()} {op.path}"
    stop = time.monotonic() + seconds
    sent = 0

    def one(case) -> None:
        nonlocal sent
        if time.monotonic() > stop:
            return
        sent += 1
        if catalog and (case.path_parameters or {}).get("name") is not None and sent % 2:
            case.path_parameters["name"] = catalog  # half the requests reach the served catalog
        response = case.call(base_url=url, timeout=60)
        stats["requests"] += 1
        stats["statuses"][str(response.status_code)] += 1
        problems = []
        if "Traceback" in response.text or 'File "' in response.text:
            problems.append("a traceback in the body")
        try:
            case.validate_response(response, checks=checks)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup of check failures
            for failure in getattr(exc, "exceptions", [exc]):
                problems.append(str(getattr(failure, "title", None) or failure).strip().splitlines()[0][:300])
        for p in problems:
            stats["problems"].append({"operation": label, "status": response.status_code, "problem": p,
                                      "request": case.as_curl_command()[:500]})  # fmt: skip

    strategy = hypothesis.strategies.one_of(*(op.as_strategy(generation_mode=m) for m in modes))
    test = settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck), phases=[Phase.generate],
                    print_blob=False)(hypothesis.given(strategy)(one))  # fmt: skip
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - a generation problem is reported, not fatal
        stats["problems"].append({"operation": label, "status": None, "problem": f"{type(exc).__name__}: {exc}"})
    return sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--examples", type=int, default=2000, help="most cases per operation")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "serve_fuzz.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from serve_load import Server, build_demo_index, machine

    start = time.time()
    with tempfile.TemporaryDirectory(prefix="vestis-fuzz-") as tmp:
        index = build_demo_index(Path(tmp))  # written to by the fuzzer: a private copy
        index = index.rename(Path(tmp) / "shop")
        with Server(index, batching=True, log=Path(tmp) / "server.log") as server:
            stats = fuzz(server.url, examples=args.examples, seconds=args.minutes * 60)
            stats["healthz_after"] = __import__("httpx2").get(server.url + "/healthz").status_code
        server_log = (Path(tmp) / "server.log").read_text()
    stats.update(machine=machine(), minutes=round((time.time() - start) / 60, 1),
                 tracebacks_in_server_log=server_log.count("Traceback"))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1, default=str))
    print(json.dumps({k: v for k, v in stats.items() if k != "problems"}, default=str))
    print(f"{len(stats['problems'])} problems; {stats['server_errors']} server errors")
    for p in stats["problems"][:20]:
        print(f"  {p['operation']} -> {p['status']}: {p['problem']}")
    if stats["server_errors"]:
        raise SystemExit("the server answered with 5xx")


if __name__ == "__main__":
    main()
