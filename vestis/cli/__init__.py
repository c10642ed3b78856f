"""The ``vestis`` command line: a thin layer over the library (``import vestis``).

One module per group of commands; the options they share are defined once in
:mod:`vestis.cli.options`.  The entry point is :func:`vestis.cli.main`.
"""

from vestis.cli.main import app, main

__all__ = ["app", "main"]
