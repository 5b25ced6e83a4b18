"""One planning run from inputs to outputs, shared by the command line and the module: the protocol chosen,
the phase picked, the measurement, the results document and the cross-section pictures.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np

from .model import PlanInputs, PlanResult, SectionImage

PROTOCOLS = ("tavr", "mitral", "pulmonary", "pci")
TITLES = {"tavr": "TAVR", "mitral": "Mitral (TEER/TMVR)", "pulmonary": "Pulmonary valve (PPVI)", "pci": "PCI"}
#: Phase measured by default in a 4D CT without an LV volume curve, % of the R-R interval: systole for the
#: valve protocols (SCCT: annulus sizing in systole, 30–40 %), diastasis for the coronaries.
DEFAULT_PHASE_PERCENT = {"tavr": 35.0, "mitral": 35.0, "pulmonary": 35.0, "pci": 75.0}
#: CT window of the section pictures (centre, width), HU: a contrast-CT angiography window.
PICTURE_WINDOW = (300.0, 900.0)
PICTURE_SCALE = 2
#: Pictures are enlarged to at least this width (a coronary section is a few millimetres across).
PICTURE_MIN_PIXELS = 400


def protocol_function(name: str):
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{name}'; one of {', '.join(PROTOCOLS)}")
    return importlib.import_module(f".{name}", __package__).measure


def measure(protocol: str, inputs: PlanInputs) -> PlanResult:
    return protocol_function(protocol)(inputs)


def choose_phase(protocol: str, text: str | None, index_values, index_unit: str, index_name: str,
                 lv_function: dict | None = None) -> tuple[int, str]:
    """The phase to measure: the one given; else the systolic phase of the LV volume curve (end-systole, the
    smallest LV volume) for the valve protocols; else the nearest to the protocol's default % of R-R; else the
    first."""
    from FourDCTLib.workflow import parse_phase

    count = len(index_values)
    if text is not None:
        return parse_phase(text, index_values, index_unit, index_name, "phase"), "given"
    if count < 2:
        return 0, "the only phase"
    if lv_function and protocol != "pci" and "es_phase" in lv_function:
        return int(lv_function["es_phase"]), "end-systole of the LV volume curve (4D CT propagation)"
    if index_unit == "%":
        target = DEFAULT_PHASE_PERCENT[protocol]
        values = np.asarray(index_values, float)
        return int(np.argmin(np.abs(values - target))), f"nearest {target:g} % of the R-R interval"
    return 0, "the first (the phases carry no % of the R-R interval)"


def read_lv_function(path: str | Path | None) -> dict | None:
    """The LV function block of a ``cardiacsuite propagate`` output (its folder or results.json)."""
    import json

    from CardiacSuiteLib.errors import InputError

    if path is None:
        return None
    path = Path(path)
    document = path / "results.json" if path.is_dir() else path
    if not document.exists():
        raise InputError(f"{path}: no results.json of 'cardiacsuite propagate' there")
    try:
        function = json.loads(document.read_text(encoding="utf-8")).get("lv_function")
    except ValueError:
        raise InputError(f"{document}: not a JSON document") from None
    if not function:
        raise InputError(f"{document}: no LV volume curve in it (the propagation had no LV segment)")
    return function


def results_document(result: PlanResult, inputs: PlanInputs, extra: dict | None = None) -> dict:
    document = dict(result.results)
    document["protocol"] = result.protocol
    document.setdefault("phase", inputs.phase_label)
    document["landmark_sources"] = dict(result.landmark_sources)
    document.setdefault("edited", sorted(n for n, s in result.landmark_sources.items() if s == "given"))
    document["notes"] = list(result.notes)
    document["table"] = [{"measurement": m, "value": v, "unit": u} for m, v, u in result.table]
    if extra:
        document.update(extra)
    return document


def picture(section: SectionImage, window: tuple[float, float] = PICTURE_WINDOW, scale: int = PICTURE_SCALE):
    """The section as an 8-bit picture with its contour (yellow) and extra lines (cyan), anterior up where the
    plane allows: rows along v, columns along u, as sampled."""
    from PIL import Image, ImageDraw

    centre, width = window
    grey = np.clip((section.pixels - (centre - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)
    rows, cols = grey.shape
    scale = max(scale, int(math.ceil(PICTURE_MIN_PIXELS / cols)))
    image = Image.fromarray(grey[::-1], mode="L").convert("RGB")
    image = image.resize((cols * scale, rows * scale), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    font = _font(13)

    def to_pixels(xy: np.ndarray) -> list[tuple[float, float]]:
        x = (xy[:, 0] / section.pixel_mm + (cols - 1) / 2.0) * scale
        y = ((rows - 1) / 2.0 - xy[:, 1] / section.pixel_mm) * scale
        return list(zip(x.tolist(), y.tolist()))

    if section.contour_2d is not None and len(section.contour_2d) > 2:
        points = to_pixels(np.vstack([section.contour_2d, section.contour_2d[:1]]))
        draw.line(points, fill=(255, 220, 0), width=2)
    for line in section.extra_2d.values():
        line = np.asarray(line, float).reshape(-1, 2)
        if len(line) == 1:
            x, y = to_pixels(line)[0]
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=(0, 220, 255), width=2)
        else:
            draw.line(to_pixels(line), fill=(0, 220, 255), width=2)
    bar_mm = 10.0
    bar = bar_mm / section.pixel_mm * scale
    draw.line([(10, image.height - 12), (10 + bar, image.height - 12)], fill=(255, 255, 255), width=3)
    draw.text((12, image.height - 30), f"{bar_mm:g} mm", fill=(255, 255, 255), font=font)
    title_font, size = font, 13
    while size > 8 and draw.textlength(section.title, font=title_font) > image.width - 16:
        size -= 1
        title_font = _font(size)
    draw.text((8, 6), section.title, fill=(255, 255, 255), font=title_font)
    return image


def _font(size: int):
    """DejaVu Sans where the system has it (it has ², ³ and °), else Pillow's own font."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def write_pictures(result: PlanResult, folder: Path) -> list[str]:
    names = []
    for section in result.sections:
        path = Path(folder) / f"{section.name}.png"
        picture(section).save(path)
        names.append(path.name)
    return names


def section_geometry(section: SectionImage, centre: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """IJK-to-RAS of a one-slice volume holding the section picture where it lies in the patient."""
    rows, cols = section.pixels.shape
    n = np.cross(u, v)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = u * section.pixel_mm, v * section.pixel_mm, n
    matrix[:3, 3] = centre - u * section.pixel_mm * (cols - 1) / 2.0 - v * section.pixel_mm * (rows - 1) / 2.0
    return matrix


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))))
