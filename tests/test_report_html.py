"""report.md to HTML: the Markdown subset of the reports (headings, tables, images, links, code)."""

from suite.report.html import markdown_to_html


def test_report_markdown_becomes_html():
    page = markdown_to_html("# Title\n\nText with `code` and [a link](x.csv) & <b>.\n\n"
                            "| a | b \\| c |\n| --- | --- |\n| 1 | 2 |\n\n![fig](figures/f.png)\n\n"
                            "```sh\nmake report | tee log\n```\n")
    assert "<h1>Title</h1>" in page
    assert "<code>code</code>" in page and '<a href="x.csv">a link</a>' in page and "&amp; &lt;b&gt;" in page
    assert "<th>a</th><th>b | c</th>" in page and "<td>1</td><td>2</td>" in page and "---" not in page
    assert '<img alt="fig" src="figures/f.png">' in page
    assert "<pre>make report | tee log</pre>" in page
