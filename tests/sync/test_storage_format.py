"""Confluence storage format -> plain text."""

from __future__ import annotations

from sync.storage_format import storage_to_text


def test_empty_or_blank_input_gives_empty_text() -> None:
    assert storage_to_text("") == ""
    assert storage_to_text("  \n ") == ""


def test_headings_become_markdown_headings_and_paragraphs_are_separated() -> None:
    xhtml = "<h1>Runbook</h1><p>Intro</p><h3>Restart <em>the</em> service</h3><p>Do it.</p>"
    assert storage_to_text(xhtml) == "# Runbook\n\nIntro\n\n### Restart the service\n\nDo it."


def test_line_breaks_inside_a_paragraph_are_kept() -> None:
    assert storage_to_text("<p>first<br/>second<br />third</p>") == "first\nsecond\nthird"


def test_entities_and_nbsp_are_decoded_to_plain_spaces() -> None:
    text = storage_to_text("<p>a&nbsp;b &amp; c&nbsp;&copy;&nbsp;2024&hellip;</p>")
    assert text == "a b & c © 2024…"


def test_whitespace_is_normalised() -> None:
    xhtml = "\n\n<p>  one   two  </p>\n\n\n<p></p><p> </p>\n<p>three\n   four</p>   \n"
    assert storage_to_text(xhtml) == "one two\n\nthree four"


def test_code_macro_keeps_cdata_verbatim_in_a_fenced_block() -> None:
    code = 'if a < b && c > 0:\n    print("<b>&amp;</b>")\n\n    return a -> b'
    xhtml = (
        '<ac:structured-macro ac:name="code" ac:schema-version="1">'
        '<ac:parameter ac:name="language">python</ac:parameter>'
        f"<ac:plain-text-body><![CDATA[{code}]]></ac:plain-text-body>"
        "</ac:structured-macro>"
    )
    assert storage_to_text(xhtml) == f"```python\n{code}\n```"


def test_cdata_split_around_its_closing_marker_is_rejoined() -> None:
    xhtml = (
        '<ac:structured-macro ac:name="code"><ac:plain-text-body>'
        "<![CDATA[x = a[b[0]]]]><![CDATA[> 1]]></ac:plain-text-body></ac:structured-macro>"
    )
    assert storage_to_text(xhtml) == "```\nx = a[b[0]]> 1\n```"


def test_code_containing_a_fence_gets_a_longer_fence() -> None:
    xhtml = (
        '<ac:structured-macro ac:name="code"><ac:plain-text-body>'
        "<![CDATA[```md\nhi\n```]]></ac:plain-text-body></ac:structured-macro><p>after</p>"
    )
    assert storage_to_text(xhtml) == "````\n```md\nhi\n```\n````\n\nafter"


def test_code_macro_wrapped_in_a_paragraph_is_still_a_block() -> None:
    xhtml = (
        '<p>Run:<ac:structured-macro ac:name="noformat"><ac:plain-text-body>'
        "<![CDATA[make  all]]></ac:plain-text-body></ac:structured-macro></p>"
    )
    assert storage_to_text(xhtml) == "Run:\n\n```\nmake  all\n```"


def test_nested_lists_are_indented_under_their_parent_item() -> None:
    xhtml = (
        '<ul><li><p>Prepare</p><ol start="3"><li>Backup</li><li>Drain</li></ol></li>'
        "<li>Deploy<ul><li>Canary</li></ul></li></ul>"
    )
    assert storage_to_text(xhtml) == ("- Prepare\n  3. Backup\n  4. Drain\n- Deploy\n  - Canary")


def test_a_list_nested_directly_in_a_list_keeps_its_items() -> None:
    xhtml = "<ul><li>parent</li><ul><li>child</li></ul><li>next</li></ul>"
    assert storage_to_text(xhtml) == "- parent\n  - child\n- next"


def test_table_rows_keep_their_column_headers() -> None:
    xhtml = (
        "<table><tbody><tr><th>Service</th><th>Owner</th><th>Port</th></tr>"
        "<tr><td><p>billing</p></td><td>Team <strong>A</strong></td><td>8080</td></tr>"
        "<tr><td>search</td><td></td><td>9200</td></tr></tbody></table>"
    )
    assert storage_to_text(xhtml) == (
        "Service: billing | Owner: Team A | Port: 8080\nService: search | Port: 9200"
    )


