from __future__ import annotations

import itertools

import pytest

from store.tokens import TokenCounter
from sync.chunking import Chunker, sentence_units


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(TokenCounter())


def test_short_text_is_one_chunk_under_its_heading(chunker: Chunker) -> None:
    chunks = chunker.split("# Failover\n\nPromote the standby.")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Failover", "# Failover\n\nPromote the standby.")
    ]


def test_long_text_becomes_overlapping_chunks_of_about_400_tokens(chunker: Chunker) -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "alpha beta gamma delta " * 15 for i in range(40))
    chunks = chunker.split(text)
    assert len(chunks) > 3
    assert all(c.token_count <= 400 for c in chunks)
    assert all(c.token_count >= 250 for c in chunks[:-1])
    for before, after in itertools.pairwise(chunks):
        first_paragraph = after.text.split("\n\n")[0]
        assert first_paragraph in before.text, "each chunk starts with the previous one's tail"


def test_a_new_section_starts_a_new_chunk_once_the_current_one_is_half_full(
    chunker: Chunker,
) -> None:
    text = "# One\n\n" + "word " * 250 + "\n\n# Two\n\nSecond section text."
    chunks = chunker.split(text)
    assert [c.heading for c in chunks] == ["One", "Two"]
    assert chunks[1].text.startswith("# Two")


def test_code_blocks_with_blank_lines_stay_whole(chunker: Chunker) -> None:
    code = "```bash\nkubectl rollout undo deploy/dispatch\n\nkubectl get pods\n```"
    chunks = chunker.split("Roll back:\n\n" + code)
    assert code in chunks[0].text


def test_a_paragraph_longer_than_a_chunk_is_split_without_losing_words(chunker: Chunker) -> None:
    words = [f"w{i}" for i in range(1500)]
    chunks = chunker.split(" ".join(words))
    assert all(c.token_count <= 400 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(w in joined for w in words)


def test_empty_text_gives_no_chunks(chunker: Chunker) -> None:
    assert chunker.split("") == []


def test_a_longer_fence_keeps_inner_backtick_lines_inside_the_block(chunker: Chunker) -> None:
    code = "````markdown\nExample:\n\n```\nnested\n```\n\nstill code\n````"
    chunks = chunker.split("# Docs\n\n" + code + "\n\nAfter.")
    assert code in chunks[0].text


def test_sentence_units_split_at_sentence_ends_join_fragments_and_cap_at_32() -> None:
    assert sentence_units("One two three four. Five six seven eight! Nine?") == (
        "One two three four.",
        "Five six seven eight! Nine?",
    )
    bullets = "Steps:\n- open\n- click save\nDone."
    assert sentence_units(bullets) == ("Steps: - open - click save Done.",)
    assert sentence_units("") == ()
    assert sentence_units("short") == ("short",)
    many = " ".join(f"Sentence number {i} is here." for i in range(100))
    units = sentence_units(many)
    assert len(units) == 32
    assert " ".join(units) == many
