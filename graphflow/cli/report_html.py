"""`report.html`: one self-contained page (inline SVG and CSS, no script, no network) that
draws the compiled graph with each fused kernel as a coloured box, beside the report text.

The markup is also well-formed XML (every element closed, no named entities), so tools
can parse it and browsers render it the same.
"""
from __future__ import annotations

from html import escape

from .graph_layout import Drawing

KERNEL_COLOURS = {  # kernel kind -> (fill, stroke); unknown kinds use "fused"
    "elementwise": ("#dbeafe", "#2563eb"),
    "reduction": ("#dcfce7", "#16a34a"),
    "row": ("#f3e8ff", "#9333ea"),
    "epilogue": ("#ffedd5", "#ea580c"),
    "fused": ("#e0f2fe", "#0284c7"),
}
ROLE_STYLES = {  # box role -> (fill, stroke, text colour)
    "op": ("#ffffff", "#475569", "#0f172a"),
    "feed": ("#fef9c3", "#ca8a04", "#713f12"),
    "fetch": ("#166534", "#14532d", "#ffffff"),
    "const": ("#f1f5f9", "#94a3b8", "#334155"),
    "variable": ("#e2e8f0", "#475569", "#1e293b"),
    "elided": ("#ffffff", "#94a3b8", "#64748b"),
}
STYLE_OF_CONTROL = ' stroke-dasharray="5 4" stroke-opacity="0.7"'
CSS = """
body { margin: 0; font: 14px/1.4 -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       color: #0f172a; background: #f8fafc; }
header { padding: 14px 22px; background: #0f172a; color: #f8fafc; }
header h1 { margin: 0 0 4px 0; font-size: 19px; font-weight: 600; }
header .sub { color: #cbd5e1; font-size: 13px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; padding: 12px 22px; background: #e2e8f0; }
.chip { background: #ffffff; border: 1px solid #cbd5e1; border-radius: 14px; padding: 3px 12px; font-size: 13px; }
.chip b { font-weight: 600; }
main { display: flex; gap: 16px; padding: 16px 22px; align-items: flex-start; }
.graph { flex: 0 1 auto; max-width: 68%; overflow: auto; max-height: 90vh; background: #ffffff;
         border: 1px solid #cbd5e1; border-radius: 8px; }
.graph svg { display: block; max-width: 100%; height: auto; }
.text { flex: 1 1 380px; min-width: 340px; }
.text pre { margin: 0; padding: 12px 14px; background: #ffffff; border: 1px solid #cbd5e1; border-radius: 8px;
            font: 12px/1.45 ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; overflow: auto;
            max-height: 84vh; white-space: pre-wrap; overflow-wrap: anywhere; }
.legend { display: flex; flex-wrap: wrap; gap: 10px; margin: 0 0 10px 0; font-size: 12px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend i { display: inline-block; width: 14px; height: 12px; border-radius: 3px; border: 2px solid; }
svg text { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; }
"""


def render_report_html(title: str, subtitle: str, chips: list, drawing: Drawing, report_text: str) -> str:
    """The whole page: header, summary chips, the drawing, a legend and the report text."""
    chip_html = "".join(f'<div class="chip">{escape(k)} <b>{escape(v)}</b></div>' for k, v in chips)
    return (
        '<!DOCTYPE html>\n<html lang="en" xmlns="http://www.w3.org/1999/xhtml">\n<head>\n'
        '<meta charset="utf-8"/>\n'
        f'<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
        f'<header><h1>{escape(title)}</h1><div class="sub">{escape(subtitle)}</div></header>\n'
        f'<div class="chips">{chip_html}</div>\n<main>\n'
        f'<div class="graph">{render_svg(drawing)}</div>\n'
        f'<div class="text">{_legend(drawing)}<pre>{escape(report_text)}</pre></div>\n'
        '</main>\n</body>\n</html>\n')


def _legend(drawing: Drawing) -> str:
    kinds = sorted({c.kind for c in drawing.clusters.values()})
    items = [(f"{k} kernel", *_kernel_colours(k)) for k in kinds]
    items += [("placeholder (feed)", *ROLE_STYLES["feed"][:2]), ("fetch", *ROLE_STYLES["fetch"][:2]),
              ("op left unfused", *ROLE_STYLES["op"][:2])]
    control = ('<span><svg width="26" height="10"><path d="M 1 5 L 25 5" stroke="#64748b" stroke-width="1.4"'
               f'{STYLE_OF_CONTROL}/></svg>control dependency</span>' if drawing.control_edges else "")
    spans = "".join(f'<span><i style="background:{fill};border-color:{stroke}"></i>{escape(label)}</span>'
                    for label, fill, stroke in items)
    return f'<div class="legend">{spans}{control}</div>'


def _kernel_colours(kind: str) -> tuple:
    return KERNEL_COLOURS.get(kind, KERNEL_COLOURS["fused"])


