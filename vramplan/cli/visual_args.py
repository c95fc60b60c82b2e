"""``--html FILE`` and ``--png DIR`` for estimate, plan and doctor: render everything, then write.

Each command passes functions that render its report; nothing is written unless every requested
rendering succeeded (a missing matplotlib, say, leaves no half-written HTML behind).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError


def add_visual_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--html`` and ``--png``."""
    g = parser.add_argument_group("pictures")
    g.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (charts inline, no network)")
    g.add_argument("--png", metavar="DIR", help='also write the charts as PNG files into DIR (needs "vramplan[plot]")')


def write_visuals(
    args: argparse.Namespace,
    html: Callable[[], str],
    pngs: Callable[[], Mapping[str, bytes]],
) -> None:
    """Render what ``--html``/``--png`` ask for, then write the files (messages on stderr)."""
    html_path = getattr(args, "html", None)
    png_dir = getattr(args, "png", None)
    if not html_path and not png_dir:
        return
    if html_path and not Path(html_path).parent.exists():
        raise VramplanError(f"--html {html_path}: folder {Path(html_path).parent} does not exist; create it first")
    page = html() if html_path else None
    images = pngs() if png_dir else None
    if images is not None:
        from ..report.plots import write_pngs

        for path in write_pngs(images, png_dir):
            sys.stderr.write(f"wrote {path}\n")
    if page is not None:
        Path(html_path).write_text(page, encoding="utf-8")
        sys.stderr.write(f"wrote {html_path}\n")


def write_estimate_visuals(args: argparse.Namespace, est: Any, model_ref: str | None = None) -> None:
    """``--html``/``--png`` of ``vramplan estimate``."""

    def html() -> str:
        from ..report.html import render_estimate_html

        return render_estimate_html(est, model_ref)

    def pngs() -> Mapping[str, bytes]:
        from ..report.charts import estimate_charts
        from ..report.plots import render_pngs

        return render_pngs(estimate_charts(est))

    write_visuals(args, html, pngs)


def write_plan_visuals(args: argparse.Namespace, result: Any, model_ref: str | None = None,
                       nearest: Sequence[Any] = (), sizing: Sequence[Any] = ()) -> None:
    """``--html``/``--png`` of ``vramplan plan`` (your setup beside the ranked plans; with ``--compare``, the
    GPUs needed per type too)."""

    def html() -> str:
        from ..report.html_plan import render_plan_html

        return render_plan_html(result, model_ref, nearest, sizing=sizing)

    def pngs() -> Mapping[str, bytes]:
        from ..report.charts import plan_charts
        from ..report.plots import render_pngs

        images = render_pngs(plan_charts(result))
        images.update(_sizing_png(sizing))
        return images

    write_visuals(args, html, pngs)


def _sizing_png(rows: Sequence[Any]) -> dict[str, bytes]:
    """``sizing.png`` when at least one GPU type has a count that fits (no empty chart otherwise)."""
    from ..report.charts import sizing_chart
    from ..report.plots import render_chart_png

    chart = sizing_chart(rows)
    return {"sizing.png": render_chart_png(chart)} if chart.bars else {}


def write_sizing_visuals(args: argparse.Namespace, rows: Sequence[Any], global_batch: int, start: Any,
                         model_ref: str | None = None) -> None:
    """``--html``/``--png`` of ``vramplan plan --gpu-type T`` / ``--compare a,b`` without ``--gpus``."""

    def html() -> str:
        from ..report.html_plan import render_sizing_html

        return render_sizing_html(rows, global_batch, start, model_ref)

    def pngs() -> Mapping[str, bytes]:
        images = _sizing_png(rows)
        if not images:
            raise VramplanError("--png: no GPU type has a count that fits, so there is no chart to draw; "
                                "raise --max-gpus or allow more methods (--method any)")
        return images

    write_visuals(args, html, pngs)


def write_doctor_visuals(args: argparse.Namespace, report: Any) -> None:
    """``--html``/``--png`` of ``vramplan doctor`` (your setup beside the prescribed fixes)."""

    def html() -> str:
        from ..report.html_doctor import render_doctor_html

        return render_doctor_html(report)

    def pngs() -> Mapping[str, bytes]:
        from ..report.charts import doctor_charts
        from ..report.plots import render_pngs

        return render_pngs(doctor_charts(report))

    write_visuals(args, html, pngs)
