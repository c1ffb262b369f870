"""Tables of results and highlighted sources, as the lessons show them."""

import pytest

from unet_course.viz import Table, show_source


def test_table_aligns_numbers_right_and_text_left_in_both_faces():
    table = Table([["U-Net", 32898, 18.83], ["UNet++", 7, 2.5]], ["net", "parameters", "MMACs"],
                  title="nets", digits=1)
    assert repr(table).splitlines() == [
        "nets",
        "net     parameters  MMACs",
        "------  ----------  -----",
        "U-Net       32,898   18.8",
        "UNet++           7    2.5",
    ]
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and "<caption>nets</caption>" in html
    assert '<td style="text-align:right">32,898</td>' in html
    assert '<td style="text-align:left">UNet++</td>' in html


def test_table_escapes_html_and_refuses_ragged_rows():
    assert "&lt;b&gt;" in Table([["<b>"]], ["x"])._repr_html_()
    with pytest.raises(ValueError, match="row 1 has 1 values, header has 2"):
        Table([[1, 2], [3]], ["a", "b"])
    with pytest.raises(ValueError, match="at least one column"):
        Table([], [])


def _documented(x):
    """A docstring with ``reST`` markup.

    More of it.
    """
    return x + 1  # a comment stays


def test_show_source_leaves_out_the_docstring_only():
    code = show_source(_documented).data
    assert "reST" not in code and "More of it" not in code
    assert code.startswith("def _documented(x):\n") and "# a comment stays" in code
    assert "``reST``" in show_source(_documented, docstring=True).data
    assert show_source(_documented, Table.__repr__).data.count("\ndef ") == 1
    with pytest.raises(ValueError, match="at least one"):
        show_source()
