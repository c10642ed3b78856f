"""A self-contained HTML page of search results (thumbnails inlined), for `--html` and the demo."""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jinja2

from vestis.models.preprocess import image_mime
from vestis.search import SearchResults

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 2rem; }
 .q { color: #555; font-size: .9rem; }
 ol.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 1rem;
           list-style: none; padding: 0; }
 .grid li { border: 1px solid #ddd; border-radius: 6px; padding: .5rem; font-size: .8rem; }
 .grid img { width: 100%; height: 160px; object-fit: contain; background: #fff; }
 .noimg { height: 160px; display: flex; align-items: center; justify-content: center; background: #f3f3f3; }
 .score { font-weight: 600; } .meta { color: #555; word-break: break-word; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% for section in sections %}
<section>
 <h2>{{ section.heading }}</h2>
 <p class="q">{{ section.note }}</p>
 {% if not section.hits %}<p>No results.</p>{% endif %}
 <ol class="grid">
 {% for hit in section.hits %}
  <li>
   {% if hit.src %}<img src="{{ hit.src }}" alt="{{ hit.alt }}">{% else %}<div class="noimg">no image</div>{% endif %}
   <div><span class="score">{{ '%.3f' % hit.score }}</span> · id {{ hit.id }}</div>
   <div class="meta">{{ hit.meta }}</div>
  </li>
 {% endfor %}
 </ol>
</section>
{% endfor %}
</body>
</html>
"""


def _image_src(data: bytes | None) -> str | None:
    if not data:
        return None
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode()}"


def render_results(title: str, sections: Sequence[tuple[str, SearchResults]]) -> str:
    """HTML for one or more result lists; hits need thumbnails fetched (``thumbnails=True``)."""
    env = jinja2.Environment(autoescape=True)
    rendered = []
    for heading, results in sections:
        q = {k: v for k, v in results.query.items() if v not in (None, [], {}, 0, 0.0) or k == "k"}
        hits = []
        for h in results.hits:
            meta = " · ".join(f"{k}: {v}" for k, v in h.metadata.items() if k != "id" and v not in (None, ""))
            alt = str(h.metadata.get("productDisplayName") or h.metadata.get("articleType") or h.id)
            hits.append({"id": h.id, "score": h.score, "meta": meta, "alt": alt, "src": _image_src(h.thumbnail)})
        rendered.append({"heading": heading, "note": ", ".join(f"{k}={v}" for k, v in q.items()), "hits": hits})
    return env.from_string(_TEMPLATE).render(title=title, sections=rendered)


def write_html(path: str | Path, html: str) -> Path:
    """Write atomically (temporary file renamed into place), readable as any new file is.

    A temporary file is private (0600); the page is for people and browsers, so it
    gets the mode a plain ``open(path, "w")`` would give (0644 under the usual umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    return path


def _umask() -> int:
    """The process umask, read without changing it where the system says it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
