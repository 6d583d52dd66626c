"""The citation gate: what a person sees of an answer while the model is still writing it."""

from __future__ import annotations

import itertools

import pytest

from bot.streaming import CitationGate


def stream(text: str, sources: int, *, pieces: int = 1) -> list[str]:
    """Feed ``text`` in pieces of ``pieces`` characters; every text the sink saw, in order."""
    seen: list[str] = []
    gate = CitationGate(sources, seen.append)
    for i in range(0, len(text), pieces):
        gate.feed(text[i : i + pieces])
    return seen


def shown_after_each_piece(text: str, sources: int, pieces: int = 1) -> list[str]:
    seen: list[str] = []
    gate = CitationGate(sources, seen.append)
    states = []
    for i in range(0, len(text), pieces):
        gate.feed(text[i : i + pieces])
        states.append("".join(seen))
    return states


@pytest.mark.parametrize("pieces", [1, 2, 3, 5, 40])
def test_an_invented_marker_is_never_shown_however_the_text_is_split(pieces: int) -> None:
    text = "Use the portal [1] or the CLI [7] as in [2, 9] and [12] then stop. "
    for state in shown_after_each_piece(text, sources=2, pieces=pieces):
        assert "[7]" not in state and "[9]" not in state and "[12" not in state
        assert "[1" not in state.replace("[1]", "")  # no half marker either
    assert "".join(stream(text, 2, pieces=pieces)).split() == (
        [
            "Use",
            "the",
            "portal",
            "[1]",
            "or",
            "the",
            "CLI",
            "as",
            "in",
            "[2]",
            "and",
            "then",
            "stop.",
        ]
    )


def test_markers_are_numbered_in_order_of_first_citation_as_they_stream() -> None:
    shown = "".join(stream("First [3] then [1] and [3] again, with [1-3]. ", sources=3))
    assert shown == "First [1] then [2] and [1] again, with [2][3][1]."


def test_markers_inside_code_are_code_and_pass_as_written() -> None:
    text = "Run `items[7]` and\n```\nx = a[9]\n```\nsee [1]. "
    assert "".join(stream(text, sources=1, pieces=3)) == text.rstrip()


def test_a_markdown_link_is_shown_as_plain_text_never_live() -> None:
    shown = "".join(stream("See [the portal](https://evil.example/x) now [1]. ", sources=1))
    assert "](" not in shown and "https://" not in shown
    assert "the portal" in shown and "[1]" in shown


def test_a_bare_url_is_shown_inert_even_when_split_across_deltas() -> None:
    for state in shown_after_each_piece("Go to https://evil.example/login now. ", 1, 2):
        assert "https://" not in state and "evil.example" not in state


def test_a_bracket_that_is_prose_is_shown_once_it_is_clearly_not_a_marker() -> None:
    shown = "".join(stream("Options [see below] and [a, b] work. ", sources=2))
    assert shown == "Options [see below] and [a, b] work."


def test_text_is_released_word_by_word_not_held_to_the_end() -> None:
    states = shown_after_each_piece("Windows laptops connect with the profile. ", 1)
    first_word_at = next(i for i, s in enumerate(states) if s)
    assert states[first_word_at] == "Windows"
    assert first_word_at == len("Windows ") - 1


def test_every_split_of_a_text_shows_the_same_text() -> None:
    text = "A [2] b [5] c `d[1]` e [1]. F [x](http://h.example) g [1, 2]. "
    whole = "".join(stream(text, 2, pieces=len(text)))
    for size in itertools.chain(range(1, 8), (13, 29)):
        assert "".join(stream(text, 2, pieces=size)) == whole