def test_table_without_header_row_keeps_empty_cells_in_place() -> None:
    xhtml = "<table><tr><td>a</td><td></td><td>c</td></tr><tr><td>d</td><td>e</td></tr></table>"
    assert storage_to_text(xhtml) == "a | | c\nd | e"


def test_merged_cells_do_not_shift_the_columns_after_them() -> None:
    xhtml = (
        "<table><tr><th>Env</th><th>Host</th><th>Port</th></tr>"
        '<tr><td rowspan="2">prod</td><td>db1</td><td>5432</td></tr>'
        "<tr><td>db2</td><td>5433</td></tr>"
        '<tr><td colspan="2">staging (shared)</td><td>6543</td></tr></table>'
    )
    assert storage_to_text(xhtml) == (
        "Env: prod | Host: db1 | Port: 5432\n"
        "Env: prod | Host: db2 | Port: 5433\n"
        "Env: staging (shared) | Port: 6543"
    )


def test_info_note_warning_tip_and_panel_macros_become_labelled_blocks() -> None:
    def macro(name: str, body: str, title: str = "") -> str:
        param = f'<ac:parameter ac:name="title">{title}</ac:parameter>' if title else ""
        return (
            f'<ac:structured-macro ac:name="{name}">{param}'
            f"<ac:rich-text-body>{body}</ac:rich-text-body></ac:structured-macro>"
        )

    xhtml = (
        macro("note", "<p>Back up first.</p><p>Really.</p>")
        + macro("warning", "<p>Irreversible.</p>", title="Danger zone")
        + macro("tip", "<ul><li>Use the CLI</li></ul>")
        + macro("panel", "<p>Custom</p>")
    )
    assert storage_to_text(xhtml) == (
        "Note: Back up first.\nReally.\n\n"
        "Warning: Danger zone\nIrreversible.\n\n"
        "Tip:\n- Use the CLI\n\n"
        "Panel: Custom"
    )


def test_expand_macro_renders_title_then_body() -> None:
    xhtml = (
        '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">Details'
        "</ac:parameter><ac:rich-text-body><p>Hidden text</p></ac:rich-text-body>"
        "</ac:structured-macro>"
    )
    assert storage_to_text(xhtml) == "Details\n\nHidden text"


def test_status_macro_renders_its_title_inline() -> None:
    xhtml = (
        '<p>State: <ac:structured-macro ac:name="status"><ac:parameter ac:name="colour">Green'
        '</ac:parameter><ac:parameter ac:name="title">Done</ac:parameter>'
        "</ac:structured-macro> today</p>"
    )
    assert storage_to_text(xhtml) == "State: [STATUS: Done] today"


def test_toc_anchor_and_parameter_only_macros_leave_no_text() -> None:
    xhtml = (
        '<ac:structured-macro ac:name="toc"><ac:parameter ac:name="outline">clear'
        "</ac:parameter></ac:structured-macro>"
        '<h2><ac:structured-macro ac:name="anchor"><ac:parameter ac:name="">top'
        "</ac:parameter></ac:structured-macro>Top</h2>"
        '<ac:structured-macro ac:name="children"><ac:parameter ac:name="all">true'
        "</ac:parameter></ac:structured-macro><p>end</p>"
    )
    assert storage_to_text(xhtml) == "## Top\n\nend"


def test_jira_macro_renders_the_issue_key() -> None:
    xhtml = (
        '<p>See <ac:structured-macro ac:name="jira"><ac:parameter ac:name="key">OPS-42'
        "</ac:parameter></ac:structured-macro>.</p>"
    )
    assert storage_to_text(xhtml) == "See OPS-42."


def test_task_list_items_show_their_state() -> None:
    xhtml = (
        "<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>complete"
        "</ac:task-status><ac:task-body>Write <strong>docs</strong></ac:task-body></ac:task>"
        "<ac:task><ac:task-id>2</ac:task-id><ac:task-status>incomplete</ac:task-status>"
        "<ac:task-body>Ship it</ac:task-body></ac:task></ac:task-list>"
    )
    assert storage_to_text(xhtml) == "- [x] Write docs\n- [ ] Ship it"