def render_svg(drawing: Drawing) -> str:
    """The drawing as one inline <svg>: kernel boxes, edges, kernel titles, then op boxes on top."""
    w, h = max(drawing.width, 200), max(drawing.height, 80)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
             f'viewBox="0 0 {w:.0f} {h:.0f}" style="min-width:{w * 0.6:.0f}px" role="img" aria-label="compiled graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#64748b"/></marker></defs>']
    for c in drawing.clusters.values():
        fill, stroke = _kernel_colours(c.kind)
        parts.append(f'<rect x="{c.x:.1f}" y="{c.y:.1f}" width="{c.w:.1f}" height="{c.h:.1f}" rx="10" '
                     f'fill="{fill}" stroke="{stroke}" stroke-width="2"><title>{_cluster_tooltip(c)}</title></rect>')
    for a, b in drawing.edges:
        parts.append(_edge(drawing.boxes[a], drawing.boxes[b]))
    for a, b in drawing.control_edges:
        parts.append(_edge(drawing.boxes[a], drawing.boxes[b], control=True))
    for c in drawing.clusters.values():  # titles above the edges, haloed in the kernel's colour
        fill, stroke = _kernel_colours(c.kind)
        halo = f'fill="{stroke}" stroke="{fill}" stroke-width="4" paint-order="stroke"'
        parts.append(f'<g><title>{_cluster_tooltip(c)}</title>'
                     f'<text x="{c.x + 12:.1f}" y="{c.y + 19:.1f}" font-size="13" font-weight="600" {halo}>'
                     f'{escape(_clip(c.name, int(c.w / 7.4)))}</text>'
                     f'<text x="{c.x + 12:.1f}" y="{c.y + 34:.1f}" font-size="11" {halo}>'
                     f'{escape(_clip(c.detail, int(c.w / 6.2)))}</text></g>')
    for box in drawing.boxes.values():
        parts.append(_box(box))
    parts.append("</svg>")
    return "\n".join(parts)


def _cluster_tooltip(c) -> str:
    return escape(f"{c.tooltip or c.name} ({c.detail})")


def _edge(a, b, control: bool = False) -> str:
    """A curve from the bottom of `a` to the top of `b`; dashed for a control dependency."""
    x1, y1 = a.x + a.w / 2, a.y + a.h
    x2, y2 = b.x + b.w / 2, b.y
    if y2 <= y1:  # a member feeding a later member placed beside it: enter from the side
        x2, y2 = (b.x, b.y + b.h / 2) if x2 > x1 else (b.x + b.w, b.y + b.h / 2)
    bend = max(abs(y2 - y1) / 2, 18)
    return (f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {y1 + bend:.1f} {x2:.1f} {y2 - bend:.1f} {x2:.1f} {y2:.1f}" '
            f'fill="none" stroke="#64748b" stroke-width="1.4"{STYLE_OF_CONTROL if control else ""} '
            'marker-end="url(#arrow)"/>')


def _box(box) -> str:
    fill, stroke, ink = ROLE_STYLES.get(box.role, ROLE_STYLES["op"])
    chars = int(box.w / 7.4)
    rx = box.h / 2 if box.role in ("fetch", "feed") else 6
    dash = ' stroke-dasharray="4 3"' if box.role == "elided" else ""
    tag = "placeholder" if box.role == "feed" else _type_line(box)
    label_y = box.y + (17 if tag else box.h / 2 + 5)
    kind_line = ""
    if tag:
        kind_line = (f'<text x="{box.x + box.w / 2:.1f}" y="{box.y + 32:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="{ink}" fill-opacity="0.7">{escape(_clip(tag, chars))}</text>')
    weight = "600" if box.role in ("fetch", "feed") else "500"
    return (f'<g><title>{escape(box.tooltip or box.label)}</title>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="{rx:.1f}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>'
            f'<text x="{box.x + box.w / 2:.1f}" y="{label_y:.1f}" text-anchor="middle" font-size="12.5" '
            f'font-weight="{weight}" fill="{ink}">{escape(_clip(box.label, chars))}</text>{kind_line}</g>')


def _type_line(box) -> str:
    """The op type under the name, unless the name already says it ('add_1' is an Add)."""
    if box.role in ("fetch", "elided") or not box.kind:
        return ""
    base = box.label.rpartition("/")[2].rstrip("0123456789").rstrip("_").lower()
    return "" if base == box.kind.lower() else box.kind


def _clip(text: str, chars: int) -> str:
    """Shorten a long name to `chars`, keeping its last scope segments whole (the op's own
    name says most) and the start of its outer scope: 'batch_n\u2026/batchnorm/add'."""
    if len(text) <= chars or chars < 8:
        return text
    *scopes, tail = text.split("/")
    if len(tail) + 3 > chars:  # even the op's own name is too long: cut it in the middle
        keep = chars - 1
        return text[: keep // 2] + "\u2026" + text[-(keep - keep // 2):]
    for scope in reversed(scopes):
        if len(scope) + 1 + len(tail) + 4 > chars:
            break
        tail = f"{scope}/{tail}"
    return text[: chars - len(tail) - 2] + "\u2026/" + tail
