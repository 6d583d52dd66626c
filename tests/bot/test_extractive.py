"""The model-free answerer: picks, quoting, labels and the no-sources case."""

from __future__ import annotations

import re

import pytest

from bot.answerer import NO_SOURCES_TEXT, Answerer, Draft
from bot.extractive import LABEL, ExtractiveAnswerer
from store.passages import Passage


def passage(n: int, title: str, text: str, heading: str = "") -> Passage:
    return Passage(
        artifact_id=f"confluence:{2000 + n}",
        title=title,
        url=f"https://wiki.example.com/x/{2000 + n}",
        heading=heading,
        text=text,
        chunk_ids=(n,),
        score=1.0 / n,
        content_hash=f"h{n}",
        version="1",
    )


VPN = passage(
    1,
    "VPN overview",
    "The VPN keeps company traffic private and is required on public networks. "
    "Everyone should use the VPN when travelling. "
    "The VPN gateway listens on UDP port 1194 and falls back to TCP 443. "
    "Ask in #it-help if the VPN is slow.",
)
RUNBOOK = passage(
    2,
    "Runbook - Billing worker",
    "## When to restart\n\n"
    "- Memory above 3.5 GiB for ten minutes.\n"
    "- Consumer lag growing while the logs show no errors.\n\n"
    "## Restart steps\n\n"
    "1. Restart with a rolling restart (never delete pods in bulk):\n"
    "   ```bash\n"
    "   kubectl --context prod-eu-1 -n billing rollout restart deployment/billing-worker\n"
    "   kubectl --context prod-eu-1 -n billing rollout status deployment/billing-worker --timeout=10m\n"  # noqa: E501
    "   ```\n"
    "2. Post in #ops-oncall what you restarted and why.",
)
INCIDENT = passage(
    3,
    "OPS-412: Label printing outage",
    "Status: Done. Priority: High.\n\n"
    "Several incidents hit label printing this quarter. "
    "OPS-412 was caused by a poison message that crashed the label-print consumer. "
    "Label printing is important for the warehouses.",
)


def answer(question: str, *passages: Passage) -> Draft:
    answerer: Answerer = ExtractiveAnswerer()
    return answerer.answer(question, passages)


def quoted(draft: Draft) -> list[str]:
    return [line for line in draft.text.splitlines() if line.startswith("> ")]


def test_the_sentence_with_the_answer_beats_generic_ones() -> None:
    draft = answer("Which port does the VPN gateway use?", VPN)

    assert draft.mode == "extractive"
    assert draft.text.startswith(LABEL)
    assert LABEL.startswith("No language model is configured")
    lines = quoted(draft)
    assert lines[0] == "> The VPN gateway listens on UDP port 1194 and falls back to TCP 443. [1]"
    assert not any("Everyone should use the VPN" in line for line in lines)
    assert draft.cited == (1,)


def test_rare_terms_such_as_ticket_keys_decide() -> None:
    draft = answer("What caused OPS-412?", VPN, RUNBOOK, INCIDENT)
    lines = quoted(draft)
    assert lines[0] == (
        "> OPS-412 was caused by a poison message that crashed the label-print consumer. [3]"
    )
    assert draft.cited[0] == 3
    assert not any("important for the warehouses" in line for line in lines)


def test_code_is_quoted_whole_with_its_intro() -> None:
    draft = answer("How do I restart the billing worker?", VPN, RUNBOOK)

    assert draft.cited == (2,)
    assert "> Restart with a rolling restart (never delete pods in bulk): [2]\n```bash\n" in (
        draft.text
    )
    # Every code line survives intact, unindented, inside a fence.
    for line in (
        "kubectl --context prod-eu-1 -n billing rollout restart deployment/billing-worker",
        "kubectl --context prod-eu-1 -n billing rollout status deployment/billing-worker "
        "--timeout=10m",
    ):
        assert f"\n{line}\n" in draft.text
    assert draft.text.count("```") == 2


def test_markers_match_the_cited_numbers() -> None:
    draft = answer("Which UDP port and how do I restart the billing worker?", VPN, RUNBOOK)
    markers = [int(n) for n in re.findall(r"\[(\d+)\]", draft.text)]
    assert set(markers) == set(draft.cited) == {1, 2}
    assert list(dict.fromkeys(markers)) == list(draft.cited)


def test_at_most_three_picks() -> None:
    draft = answer("VPN VPN port restart worker label printing OPS-412", VPN, RUNBOOK, INCIDENT)
    blocks = draft.text.split("\n\n")[1:]
    assert 1 <= len(blocks) <= 3


def test_no_overlap_still_shows_the_top_passage() -> None:
    draft = answer("Quarterly revenue figures?", INCIDENT, VPN)
    assert draft.mode == "extractive"
    assert draft.cited == (1,)
    assert quoted(draft)[0].endswith("[1]")


def test_long_prose_is_shortened_but_code_is_not() -> None:
    long_sentence = "The token rotation " + "really " * 120 + "happens on Sundays."
    draft = answer("When does token rotation happen?", passage(1, "Tokens", long_sentence))
    [line] = quoted(draft)
    assert line.endswith(" … [1]")
    assert len(line) < 450


@pytest.mark.parametrize("passages", [(), [passage(1, "Empty", "   ")]])
def test_nothing_to_quote_is_no_sources(passages: tuple[Passage, ...]) -> None:
    draft = ExtractiveAnswerer().answer("Anything about parental leave?", passages)
    assert draft == Draft(NO_SOURCES_TEXT, (), "no_sources")
    assert draft.text == (
        "I couldn't find anything about that in the indexed Confluence spaces and Jira projects."
    )
