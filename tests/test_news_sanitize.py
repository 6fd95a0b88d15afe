"""Feed HTML through the allow-list sanitiser and into plain-text blocks."""

from __future__ import annotations

from bulletin.news.sanitize import html_to_content, html_to_text, sanitize_html


def test_allow_list_removes_scripts_styles_frames_events_and_javascript_links() -> None:
    dirty = (
        '<p onclick="x()" style="color:red">Hi <script>alert(1)</script><b>there</b></p>'
        '<style>p{}</style><iframe src="https://evil.example.com"></iframe>'
        '<a href="javascript:alert(1)">bad</a><a href="https://ok.example.org/" onmouseover="x()">ok</a>'
        '<img src="https://img.example.org/a.png" onerror="x()" alt="A">'
    )

    clean = sanitize_html(dirty)

    for needle in ("script", "alert", "onclick", "style", "iframe", "javascript", "onmouseover", "onerror"):
        assert needle not in clean
    assert '<a href="https://ok.example.org/">ok</a>' in clean
    assert "<b>there</b>" in clean


def test_html_becomes_paragraphs_lists_headings_and_links() -> None:
    html = (
        "<p>First line<br>same paragraph<br><br>new paragraph.</p>"
        "<h3>Programme</h3><ol><li>Opening</li><li>Panel with <a href='/panel'>speakers</a></li></ol>"
        "<p><a href='https://example.org/register'>Register now</a></p>"
        "<p>Write to <a href='mailto:info@example.org'>info@example.org</a>.</p>"
        "<div>Loose text in a div</div>"
    )

    content = html_to_content(html, "https://example.org/news/item")

    assert content.blocks == [
        {"type": "paragraph", "text": "First line same paragraph"},
        {"type": "paragraph", "text": "new paragraph."},
        {"type": "heading", "text": "Programme"},
        {"type": "list", "items": ["Opening", "Panel with speakers"]},
        {"type": "link", "url": "https://example.org/panel", "label": "speakers"},
        {"type": "link", "url": "https://example.org/register", "label": "Register now"},
        {"type": "paragraph", "text": "Write to info@example.org."},
        {"type": "paragraph", "text": "Loose text in a div"},
    ]


def test_titles_lose_markup_entities_and_line_breaks() -> None:
    assert html_to_text("Youth &amp; <em>schools</em>\r\n<script>x</script>now") == "Youth & schools now"
