"""Bibliography labels that read like the book's author-year citations.

The book cites with ``bibtex_reference_style: author_year``, so the text says
"Ronneberger *et al.*, 2015". pybtex's own styles label the entries of the bibliography with
codes ("RFB15") or numbers, which a reader cannot match with the text. This Sphinx extension
registers, with pybtex's plugin registry (the way sphinxcontrib-bibtex documents for custom
labels):

* a label style ``author_year``: "Ronneberger et al., 2015", "Ioffe and Szegedy, 2015",
  "Long et al., 2015" -- the first author's last name, "and" the second one's for two authors,
  "et al." for three or more, then the year, as sphinxcontrib-bibtex writes a parenthetical
  author-year citation; entries that would share a label get "2015a", "2015b";
* a formatting style ``author_year``: pybtex's ``alpha`` (entries sorted by author, year,
  title) with those labels.

``_config.yml`` loads it through ``sphinx.local_extensions`` and selects it with
``bibtex_default_style: author_year``.
"""

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    """Prefix and last names ("Le Folgoc", "Cireşan"), LaTeX accents turned into text."""
    parts = person.rich_prelast_names + person.rich_last_names
    return " ".join(part.render_as("text") for part in parts)


def _who(entry) -> str:
    for role in ("author", "editor"):
        persons = entry.persons.get(role)
        if persons:
            names = [_last_name(p) for p in persons]
            if len(names) == 1:
                return names[0]
            if len(names) == 2:
                return f"{names[0]} and {names[1]}"
            return f"{names[0]} et al."
    if "title" in entry.fields:
        return Text.from_latex(entry.fields["title"]).render_as("text")
    return entry.key


def author_year_label(entry) -> str:
    year = entry.fields.get("year", "n.d.")
    return f"{_who(entry)}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Author et al., YEAR", made unique with a letter after the year if needed."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(entry) for entry in entries]
        shared = {label for label, n in Counter(labels).items() if n > 1}
        seen = Counter()
        for label in labels:
            if label in shared:
                yield label + ascii_lowercase[seen[label] % 26]
                seen[label] += 1
            else:
                yield label


class AuthorYearStyle(AlphaStyle):
    """pybtex's alpha formatting and sorting, with author-year labels."""

    default_label_style = "author_year"


def setup(app):
    # register_plugin returns False (and keeps the first class) if the name is taken already,
    # e.g. when Sphinx sets the extension up a second time in one process.
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
