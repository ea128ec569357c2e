"""The Jinja2 adapter: a subject, a text body and an HTML body per kind of email."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.mailer.domain import Kind, Rendered

TEMPLATES = Path(__file__).resolve().parent / "templates"


class JinjaRenderer:
    def __init__(self, directory: Path = TEMPLATES) -> None:
        self._env = Environment(loader=FileSystemLoader(directory), undefined=StrictUndefined,
                                autoescape=select_autoescape(["html"]), keep_trailing_newline=True)

    def render(self, kind: Kind, values: dict[str, Any]) -> Rendered:
        def part(suffix: str) -> str:
            return self._env.get_template(f"{kind.value}.{suffix}").render(values)
        return Rendered(subject=part("subject.txt").strip(), text=part("txt"), html=part("html"))
