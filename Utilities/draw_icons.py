#!/usr/bin/env python3
"""Draw CardiacSuite's extension icon and one icon per module (128×128 RGBA PNG).

The icons are plain vector drawings made here, so they can be changed and re-drawn without an image editor:

    python Utilities/draw_icons.py            # writes CardiacSuite.png and <Module>/Resources/Icons/<Module>.png

Each picture is drawn four times larger and reduced with a Lanczos filter, which smooths the edges.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4
S = SIZE * SCALE  # drawing canvas size

REPO_ROOT = Path(__file__).resolve().parents[1]

HEART_RED = (200, 32, 48, 255)
HEART_DARK = (128, 16, 32, 255)
BLOOD = (250, 214, 214, 255)
WHITE = (255, 255, 255, 255)
NAVY = (30, 52, 96, 255)
GOLD = (246, 178, 42, 255)
STEEL = (150, 160, 176, 255)
STEEL_DARK = (70, 80, 98, 255)


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def finish(image: Image.Image) -> Image.Image:
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def p(x: float, y: float) -> tuple[float, float]:
    """Icon coordinates (0..128) to canvas coordinates."""
    return (x * SCALE, y * SCALE)


def heart_outline(cx: float, cy: float, size: float, n: int = 400) -> list[tuple[float, float]]:
    """The classic parametric heart curve, centred on (cx, cy), about ``size`` wide, in icon coordinates."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    k = size / 34.0
    return [p(cx + k * xi, cy - k * yi) for xi, yi in zip(x, y)]


