"""The report as a PDF: fpdf2 (pure Python) with the DejaVu fonts matplotlib ships, so it works from a fresh
`make install` with no system libraries. Content: the title, the charts (the e-mail's PNGs) and the plain-text
part, which lays every section out as aligned columns."""

import io
import os

from fpdf import FPDF

from apps.reports.models import MonthlyReport
from apps.reports.rendering import render


def _font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def report_pdf(report: MonthlyReport) -> bytes:
    rendered = render(report, inline="data")
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    fonts = _font_dir()
    pdf.add_font("DejaVu", "", os.path.join(fonts, "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", os.path.join(fonts, "DejaVuSans-Bold.ttf"))
    pdf.add_font("DejaVuMono", "", os.path.join(fonts, "DejaVuSansMono.ttf"))
    pdf.set_title(rendered.subject)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.multi_cell(0, 8, rendered.subject, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    for image in rendered.images:
        pdf.image(io.BytesIO(image.png), w=170)
        pdf.ln(2)
    pdf.add_page()
    pdf.set_font("DejaVuMono", "", 7.5)
    for line in rendered.text.splitlines():
        pdf.multi_cell(0, 3.6, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
