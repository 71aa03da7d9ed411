"""Server-side SVG charts: well-formed, accessible, proportional, escaped, with a readable data table."""

import xml.etree.ElementTree as ET

from mercari_ops.common.charts import bar_chart, hbar_chart, line_chart
from mercari_ops.common.formatting import yen

SVG = "{http://www.w3.org/2000/svg}"


def parse(html) -> ET.Element:
    return ET.fromstring(str(html))  # raises if the output is not well-formed XML


def bars(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}rect") if el.get("class") == "bar"]


def table_rows(root: ET.Element) -> list[list[str]]:
    return [["".join(cell.itertext()) for cell in row] for row in root.iter("tr")]


def test_bar_heights_are_proportional_to_values_and_share_one_baseline():
    root = parse(bar_chart(["Regular (10)", "Silver (20)", "Gold (30)"], [("Points", [100, 300, 0])],
                           title="Points by stage", y_label="points"))
    heights = [float(b.get("height")) for b in bars(root)]
    assert [b.get("data-value") for b in bars(root)] == ["100", "300", "0"]
    assert heights[0] > 0 and abs(heights[1] / heights[0] - 3) < 0.01 and heights[2] == 0
    bottoms = {round(float(b.get("y")) + float(b.get("height")), 1) for b in bars(root)}
    assert len(bottoms) == 1


def test_grouped_bars_side_by_side_and_stacked_bars_on_top_of_each_other():
    grouped = bars(parse(bar_chart(["a"], [("x", [10]), ("y", [30])], title="t", y_label="n")))
    assert float(grouped[0].get("x")) < float(grouped[1].get("x"))
    assert abs(float(grouped[1].get("height")) / float(grouped[0].get("height")) - 3) < 0.01
    stacked = bars(parse(bar_chart(["a"], [("x", [10]), ("y", [30])], title="t", y_label="n", stacked=True)))
    assert stacked[0].get("x") == stacked[1].get("x")
    lower, upper = stacked
    assert abs(float(upper.get("y")) + float(upper.get("height")) - float(lower.get("y"))) < 0.2  # y sits on x


def test_accessible_title_desc_and_data_table_with_thousands_separators():
    html = line_chart([("Points granted", [1200, 45000, None])], title="Points per day", y_label="points",
                      x_labels=["12-01", "12-02", "12-03"], limit=("Cap", 50000))
    root = parse(html)
    svg = root.find(f"{SVG}svg")
    assert svg.get("role") == "img"
    title_id, desc_id = svg.get("aria-labelledby").split()
    assert svg.find(f"{SVG}title").get("id") == title_id and svg.find(f"{SVG}title").text == "Points per day"
    assert "Cap: 50,000" in svg.find(f"{SVG}desc").text
    assert table_rows(root) == [["", "Points granted"], ["12-01", "1,200"], ["12-02", "45,000"], ["12-03", "—"],
                                ["Cap", "50,000"]]
    assert "points" in [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "axis-label"]


def test_line_breaks_at_missing_values_and_points_sit_at_their_value():
    root = parse(line_chart([("s", [0, 100, None, 50])], title="t", y_label="n", x_labels=list("abcd")))
    lines = [el for el in root.iter(f"{SVG}polyline")]
    assert len(lines) == 2  # a gap at the missing value
    ys = [float(c.get("cy")) for c in root.iter(f"{SVG}circle")]
    zero, hundred, fifty = ys
    assert abs((zero - fifty) / (zero - hundred) - 0.5) < 0.01


def test_threshold_and_limit_lines_are_drawn_at_their_value_with_labels():
    root = parse(line_chart({"Sales": [10_000, 80_000]}, title="t", y_label="yen", x_labels=["2026-01", "2026-02"],
                            thresholds=[("Silver (20)", 50_000)], limit=100_000, value_format=yen))
    refs = [el for el in root.iter(f"{SVG}line") if el.get("class") == "reference"]
    assert len(refs) == 2
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "Silver (20): ¥50,000" in texts and "limit: ¥100,000" in texts
    circles = [float(c.get("cy")) for c in root.iter(f"{SVG}circle")]
    silver_y = float(refs[0].get("y1"))
    assert circles[1] < silver_y < circles[0]  # 80,000 above the line, 10,000 below (SVG y grows downwards)
    assert max(float(t.get("y1")) for t in refs) <= 240


def test_every_label_is_escaped():
    evil = '<script>alert("x")</script> & co'
    html = str(hbar_chart([(evil, 5)], title=evil, x_label=evil, extra_columns=[(evil, [evil])]))
    assert "<script>" not in html
    root = parse(html)
    assert root.find(f"{SVG}svg").find(f"{SVG}title").text == evil
    assert table_rows(root) == [["", evil, evil], [evil, "5", evil]]


def test_hbar_lengths_proportional_with_value_labels_and_extra_columns():
    root = parse(hbar_chart([("Unknown merchant", 263), ("Channel", 4284), ("Amount", 0)], title="Excluded lines",
                            x_label="lines", extra_columns=[("Amount", ["¥12,000", "¥3,456,789", "¥0"])]))
    widths = [float(b.get("width")) for b in bars(root)]
    assert abs(widths[1] / widths[0] - 4284 / 263) < 0.05 and widths[2] == 0
    values = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "value"]
    assert values == ["263", "4,284", "0"]
    assert table_rows(root)[2] == ["Channel", "4,284", "¥3,456,789"]


def test_empty_data_still_renders_a_valid_chart():
    for html in (line_chart([], title="t", y_label="n", x_labels=[]), bar_chart([], [], title="t", y_label="n"),
                 hbar_chart([], title="t", x_label="n")):
        root = parse(html)
        assert "No data" in "".join(root.find(f"{SVG}svg").itertext())
