from __future__ import annotations

import tiktoken

from store.tokens import TokenCounter


def test_counts_match_cl100k_base_without_any_download() -> None:
    counter = TokenCounter()
    assert counter.encoding.encode("hello world") == [15339, 1917]
    assert counter.count("The on-call engineer pages #ops-oncall.") > 5
    assert counter.encoding.n_vocab == 100277
    assert isinstance(counter.encoding, tiktoken.Encoding)


def test_special_token_text_is_counted_as_plain_text() -> None:
    assert TokenCounter().count("<|endoftext|>") > 1


def test_trim_cuts_to_a_token_budget() -> None:
    counter = TokenCounter()
    text = "alpha beta gamma delta " * 50
    assert counter.count(counter.trim(text, 10)) == 10
    assert counter.trim("short", 10) == "short"
