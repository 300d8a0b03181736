import struct
from decimal import Decimal

from spendctl.common.charts import ChartSpec, Series

SPEC = ChartSpec(
    title="Spend per day",
    labels=["1 Nov", "2 Nov", "3 Nov"],
    series=[
        Series("Support", [Decimal("12.50"), Decimal("3.10"), None]),
        Series("Budget", [Decimal("10"), Decimal("20"), Decimal("30")], kind="line", dashed=True),
    ],
    y_label="USD",
)


def test_chartjs_form_keeps_decimals_as_strings():
    data = SPEC.to_chartjs()
    assert data["labels"] == ["1 Nov", "2 Nov", "3 Nov"]
    assert data["datasets"][0]["data"] == ["12.50", "3.10", None]
    assert data["datasets"][1]["type"] == "line" and data["datasets"][1]["borderDash"] == [6, 4]


def test_png_form_is_a_real_png_of_the_requested_size():
    png = SPEC.to_png(width_px=600, height_px=280)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (600, 280)
    assert len(png) > 5_000  # it drew something, not an empty canvas
