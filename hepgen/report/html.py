"""A self-contained HTML report per evaluation (jinja2 template + plots beside it)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from hepgen import __version__


def render_report(path: str | Path, template: str = "evaluation.html", **context) -> Path:
    """Render ``templates/<template>`` with ``context`` into ``path``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hepgen.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    html = env.get_template(template).render(
        version=__version__, created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), **context
    )
    path = Path(path)
    path.write_text(html)
    return path