def shadow(image: Image.Image, polygon: list[tuple[float, float]], offset: float = 2.0) -> Image.Image:
    """A soft drop shadow under ``polygon`` (canvas coordinates)."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).polygon([(x + offset * SCALE, y + offset * SCALE) for x, y in polygon], fill=(0, 0, 0, 90))
    layer = layer.filter(ImageFilter.GaussianBlur(3 * SCALE))
    return Image.alpha_composite(layer, image)


def shaded_heart(image: Image.Image, cx: float, cy: float, size: float) -> Image.Image:
    """A heart with a darker lower rim and a highlight, so it reads as a solid at 16 px too."""
    outline = heart_outline(cx, cy, size)
    image = shadow(image, outline)
    draw = ImageDraw.Draw(image)
    draw.polygon(outline, fill=HEART_DARK)
    inner = heart_outline(cx - 0.02 * size, cy - 0.03 * size, size * 0.9)
    draw.polygon(inner, fill=HEART_RED)
    # highlight on the left lobe
    hx, hy, r = cx - 0.27 * size, cy - 0.22 * size, 0.09 * size
    highlight = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(highlight).ellipse([p(hx - r, hy - r * 0.7), p(hx + r, hy + r * 0.7)], fill=(255, 255, 255, 120))
    highlight = highlight.filter(ImageFilter.GaussianBlur(1.5 * SCALE))
    return Image.alpha_composite(image, highlight)


def line(draw: ImageDraw.ImageDraw, points, fill, width: float) -> None:
    pts = [p(x, y) for x, y in points]
    draw.line(pts, fill=fill, width=int(width * SCALE), joint="curve")
    r = width * SCALE / 2.0
    for x, y in (pts[0], pts[-1]):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def ring(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, width: float, fill) -> None:
    draw.ellipse([p(cx - r, cy - r), p(cx + r, cy + r)], outline=fill, width=int(width * SCALE))


def rounded_square(draw: ImageDraw.ImageDraw, x0, y0, x1, y1, radius, fill, outline=None, width=0) -> None:
    draw.rounded_rectangle([p(x0, y0), p(x1, y1)], radius=radius * SCALE, fill=fill, outline=outline,
                           width=int(width * SCALE))


# ------------------------------------------------------------------------------------------------- icons


def extension_icon() -> Image.Image:
    """CardiacSuite: a heart with an ECG trace across it."""
    image, _ = canvas()
    image = shaded_heart(image, 64, 62, 110)
    draw = ImageDraw.Draw(image)
    ecg = [(10, 64), (38, 64), (46, 56), (52, 64), (58, 64), (64, 24), (71, 96), (78, 58), (84, 64), (92, 64),
           (98, 56), (106, 64), (118, 64)]
    line(draw, ecg, fill=(0, 0, 0, 70), width=9)  # dark edge so the trace stands out from the heart
    line(draw, ecg, fill=WHITE, width=6)
    return finish(image)


def cmr_icon() -> Image.Image:
    """CMRAnalysis: a short-axis MR slice (greyscale) with the LV blood pool, myocardial ring and RV outlined."""
    image, draw = canvas()
    rng = np.random.default_rng(7)
    # MR-like greyscale background with soft noise, in a rounded frame
    yy, xx = np.mgrid[0:S, 0:S] / S
    base = 80 + 50 * np.exp(-(((xx - 0.5) ** 2 + (yy - 0.52) ** 2) / 0.09)) + rng.normal(0, 6, (S, S))
    grey = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(SCALE))
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).rounded_rectangle([p(6, 6), p(122, 122)], radius=18 * SCALE, fill=255)
    image.paste(Image.merge("RGBA", (grey, grey, grey, Image.new("L", (S, S), 255))), (0, 0), mask)
    draw = ImageDraw.Draw(image)
    cx, cy = 72, 66
    # RV: a bright crescent with a blue contour, partly behind the LV, as in a short-axis view
    draw.ellipse([p(12, 38), p(64, 96)], fill=(232, 232, 238, 255), outline=(58, 120, 230, 255), width=4 * SCALE)
    # myocardium (dark red ring) and bright blood pool with its contours
    draw.ellipse([p(cx - 37, cy - 37), p(cx + 37, cy + 37)], fill=(40, 40, 44, 255))
    draw.ellipse([p(cx - 35, cy - 35), p(cx + 35, cy + 35)], fill=(150, 30, 44, 255))
    draw.ellipse([p(cx - 22, cy - 22), p(cx + 22, cy + 22)], fill=(246, 238, 238, 255))
    ring(draw, cx, cy, 35, 3.5, (255, 80, 90, 255))  # epicardial contour
    ring(draw, cx, cy, 22, 3.5, (255, 200, 40, 255))  # endocardial contour
    # papillary muscles
    for dx, dy in ((-8, 9), (9, 10)):
        draw.ellipse([p(cx + dx - 4, cy + dy - 4), p(cx + dx + 4, cy + dy + 4)], fill=(170, 150, 150, 255))
    rounded_square(draw, 6, 6, 122, 122, 18, fill=None, outline=(40, 40, 44, 255), width=3)
    return finish(image)


def segmentation_icon() -> Image.Image:
    """CardiacSegmentation: a heart with the coronary tree (LAD, LCx, RCA) drawn on it."""
    image, _ = canvas()
    image = shaded_heart(image, 64, 64, 112)
    draw = ImageDraw.Draw(image)
    dark = (120, 70, 0, 255)
    # (points, is a main artery); branches are drawn thinner
    trees = [
        ([(70, 30), (72, 46), (70, 62), (66, 80), (62, 98)], True),  # LAD down the front
        ([(71, 48), (84, 56), (92, 66)], False),  # diagonals
        ([(69, 64), (82, 74), (88, 84)], False),
        ([(70, 30), (86, 34), (98, 44), (104, 58)], True),  # LCx round the left side
        ([(92, 39), (96, 52)], False),  # obtuse marginal
        ([(56, 32), (42, 38), (32, 50), (30, 64), (36, 78)], True),  # RCA round the right side
        ([(34, 58), (46, 64)], False),
    ]
    for width, colour in ((7, dark), (4.5, GOLD)):
        for points, main in trees:
            line(draw, points, fill=colour, width=width if main else width - 1.5)
    # ostia
    for x, y in ((70, 30), (56, 32)):
        draw.ellipse([p(x - 4, y - 4), p(x + 4, y + 4)], fill=GOLD, outline=dark, width=2 * SCALE)
    return finish(image)


def fourd_icon() -> Image.Image:
    """FourDCT: a small heart inside a ring of cardiac phases, coloured from systole to diastole."""
    image, draw = canvas()
    cx, cy, r = 64, 64, 50
    n = 10
    for i in range(n):
        a0 = -90 + i * 360 / n + 3
        a1 = -90 + (i + 1) * 360 / n - 3
        f = i / (n - 1)
        colour = (int(40 + 190 * f), int(110 + 40 * (1 - f)), int(230 - 180 * f), 255)
        draw.arc([p(cx - r, cy - r), p(cx + r, cy + r)], a0, a1, fill=colour, width=12 * SCALE)
    # arrow head at the end of the cycle
    a = math.radians(-90 - 4)
    tip = (cx + r * math.cos(a), cy + r * math.sin(a))
    draw.polygon([p(tip[0] + 6, tip[1]), p(tip[0] - 6, tip[1] - 9), p(tip[0] - 6, tip[1] + 9)], fill=(230, 60, 50, 255))
    image = shaded_heart(image, 64, 66, 58)
    return finish(image)


def stent_icon() -> Image.Image:
    """StentReconstruction: a tilted stent — a cylinder of diamond-shaped struts — over a vessel lumen."""
    image, draw = canvas()
    length, radius = 78, 18
    angle = math.radians(-38)
    ux, uy = math.cos(angle), math.sin(angle)  # stent axis
    vx, vy = -uy, ux  # across the stent
    cx, cy = 64, 64

    def at(s: float, phi: float) -> tuple[tuple[float, float], float]:
        """Point on the cylinder at axial position s (-1..1) and angle phi; also its depth (front > 0)."""
        x = cx + ux * s * length / 2 + vx * radius * math.cos(phi)
        y = cy + uy * s * length / 2 + vy * radius * math.cos(phi)
        return (x, y), math.sin(phi)

    # vessel lumen behind the stent
    lumen = [at(s, math.pi / 2)[0] for s in (-1.12, 1.12)]
    line(draw, lumen, fill=(214, 90, 96, 160), width=2 * radius + 10)
    line(draw, lumen, fill=(240, 150, 150, 200), width=2 * radius + 2)
    rings, cells = 7, 8
    back, front = [], []
    for ri in range(rings):
        s0 = -1 + 2 * ri / rings
        s1 = -1 + 2 * (ri + 1) / rings
        for ci in range(cells * 2):
            phi0 = 2 * math.pi * ci / (cells * 2)
            phi1 = 2 * math.pi * (ci + 1) / (cells * 2)
            sa, sb = (s0, s1) if ci % 2 == 0 else (s1, s0)
            (a, da), (b, db) = at(sa, phi0), at(sb, phi1)
            (front if da + db > 0 else back).append((a, b))
    for a, b in back:
        line(draw, [a, b], fill=STEEL_DARK, width=2.2)
    for a, b in front:
        line(draw, [a, b], fill=(40, 46, 60, 255), width=4.2)
        line(draw, [a, b], fill=STEEL, width=2.6)
    # radiopaque markers at both ends
    for s in (-1, 1):
        (x, y), _ = at(s, math.pi / 2)
        draw.ellipse([p(x - 4, y - 4), p(x + 4, y + 4)], fill=GOLD, outline=(120, 70, 0, 255), width=SCALE)
    return finish(image)


def planning_icon() -> Image.Image:
    """InterventionPlanning: an aortic root with its three sinuses seen obliquely, the annular plane through the
    nadirs (a tilted gold ring) and a caliper across the annulus."""
    image, draw = canvas()
    cx, cy = 64, 60
    # root: three sinus lobes above a tube
    for k in range(3):
        a = math.radians(90 + 120 * k)
        lx, ly = cx + 15 * math.cos(a), cy - 6 - 10 * math.sin(a) * 0.6
        draw.ellipse([p(lx - 20, ly - 22), p(lx + 20, ly + 22)], fill=(214, 90, 96, 255), outline=HEART_DARK,
                     width=2 * SCALE)
    draw.rectangle([p(cx - 14, 10), p(cx + 14, cy - 20)], fill=(214, 90, 96, 255))
    draw.line([p(cx - 14, 10), p(cx - 14, cy - 22)], fill=HEART_DARK, width=2 * SCALE)
    draw.line([p(cx + 14, 10), p(cx + 14, cy - 22)], fill=HEART_DARK, width=2 * SCALE)
    draw.rectangle([p(cx - 17, cy + 14), p(cx + 17, 118)], fill=(214, 90, 96, 255))
    # annular plane: a tilted ellipse through the nadirs
    draw.ellipse([p(cx - 34, cy + 8), p(cx + 34, cy + 26)], outline=GOLD, width=4 * SCALE)
    for x, y in ((cx - 30, cy + 19), (cx + 4, cy + 25), (cx + 31, cy + 13)):
        draw.ellipse([p(x - 4, y - 4), p(x + 4, y + 4)], fill=WHITE, outline=NAVY, width=SCALE)
    # caliper across the annulus
    draw.line([p(cx - 34, cy + 36), p(cx + 34, cy + 36)], fill=NAVY, width=3 * SCALE)
    for x in (cx - 34, cx + 34):
        draw.line([p(x, cy + 30), p(x, cy + 42)], fill=NAVY, width=3 * SCALE)
    return finish(image)


def report_icon() -> Image.Image:
    """SurgicalPlanReport: a report sheet with a small heart, text lines, a bar chart and a check mark."""
    image, draw = canvas()
    sheet = [p(22, 10), p(90, 10), p(108, 28), p(108, 118), p(22, 118)]
    image = shadow(image, sheet, offset=3)
    draw = ImageDraw.Draw(image)
    draw.polygon(sheet, fill=WHITE, outline=(120, 130, 150, 255), width=2 * SCALE)
    draw.polygon([p(90, 10), p(90, 28), p(108, 28)], fill=(214, 220, 232, 255), outline=(120, 130, 150, 255),
                 width=2 * SCALE)
    draw.rectangle([p(30, 18), p(82, 26)], fill=NAVY)  # title bar
    image = shaded_heart(image, 41, 44, 22)
    draw = ImageDraw.Draw(image)
    for y, x1 in ((38, 98), (46, 92), (54, 98)):
        draw.rounded_rectangle([p(56, y), p(x1, y + 3.5)], radius=1.5 * SCALE, fill=(150, 160, 178, 255))
    for y, x1 in ((66, 98), (74, 88)):
        draw.rounded_rectangle([p(30, y), p(x1, y + 3.5)], radius=1.5 * SCALE, fill=(150, 160, 178, 255))
    # bar chart
    for i, h in enumerate((14, 22, 17, 28)):
        x = 32 + i * 10
        draw.rectangle([p(x, 110 - h), p(x + 7, 110)], fill=(58, 120, 230, 255))
    draw.line([p(30, 110.5), p(72, 110.5)], fill=NAVY, width=2 * SCALE)
    # check mark badge
    draw.ellipse([p(78, 86), p(104, 112)], fill=(40, 160, 90, 255))
    line(draw, [(84, 99), (89.5, 105), (98, 93)], fill=WHITE, width=4)
    return finish(image)


ICONS = {
    Path("CardiacSuite.png"): extension_icon,
    Path("CMRAnalysis/Resources/Icons/CMRAnalysis.png"): cmr_icon,
    Path("CardiacSegmentation/Resources/Icons/CardiacSegmentation.png"): segmentation_icon,
    Path("FourDCT/Resources/Icons/FourDCT.png"): fourd_icon,
    Path("StentReconstruction/Resources/Icons/StentReconstruction.png"): stent_icon,
    Path("InterventionPlanning/Resources/Icons/InterventionPlanning.png"): planning_icon,
    Path("SurgicalPlanReport/Resources/Icons/SurgicalPlanReport.png"): report_icon,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root to write into")
    parser.add_argument("--sheet", type=Path, help="also write all icons side by side (at 1× and 3×) to this PNG")
    args = parser.parse_args(argv)
    images = []
    for relative, draw_icon in ICONS.items():
        image = draw_icon()
        assert image.size == (SIZE, SIZE), relative
        target = args.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, optimize=True)
        images.append(image)
        print(target)
    if args.sheet:
        sheet = Image.new("RGBA", (len(images) * (SIZE * 3 + 8), SIZE * 3 + SIZE + 16), (236, 236, 236, 255))
        for i, image in enumerate(images):
            x = i * (SIZE * 3 + 8)
            sheet.alpha_composite(image.resize((SIZE * 3, SIZE * 3), Image.Resampling.NEAREST), (x, 0))
            sheet.alpha_composite(image, (x, SIZE * 3 + 8))
            sheet.alpha_composite(image.resize((32, 32), Image.Resampling.LANCZOS), (x + SIZE + 16, SIZE * 3 + 8))
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