def test_page_and_attachment_links_render_their_title_or_file_name() -> None:
    xhtml = (
        '<p><ac:link><ri:page ri:space-key="ENG" ri:content-title="Deploy Guide"/></ac:link>'
        ' and <ac:link><ri:page ri:content-title="Runbook"/><ac:plain-text-link-body>'
        "<![CDATA[the runbook]]></ac:plain-text-link-body></ac:link>"
        ' and <ac:link><ri:attachment ri:filename="plan.pdf"/></ac:link>'
        ' and <ac:link ac:anchor="faq"><ac:link-body>FAQ</ac:link-body></ac:link></p>'
    )
    assert storage_to_text(xhtml) == ("Deploy Guide and the runbook (Runbook) and plan.pdf and FAQ")


def test_user_links_use_the_display_name_lookup() -> None:
    xhtml = (
        '<p><ac:link><ri:user ri:account-id="557058:abc"/></ac:link>, '
        '<ac:link><ri:user ri:userkey="ff80"/></ac:link>, '
        '<ac:link><ri:user ri:account-id="gone"/></ac:link></p>'
    )
    names = {"557058:abc": "Ada Lovelace", "ff80": "Grace Hopper"}
    assert storage_to_text(xhtml, user_name=names.get) == "@Ada Lovelace, @Grace Hopper, @user"
    assert storage_to_text(xhtml) == "@user, @user, @user"


def test_external_links_keep_their_url_and_internal_ones_only_their_text() -> None:
    xhtml = (
        '<p><a href="https://grafana.example.com/d/1">dashboard</a>, '
        '<a href="#setup">setup</a>, <a href="https://x.io">https://x.io</a></p>'
    )
    assert storage_to_text(xhtml) == (
        "dashboard (https://grafana.example.com/d/1), setup, https://x.io"
    )


def test_emoticons_render_their_fallback_or_name() -> None:
    xhtml = (
        '<p><ac:emoticon ac:name="smile" ac:emoji-fallback="🙂"/> ok '
        '<ac:emoticon ac:name="tick"/></p>'
    )
    assert storage_to_text(xhtml) == "🙂 ok :tick:"


def test_images_render_alt_text_or_file_name() -> None:
    xhtml = (
        '<p><ac:image ac:alt="Architecture"><ri:attachment ri:filename="arch.png"/></ac:image>'
        '</p><p><ac:image><ri:attachment ri:filename="flow.svg"/></ac:image></p>'
        '<p><ac:image><ri:url ri:value="https://cdn.example.com/img/logo%20big.png"/>'
        "</ac:image></p>"
    )
    assert storage_to_text(xhtml) == "Architecture\n\nflow.svg\n\nlogo big.png"


def test_blockquote_rule_and_time_elements() -> None:
    xhtml = '<blockquote><p>quoted</p></blockquote><hr/><p>Due <time datetime="2024-05-01"/></p>'
    assert storage_to_text(xhtml) == "> quoted\n\n---\n\nDue 2024-05-01"


def test_comments_and_placeholders_are_not_content() -> None:
    xhtml = "<p>kept<!-- hidden --></p><p><ac:placeholder>Type here</ac:placeholder></p>"
    assert storage_to_text(xhtml) == "kept"


def test_xml_declaration_and_file_like_bodies_raise_no_bs4_warnings() -> None:
    # pytest runs with -W error, so a stray XMLParsedAsHTMLWarning would fail here.
    assert storage_to_text('<?xml version="1.0"?><p>body</p>') == "body"
    assert storage_to_text("notes.txt") == "notes.txt"


def test_pathologically_deep_nesting_keeps_the_text() -> None:
    xhtml = "<div>" * 5000 + "deep words" + "</div>" * 5000
    assert "deep words" in storage_to_text(xhtml)


def test_cells_in_a_thead_are_headers_even_when_written_as_td() -> None:
    xhtml = "<table><thead><tr><td>Name</td></tr></thead><tbody><tr><td>x</td></tr></tbody></table>"
    assert storage_to_text(xhtml) == "Name: x"


def test_nested_tables_stay_inside_their_cell_and_captions_are_kept() -> None:
    xhtml = (
        "<table><caption>Hosts</caption><tr><th>Name</th><th>Ports</th></tr>"
        "<tr><td>web</td><td><table><tr><td>80</td><td>443</td></tr></table></td></tr>"
        "</table>"
    )
    assert storage_to_text(xhtml) == "Hosts\n\nName: web | Ports: 80 | 443"
