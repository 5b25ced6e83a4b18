"""The AHA 17-segment bull's-eye (polar map) as an RGB image.

Standard orientation, viewed from the apex: anterior at the top, septum on the left, lateral wall on the
right; basal ring outside, apex in the centre. Each segment is coloured by its value on a fixed scale and
labelled with its number and value; segments without a value are grey.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Ring radii (fractions of the map radius) and the angle, counter-clockwise from 3 o'clock, where each
# ring's first segment starts. Basal/mid: segment 1 (anterior) spans 60°–120°; apical: 13 spans 45°–135°.
RINGS = {
    "basal": (0.75, 1.0, list(range(1, 7)), 60.0),
    "mid": (0.5, 0.75, list(range(7, 13)), 60.0),
    "apical": (0.25, 0.5, list(range(13, 17)), 45.0),
}
SCALES = {
    "thickening_pct": (-10.0, 80.0, "Systolic wall thickening (%)"),
    "ed_thickness_mm": (0.0, 16.0, "End-diastolic wall thickness (mm)"),
    "es_thickness_mm": (0.0, 22.0, "End-systolic wall thickness (mm)"),
}


def _colour(fraction: float) -> tuple[int, int, int]:
    """A blue → green → yellow → red ramp that stays readable in grey print."""
    stops = [(0.0, (40, 60, 160)), (0.35, (40, 160, 140)), (0.65, (230, 210, 60)), (1.0, (200, 40, 40))]
    fraction = min(max(fraction, 0.0), 1.0)
    for (f0, c0), (f1, c1) in zip(stops, stops[1:]):
        if fraction <= f1:
            t = (fraction - f0) / (f1 - f0)
            return tuple(int(a + (b - a) * t) for a, b in zip(c0, c1))
    return stops[-1][1]


def render(segments: dict, value: str = "thickening_pct", size: int = 480, title: str | None = None) -> np.ndarray:
    """RGB image (uint8, ``size × size+60``) of the bull's-eye of ``segments[str(n)][value]``."""
    low, high, label = SCALES[value]
    image = Image.new("RGB", (size, size + 60), "white")
    draw = ImageDraw.Draw(image)
    font = _font(13)
    centre, radius = size / 2, size / 2 - 10
    for inner, outer, numbers, start in RINGS.values():
        step = 360.0 / len(numbers)
        for index, number in enumerate(numbers):
            number_value = segments.get(str(number), {}).get(value)
            fill = (200, 200, 200) if number_value is None else _colour((number_value - low) / (high - low))
            a0 = start + index * step
            _sector(draw, centre, centre, inner * radius, outer * radius, a0, a0 + step, fill)
            middle = math.radians(a0 + step / 2)
            r = (inner + outer) / 2 * radius
            x, y = centre + r * math.cos(middle), centre - r * math.sin(middle)
            text = f"{number}\n{'-' if number_value is None else f'{number_value:.0f}'}"
            draw.multiline_text((x, y), text, fill="black", font=font, anchor="mm", align="center")
    apex = segments.get("17", {}).get(value)
    draw.ellipse([centre - 0.25 * radius, centre - 0.25 * radius, centre + 0.25 * radius, centre + 0.25 * radius],
                 fill=(200, 200, 200) if apex is None else _colour((apex - low) / (high - low)), outline="white", width=2)
    draw.multiline_text((centre, centre), f"17\n{'-' if apex is None else f'{apex:.0f}'}", fill="black", font=font, anchor="mm", align="center")
    for text, xy in (("anterior", (centre, 2)), ("septal", (4, centre)), ("lateral", (size - 4, centre))):
        draw.text(xy, text, fill="black", font=font, anchor={"anterior": "mt", "septal": "lm", "lateral": "rm"}[text])
    for i in range(size - 40):
        draw.line([(20 + i, size + 10), (20 + i, size + 24)], fill=_colour(i / (size - 41)))
    draw.text((20, size + 27), f"{low:g}", fill="black", font=font)
    draw.text((size - 20, size + 27), f"{high:g}", fill="black", font=font, anchor="ra")
    draw.text((centre, size + 27), title or label, fill="black", font=font, anchor="ma")
    return np.asarray(image)


def save_png(segments: dict, path, value: str = "thickening_pct", title: str | None = None) -> None:
    Image.fromarray(render(segments, value, title=title)).save(path)


def _sector(draw, cx, cy, r_inner, r_outer, a0_deg, a1_deg, fill) -> None:
    steps = max(8, int(abs(a1_deg - a0_deg) / 3))
    angles = np.radians(np.linspace(a0_deg, a1_deg, steps))
    outer = [(cx + r_outer * math.cos(a), cy - r_outer * math.sin(a)) for a in angles]
    inner = [(cx + r_inner * math.cos(a), cy - r_inner * math.sin(a)) for a in angles[::-1]]
    draw.polygon(outer + inner, fill=fill, outline="white")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()
