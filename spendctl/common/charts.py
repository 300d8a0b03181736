"""One chart description, two renderings: Chart.js in the browser (interactive) and a PNG for e-mail.

A selector builds a ChartSpec; a page passes `spec.to_chartjs()` through `json_script` and static/js/charts.js
draws it; an e-mail embeds `spec.to_png()` as an inline image. Values are Decimal in, float only for drawing.
"""

import io
from dataclasses import dataclass, field
from decimal import Decimal

PALETTE = ["#0f5f4a", "#2f80ed", "#f2994a", "#9b51e0", "#eb5757", "#27ae60", "#56ccf2", "#828282"]


@dataclass(frozen=True)
class Series:
    label: str
    values: list[Decimal | int | None]
    kind: str = "bar"  # bar | line
    dashed: bool = False


@dataclass(frozen=True)
class ChartSpec:
    title: str
    labels: list[str]
    series: list[Series] = field(default_factory=list)
    stacked: bool = False
    y_label: str = ""

    def to_chartjs(self) -> dict:
        datasets = []
        for i, s in enumerate(self.series):
            color = PALETTE[i % len(PALETTE)]
            datasets.append(
                {
                    "type": s.kind,
                    "label": s.label,
                    "data": [None if v is None else str(v) for v in s.values],
                    "backgroundColor": color,
                    "borderColor": color,
                    "borderDash": [6, 4] if s.dashed else [],
                    "pointRadius": 0 if s.kind == "line" else None,
                    "fill": False,
                }
            )
        return {
            "title": self.title,
            "labels": self.labels,
            "datasets": datasets,
            "stacked": self.stacked,
            "yLabel": self.y_label,
        }

    def to_png(self, *, width_px: int = 600, height_px: int = 280, dpi: int = 100) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        ax = fig.add_subplot()
        x = list(range(len(self.labels)))
        bottoms = [0.0] * len(x)
        bars = [s for s in self.series if s.kind == "bar"]
        width = 0.8 if self.stacked or len(bars) <= 1 else 0.8 / len(bars)
        for i, s in enumerate(self.series):
            color = PALETTE[i % len(PALETTE)]
            ys = [float(v) if v is not None else 0.0 for v in s.values]
            if s.kind == "line":
                ax.plot(x, ys, color=color, linestyle="--" if s.dashed else "-", label=s.label, linewidth=2)
            elif self.stacked:
                ax.bar(x, ys, bottom=bottoms, color=color, label=s.label, width=width)
                bottoms = [b + y for b, y in zip(bottoms, ys, strict=True)]
            else:
                offset = (bars.index(s) - (len(bars) - 1) / 2) * width
                ax.bar([xi + offset for xi in x], ys, color=color, label=s.label, width=width)
        ax.set_title(self.title, loc="left", fontsize=11)
        step = max(1, len(self.labels) // 8)
        ax.set_xticks(x[::step], [self.labels[i] for i in x[::step]], fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        if self.y_label:
            ax.set_ylabel(self.y_label, fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if len(self.series) > 1:
            ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
