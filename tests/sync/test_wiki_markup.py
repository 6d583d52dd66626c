"""Jira wiki markup -> plain text."""

from __future__ import annotations

from sync.wiki_markup import wiki_to_text


def test_none_and_blank_markup_give_empty_text() -> None:
    assert wiki_to_text(None) == ""
    assert wiki_to_text(" \n ") == ""


def test_headings_become_markdown_headings() -> None:
    assert wiki_to_text("h1. Outage *report*\nbody\nh3.Cause") == (
        "# Outage report\n\nbody\n\n### Cause"
    )


def test_text_effects_are_stripped_but_identifiers_and_dates_are_not() -> None:
    markup = (
        "*bold* _italic_ -gone- +under+ ^sup^ ~sub~ ??cite?? {{mono_space}} "
        "snake_case_name well-known 2020-01-29 2*3*4"
    )
    assert wiki_to_text(markup) == (
        "bold italic gone under sup sub cite mono_space snake_case_name well-known 2020-01-29 2*3*4"
    )


def test_code_and_noformat_blocks_are_fenced_verbatim() -> None:
    markup = (
        'Before\n{code:java}\nString s = "*not bold*"; // [link|x]\n  indented\n{code}\n'
        "{noformat}\n_raw_ {color:red}x{color}\n{noformat}\nAfter"
    )
    assert wiki_to_text(markup) == (
        'Before\n\n```java\nString s = "*not bold*"; // [link|x]\n  indented\n```\n\n'
        "```\n_raw_ {color:red}x{color}\n```\n\nAfter"
    )


def test_code_macro_parameters_give_language_and_title() -> None:
    markup = "{code:title=Setup.sh|language=bash|borderStyle=solid}echo hi{code}"
    assert wiki_to_text(markup) == "Setup.sh\n\n```bash\necho hi\n```"


def test_quote_and_bq_become_block_quotes() -> None:
    markup = "{quote}\nfirst *line*\n\nsecond\n{quote}\nbq. short one"
    assert wiki_to_text(markup) == "> first line\n>\n> second\n\n> short one"


def test_panel_becomes_a_labelled_block_with_its_title() -> None:
    markup = "{panel:title=Heads up|borderStyle=dashed}\nDeploy on *Monday*.\n{panel}\nnext"
    assert wiki_to_text(markup) == "Panel: Heads up\nDeploy on Monday.\n\nnext"


def test_color_macros_are_removed_and_their_text_kept() -> None:
    assert wiki_to_text("{color:#ff0000}red alert{color} now") == "red alert now"


def test_links_render_text_then_external_url() -> None:
    markup = (
        "[Runbook|https://wiki.example.com/runbook] [https://a.io] [#anchor] "
        "[Spec|^spec v2.pdf] [mailto:ops@example.com] [label|#section] [x] done"
    )
    assert wiki_to_text(markup) == (
        "Runbook (https://wiki.example.com/runbook) https://a.io anchor "
        "Spec (spec v2.pdf) ops@example.com label [x] done"
    )


def test_bare_urls_are_not_mangled_by_text_effects() -> None:
    url = "https://x.io/_a_/b-c-d/*e*"
    assert wiki_to_text(f"see {url} now") == f"see {url} now"


def test_mentions_use_the_display_name_lookup() -> None:
    markup = "[~jsmith] and [~accountid:5b10ac8d82e05b22cc7d4ef5] and [~accountid:nobody]"
    names = {"5b10ac8d82e05b22cc7d4ef5": "Ada Lovelace"}
    assert wiki_to_text(markup, user_name=names.get) == "@jsmith and @Ada Lovelace and @user"
    assert wiki_to_text(markup) == "@jsmith and @user and @user"


def test_table_rows_keep_their_column_headers() -> None:
    markup = (
        "||Service||Owner||Link||\n|billing|Team A|[dash|https://g.io/d]|\n|search| |none|\n\nafter"
    )
    assert wiki_to_text(markup) == (
        "Service: billing | Owner: Team A | Link: dash (https://g.io/d)\n"
        "Service: search | Link: none\n\nafter"
    )


def test_table_without_header_row_and_with_header_column() -> None:
    markup = "|a| |c|\n||Key|value|"
    assert wiki_to_text(markup) == "a | | c\nKey | value"


def test_table_cells_may_span_lines() -> None:
    assert wiki_to_text("||H1||H2||\n|one|two\nlines|") == "H1: one | H2: two lines"


def test_lists_are_nested_and_numbered() -> None:
    markup = "* top\n** child\n*# first\n*# second\n* next\n# one\n# two\n- dash"
    assert wiki_to_text(markup) == (
        "- top\n  - child\n  1. first\n  2. second\n- next\n1. one\n2. two\n- dash"
    )


def test_rule_line_breaks_and_images() -> None:
    markup = "top\n----\nline one\\\\line two !screen shot.png|thumbnail! !https://x.io/a/b.gif!"
    assert wiki_to_text(markup) == "top\n\n---\n\nline one\nline two screen shot.png b.gif"


def test_escaped_characters_are_unescaped() -> None:
    assert wiki_to_text(r"Proyecto privado \- no \*se\* puede \[asignar\]") == (
        "Proyecto privado - no *se* puede [asignar]"
    )


def test_unclosed_macros_and_odd_characters_keep_the_text() -> None:
    assert wiki_to_text("gfasg<dfa {code} never closed\nasd….") == (
        "gfasg<dfa {code} never closed\nasd…."
    )
