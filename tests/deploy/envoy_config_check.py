"""Check an Envoy bootstrap config against Envoy's own protos (PyPI ``xds-protos``).

Runs ONLY inside the isolated compat venv (see ``tests/compat/harness.py``)::

    <compat-venv>/bin/python tests/deploy/envoy_config_check.py < bootstrap.json

Input: the bootstrap as JSON (the test converts ``deploy/envoy.yaml``). Every ``typed_config``'s
package is imported first so that its ``@type`` resolves; then the whole document is parsed into
``envoy.config.bootstrap.v3.Bootstrap`` with unknown fields refused, which catches misspelt
fields, wrong types and enum values, and unknown filter types. (Envoy's PGV constraints such as
"required" are not checked; the test checks the names the stack relies on.)

Output (stdout, JSON): ``{"ok": true}`` or ``{"ok": false, "error": "..."}``; exit status 0.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections.abc import Iterator
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

_PREFIX = "type.googleapis.com/"


def type_urls(node: Any) -> Iterator[str]:
    """Every ``@type`` in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@type" and isinstance(value, str):
                yield value
            else:
                yield from type_urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from type_urls(item)


def import_package_of(type_url: str) -> None:
    """Import every ``*_pb2`` module of the message's proto package (file names are not
    derivable from message names)."""
    package = type_url.removeprefix(_PREFIX).rsplit(".", 1)[0]
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def main() -> int:
    config = json.load(sys.stdin)
    try:
        for url in sorted(set(type_urls(config))):
            import_package_of(url)
        json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
    except (ImportError, json_format.ParseError) as exc:
        json.dump({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, sys.stdout)
        return 0
    json.dump({"ok": True}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
