"""A catalog as a static web site that searches itself in the browser (``vestis export site``).

:func:`export_site` writes the folder (:mod:`vestis.site.export`); the page's tokenizer settings
come from :mod:`vestis.site.tokenizer`, onnxruntime-web from :mod:`vestis.site.runtime`.
"""

from vestis.site.export import SiteReport, export_site, site_sizes

__all__ = ["SiteReport", "export_site", "site_sizes"]
