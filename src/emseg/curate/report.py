"""Curation report (report.md + PNG contact sheets) and an HTML labelling sheet."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from emseg.curate.store import PatchStore

PLANE_NAMES = ("xy", "xz", "yz")


def contact_sheet(patches: np.ndarray, labels: list[str] | None = None, columns: int = 8, thumb: int = 112):
    """A PIL image tiling patches (thumbnails) with their row ids."""
    from PIL import Image, ImageDraw

    rows = max(1, int(np.ceil(len(patches) / columns)))
    sheet = Image.new("L", (columns * (thumb + 4), rows * (thumb + 4)), 255)
    draw = ImageDraw.Draw(sheet)
    for i, patch in enumerate(patches):
        r, c = divmod(i, columns)
        x0, y0 = c * (thumb + 4) + 2, r * (thumb + 4) + 2
        sheet.paste(Image.fromarray(patch).resize((thumb, thumb), Image.Resampling.BILINEAR), (x0, y0))
        if labels:
            draw.rectangle((x0, y0, x0 + 7 * len(labels[i]) + 2, y0 + 11), fill=0)
            draw.text((x0 + 2, y0), labels[i], fill=255)
    return sheet


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False)) if len(rows) else rows


def write_report(store: PatchStore, folder: str | Path, per_sheet: int = 32, seed: int = 0) -> Path:
    """Write ``report.md`` and per-dataset contact sheets of kept, duplicate and rejected patches."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = store.table
    rng = np.random.default_rng(seed)
    lines = [f"# Curation report: {store.path}", "",
             "| dataset | source | planes | patches | exemplars (after dedup) | dedup ratio | kept (informative) | rejected |",
             "|---|---|---|---|---|---|---|---|"]
    sheets = []
    sources = store.meta.get("sources", {})
    for index, name in enumerate(store.dataset_names):
        part = table[table.dataset == index]
        if part.empty:
            continue
        rows = part.index.to_numpy()
        is_exemplar = part.exemplar.to_numpy() == rows
        kept = part.kept.to_numpy()
        planes = ",".join(PLANE_NAMES[p] for p in sorted(part.plane.unique()))
        n, e, k = len(part), int(is_exemplar.sum()), int(kept.sum())
        lines.append(f"| {name} | {sources.get(name, '')} | {planes} | {n} | {e} | {n / max(e, 1):.1f} x | {k} | {e - k} |")
        for what, chosen in (("kept", rows[kept]), ("duplicate", rows[~is_exemplar]), ("rejected", rows[is_exemplar & ~kept])):
            pick = _sample(chosen, per_sheet, rng)
            if len(pick) == 0:
                continue
            patches = store.patches.get_orthogonal_selection((pick,))
            png = folder / f"{name}_{what}.png"
            contact_sheet(patches, [str(r) for r in pick]).save(png)
            sheets.append(f"- {name}, {what} ({len(chosen)}; {len(pick)} shown): ![{name} {what}]({png.name})")
    total = len(table)
    lines += ["", f"Total: {total} patches, {int((table.exemplar.to_numpy() == np.arange(total)).sum())} exemplars, "
              f"{int(table.kept.sum())} kept.", "", "## Contact sheets (numbers are patch row ids)", ""] + sheets
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def labelling_sheet(store: PatchStore, output: str | Path, n: int = 200, seed: int = 0, rows: np.ndarray | None = None) -> Path:
    """An HTML page of ``n`` random patches: click to mark uninformative, then save the CSV."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = _sample(np.arange(len(store)), n, rng) if rows is None else np.asarray(rows)
    cells = []
    for r in rows:
        buf = io.BytesIO()
        Image.fromarray(store.patches[int(r)]).save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        cells.append(f'<figure data-row="{r}" class="good"><img src="data:image/png;base64,{data}">'
                     f'<figcaption>{r}</figcaption></figure>')
    html = _HTML.replace("{{STORE}}", str(store.path)).replace("{{CELLS}}", "\n".join(cells))
    output = Path(output)
    output.write_text(html)
    return output


_HTML = """<!doctype html><meta charset="utf-8"><title>emseg: label patches</title>
<style>body{font-family:sans-serif}figure{display:inline-block;margin:3px;border:4px solid #2a2;cursor:pointer}
figure.bad{border-color:#d22;opacity:.6}img{width:160px;height:160px;display:block}figcaption{text-align:center}</style>
<h3>{{STORE}}: click the UNINFORMATIVE patches (blank resin, noise, saturated, out of focus), then
<button onclick="save()">save labels.csv</button></h3>
{{CELLS}}
<script>
document.querySelectorAll('figure').forEach(f=>f.onclick=()=>{f.classList.toggle('bad');f.classList.toggle('good')});
function save(){let s='index,label\\n';document.querySelectorAll('figure').forEach(f=>{
s+=f.dataset.row+','+(f.classList.contains('bad')?'uninformative':'informative')+'\\n'});
let a=document.createElement('a');a.href=URL.createObjectURL(new Blob([s],{type:'text/csv'}));
a.download='labels.csv';a.click();}
</script>
"""
