"""Free text people type (names), refused when it holds control characters: a NUL would make
PostgreSQL refuse the row (a 500 instead of a clear 422), and a line break in a name is a
header waiting to be injected somewhere downstream."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator


def _printable(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError("must not contain control characters or line breaks")
    return value


PlainText = Annotated[str, AfterValidator(_printable)]
