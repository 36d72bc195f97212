"""MkDocs hook: render the Sphinx roles in motorpatch's docstrings (``:class:`X```) as code.

mkdocstrings' Sphinx docstring parser keeps roles as text, so the reference
would show ``:class:`` before each name. This turns ``:role:<code>X</code>``
into ``<code>X</code>``, linked to X's entry when the page documents it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|data|attr|exc|mod|obj):<code>~?([\w.]+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    documented = set(re.findall(r'id="(motorpatch\.[\w.]+)"', html))

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        target = name if name.startswith("motorpatch.") else f"motorpatch.{name}"
        if target in documented:
            return f'<a href="#{target}"><code>{name}</code></a>'
        return f"<code>{name}</code>"

    return _ROLE.sub(replace, html)
