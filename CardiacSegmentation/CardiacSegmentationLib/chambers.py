"""Weight-free automatic segmentation of the heart chambers and great vessels in contrast CT.

Method (atlas shape prior + patient intensity model):

1. *Locate* the heart: the densest region of contrast-enhanced blood (HU 150–800 after a small opening).
2. *Synthesise* the atlas's CT appearance from the patient's own intensities (blood pools, myocardium,
   epicardial fat), so the registration is mono-modal whatever the contrast timing.
3. *Register* the atlas to the patient: translation from the localisation, then affine and B-spline
   (mean squares over the heart and its fat rim only; SimpleITK, 2 mm grid). Intensities are re-fitted
   to the patient between the affine and deformable steps.
4. *Classify* every voxel of the heart region at full working resolution: maximum a posteriori over the
   seven structures and "outside", with intensity likelihoods fitted to this CT and a spatial prior that
   decays with the distance outside each registered atlas structure. Intensity decides the boundaries
   between blood, myocardium and fat; the atlas decides between structures of equal intensity (valve planes).
5. *Clean*: per structure the largest connected part, holes filled, thin protrusions (coronaries, veins)
   beyond the registered shape removed.

Nothing here reads the scene: arrays and grids in, a label map out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.errors import InputError

from .atlas import Atlas
from CardiacSuiteLib.geometry import Grid, bounding_box, downsample_blocks, resample

LV_MYO, LA, LV, RA, RV, AORTA, PA = 1, 2, 3, 4, 5, 6, 7
BLOOD_LABELS = (LA, LV, RA, RV, AORTA, PA)
LEFT_BLOOD = (LA, LV, AORTA)
RIGHT_BLOOD = (RA, RV, PA)

#: Contrast-enhanced blood must be at least this bright; non-contrast blood is 30–60 HU.
MIN_CONTRAST_HU = 150.0


@dataclass
class IntensityModel:
    """Mean HU of each structure in this CT, of the fat around the heart, and the noise level."""

    means: dict[int, float]
    fat_hu: float
    noise_hu: float
    tissue_hu: float = 40.0

    def as_dict(self) -> dict:
        return {
            "structure_mean_hu": {str(k): round(v, 1) for k, v in self.means.items()},
            "fat_hu": round(self.fat_hu, 1),
            "noise_hu": round(self.noise_hu, 1),
        }


@dataclass
class ChamberResult:
    labels: np.ndarray  # [K, J, I] uint8 on ``grid`` (labels 0–7)
    grid: Grid
    model: IntensityModel
    timings_s: dict[str, float] = field(default_factory=dict)
    registration: dict = field(default_factory=dict)
    aorta: object = None  # AortaTrace: centerline and radii of the traced aorta, when followed


# ----------------------------------------------------------------------------------------------- SimpleITK


def to_sitk(array: np.ndarray, grid: Grid):
    """A SimpleITK image whose physical space is RAS millimetres (consistent with ``grid``)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing = grid.spacing_kji[::-1]
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (grid.ijk_to_ras[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in grid.ijk_to_ras[:3, 3]))
    return image


# ----------------------------------------------------------------------------------------------- checks


def check_ct(image: np.ndarray) -> None:
    """Refuse images that are not CT in Hounsfield units (an MR series, a scaled export, a mask)."""
    sample = image[:: max(1, image.shape[0] // 64), :: 4, :: 4]
    low, high = np.percentile(sample, [0.5, 99.5])
    if float(np.min(sample)) > -200.0:
        raise InputError(
            "this image is not a CT in Hounsfield units: nothing in it is darker than -200 (fat and lung are -100"
            f" to -900 HU in CT); its values range from {float(np.min(sample)):.0f} to {float(np.max(sample)):.0f}"
        )
    if high - low < 200.0:
        raise InputError(f"this image has almost no contrast (1-99 % range {low:.0f} to {high:.0f}): not a usable CT")


def locate_heart(image2: np.ndarray, grid2: Grid) -> tuple[np.ndarray, float]:
    """Centre (RAS mm) of the densest contrast-enhanced blood, and that blood's median HU.

    Raises ``InputError`` when there is no contrast-enhanced blood pool (non-contrast CT, venous-only
    phases too weak to separate blood from myocardium, or no heart in the field of view).
    """
    spacing = grid2.spacing_kji
    candidate = (image2 > MIN_CONTRAST_HU) & (image2 < 800.0)
    candidate = ndimage.binary_opening(candidate, iterations=1)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    total_ml = candidate.sum() * voxel_ml
    if total_ml < 60.0:
        blood_like = np.median(image2[(image2 > 0) & (image2 < 150)]) if np.any((image2 > 0) & (image2 < 150)) else 0
        raise InputError(
            f"no contrast-enhanced blood pool found (only {total_ml:.0f} ml above {MIN_CONTRAST_HU:.0f} HU; soft tissue"
            f" measures about {blood_like:.0f} HU): this looks like a non-contrast CT or the heart is outside the"
            " field of view; the segmentation needs a contrast-enhanced cardiac CT (CTA)"
        )
    density = ndimage.gaussian_filter(candidate.astype(np.float32), 15.0 / spacing, mode="constant")
    centre_index = np.array(np.unravel_index(np.argmax(density), density.shape))
    centre = grid2.kji_to_ras(centre_index)[0]
    # Blood near the centre: its median HU is the first estimate of the blood-pool level.
    index = np.argwhere(candidate)
    near = np.linalg.norm((index - centre_index) * spacing, axis=1) < 50.0
    if near.sum() * voxel_ml < 40.0:
        raise InputError(
            "the contrast-enhanced blood found does not form a heart (less than 40 ml within 5 cm of its densest"
            " point): the heart may be outside the field of view"
        )
    blood_hu = float(np.median(image2[tuple(index[near].T)]))
    return centre, blood_hu


def check_heart_in_view(registered_voxels: float, inside_voxels: float, minimum: float = 0.9) -> None:
    """The registered heart must lie (almost) inside the image: otherwise results would be truncated."""
    if inside_voxels < minimum * registered_voxels:
        raise InputError(
            f"the heart is not fully inside the field of view (only {100.0 * inside_voxels / registered_voxels:.0f} % of"
            " the expected heart volume lies within the image): reconstruct the CT with the whole heart in view"
        )


# ----------------------------------------------------------------------------------------------- atlas image


def initial_alignment(
    image4: np.ndarray, grid4: Grid, atlas: Atlas, blood_hu: float, myo_hu: float,
    scales: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
) -> tuple[np.ndarray, float]:
    """Exhaustive search of position and size of the atlas heart in the patient (4 mm grid, FFT correlation).

    The template is +1 over the atlas blood pools and -1 over its myocardium and the fat rim around the heart;
    the patient map is +1 where the CT is as bright as enhanced blood and -1 elsewhere. The best translation
    for each scale comes from one FFT correlation; the best (normalised) score wins. Returns the 4×4 matrix
    of the patient→atlas affine map (RAS mm) and the scale found.
    """
    from scipy import signal

    threshold = 0.5 * (blood_hu + myo_hu)
    patient = np.where(image4 > threshold, 1.0, -1.0).astype(np.float32)
    directions = grid4.ijk_to_ras[:3, :3] / np.linalg.norm(grid4.ijk_to_ras[:3, :3], axis=0)
    index = np.argwhere(atlas.labels > 0)
    low, high = index.min(axis=0) - 3, index.max(axis=0) + 3
    corners = atlas.grid.kji_to_ras(np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1]) for c in (low[2], high[2])]))
    along = corners @ directions  # coordinates along the patient's i, j, k axes
    best = (-np.inf, None, 1.0)
    for scale in scales:
        step = 4.0 / scale
        lo = along.min(axis=0)
        shape_ijk = np.ceil((along.max(axis=0) - lo) / step).astype(int) + 1
        matrix = np.eye(4)
        matrix[:3, :3] = directions * step
        matrix[:3, 3] = directions @ lo
        template_grid = Grid(tuple(int(v) for v in shape_ijk[::-1]), matrix)
        labels = resample(atlas.labels, atlas.grid, template_grid, order=0)
        heart = labels > 0
        template = np.zeros(labels.shape, np.float32)
        template[np.isin(labels, BLOOD_LABELS)] = 1.0
        template[(labels == LV_MYO) | (ndimage.binary_dilation(heart) & ~heart)] = -1.0
        score = signal.fftconvolve(patient, template[::-1, ::-1, ::-1], mode="full") / np.abs(template).sum()
        n = np.array(np.unravel_index(np.argmax(score), score.shape))
        if score[tuple(n)] > best[0]:
            origin_kji = n - np.array(template.shape) + 1  # patient voxel of template voxel 0
            inverse = np.linalg.inv(grid4.ijk_to_ras)
            affine = np.eye(4)
            affine[:3, :3] = matrix[:3, :3] @ inverse[:3, :3]
            affine[:3, 3] = matrix[:3, :3] @ (inverse[:3, 3] - origin_kji[::-1]) + matrix[:3, 3]
            best = (float(score[tuple(n)]), affine, scale)
    return best[1], best[2]


def synthesize(labels: np.ndarray, spacing: np.ndarray, model: IntensityModel, blur_mm: float = 1.0) -> np.ndarray:
    """The atlas as this patient's CT would show it: fitted HU per structure, fat around, slight blur."""
    image = np.full(labels.shape, model.fat_hu, np.float32)
    for value, hu in model.means.items():
        image[labels == value] = hu
    return ndimage.gaussian_filter(image, blur_mm / spacing)


def two_class_means(values: np.ndarray, low: float, high: float, iterations: int = 20) -> tuple[float, float, float]:
    """Means of a two-Gaussian mixture fitted by EM (started at ``low`` and ``high``) and the low class's weight."""
    values = np.asarray(values, dtype=np.float64)
    if values.size > 200_000:
        values = values[:: values.size // 200_000 + 1]
    means = np.array([low, high], dtype=float)
    sigmas = np.array([max(abs(high - low) / 4.0, 10.0)] * 2)
    weights = np.array([0.5, 0.5])
    for _ in range(iterations):
        likelihood = weights / sigmas * np.exp(-0.5 * ((values[:, None] - means) / sigmas) ** 2) + 1e-300
        responsibility = likelihood / likelihood.sum(axis=1, keepdims=True)
        totals = responsibility.sum(axis=0) + 1e-9
        means = (responsibility * values[:, None]).sum(axis=0) / totals
        sigmas = np.sqrt((responsibility * (values[:, None] - means) ** 2).sum(axis=0) / totals).clip(5.0, None)
        weights = totals / totals.sum()
    order = np.argsort(means)
    return float(means[order[0]]), float(means[order[1]]), float(weights[order[0]])


def fit_intensity_model(image: np.ndarray, labels: np.ndarray, spacing: np.ndarray, fallback: IntensityModel):
    """Per-structure HU and noise from a registered label map, robust to the registration's remaining errors.

    Blood pools: medians of the eroded regions. Myocardium: the darker class of a two-class fit inside the
    registered myocardium (where it still overlaps blood, blood forms the brighter class). Fat: the darkest
    soft tissue in the rim just outside the heart.
    """
    means = dict(fallback.means)
    noise = []
    for value in BLOOD_LABELS:
        region = labels == value
        eroded = ndimage.binary_erosion(region, iterations=2)
        if eroded.sum() < 50:
            eroded = region
        if eroded.sum() < 20:
            continue
        values = image[eroded]
        means[value] = float(np.median(values))
        noise.append(1.4826 * float(np.median(np.abs(values - means[value]))))
    blood = float(np.median([means[v] for v in LEFT_BLOOD]))
    myo_region = labels == LV_MYO
    if myo_region.sum() > 50:
        values = image[myo_region]
        values = values[(values > -50.0) & (values < blood + 200.0)]
        if values.size > 50:
            low, high, weight = two_class_means(values, min(fallback.means[LV_MYO], 0.5 * blood), blood)
            if weight > 0.15 and low < blood - 100.0:
                means[LV_MYO] = low
    heart = labels > 0
    distance = ndimage.distance_transform_edt(~heart, sampling=spacing)
    rim = (distance > 1.5) & (distance < 4.0)
    fat_values = image[rim & (image < means[LV_MYO] - 30.0) & (image > -400.0)]
    fat = float(np.percentile(fat_values, 25)) if fat_values.size > 50 else fallback.fat_hu
    return IntensityModel(means, min(fat, means[LV_MYO] - 60.0), float(np.median(noise)) if noise else fallback.noise_hu)


# ----------------------------------------------------------------------------------------------- registration


def register_atlas(
    target2: np.ndarray,
    grid2: Grid,
    atlas: Atlas,
    centre_ras: np.ndarray,
    blood_hu: float,
    bspline: bool = True,
    progress=None,
):
    """SimpleITK transform mapping patient (RAS mm) points to atlas points, and the fitted intensity model.

    ``target2`` is the patient's CT on a ~2 mm grid (``grid2``); ``centre_ras`` and ``blood_hu`` come from
    ``locate_heart``.
    """
    import SimpleITK as sitk

    atlas2_grid = atlas.grid.resampled(2.0)
    atlas2 = resample(atlas.labels, atlas.grid, atlas2_grid, order=0)
    spacing_atlas = atlas2_grid.spacing_kji
    model = IntensityModel(
        means={LV_MYO: 0.3 * blood_hu, **{v: blood_hu for v in BLOOD_LABELS}}, fat_hu=-80.0, noise_hu=25.0
    )
    heart = atlas2 > 0
    rim = ndimage.distance_transform_edt(~heart, sampling=spacing_atlas) <= 6.0
    moving_mask = to_sitk(rim.astype(np.uint8), atlas2_grid)
    fixed = to_sitk(ndimage.gaussian_filter(target2, 0.5).astype(np.float32), grid2)

    def moving_image(current_model: IntensityModel):
        return to_sitk(synthesize(atlas2, spacing_atlas, current_model, 1.5), atlas2_grid)

    image4, grid4 = downsample_blocks(target2, grid2, 4.0)
    start, scale = initial_alignment(image4, grid4, atlas, blood_hu, model.means[LV_MYO])
    atlas_centre = atlas.grid.kji_to_ras(np.argwhere(atlas.labels > 0).mean(axis=0))[0]
    centre_ras = np.linalg.solve(start[:3, :3], atlas_centre - start[:3, 3])  # the patient's heart centre
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(float(v) for v in start[:3, :3].ravel()))
    affine.SetCenter(tuple(float(v) for v in centre_ras))
    # T(x) = A (x - c) + c + t must equal A x + b: t = A c + b - c
    affine.SetTranslation(tuple(float(v) for v in start[:3, :3] @ centre_ras + start[:3, 3] - centre_ras))

    def run(initial, moving, shrink, smooth, iterations, optimise_affine=True):
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMeanSquares()
        method.SetMetricMovingMask(moving_mask)
        method.SetMetricSamplingStrategy(method.REGULAR)
        method.SetMetricSamplingPercentage(0.25, seed=1)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetShrinkFactorsPerLevel(shrink)
        method.SetSmoothingSigmasPerLevel(smooth)
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        if optimise_affine:
            method.SetOptimizerAsGradientDescent(
                learningRate=1.0,
                numberOfIterations=iterations,
                convergenceMinimumValue=1e-6,
                convergenceWindowSize=10,
                estimateLearningRate=method.EachIteration,
            )
            method.SetOptimizerScalesFromPhysicalShift()
            method.SetInitialTransform(initial, inPlace=True)
        return method

    # Rigid-ish start: translation and scale only through an affine with a coarse pyramid.
    method = run(affine, None, [2, 1], [4.0, 2.0], 100)
    method.Execute(fixed, moving_image(model))

    # Re-fit intensities on the affinely registered atlas.
    warped = resample_labels_through(atlas2, atlas2_grid, grid2, affine)
    model = fit_intensity_model(target2, warped, grid2.spacing_kji, model)
    method = run(affine, None, [2, 1], [2.0, 1.0], 80)
    method.Execute(fixed, moving_image(model))
    transform = sitk.CompositeTransform(3)
    transform.AddTransform(affine)
    metric_affine = method.GetMetricValue()

    metric_deformable = None
    if bspline:
        warped = resample_labels_through(atlas2, atlas2_grid, grid2, transform)
        model = fit_intensity_model(target2, warped, grid2.spacing_kji, model)
        # Demons on the heart box: the synthetic atlas image, moved by the affine, against the patient. Far from
        # the heart both are set to fat so that structures the atlas does not model exert no force.
        low, high = bounding_box(warped > 0, int(np.ceil(16.0 / 2.0)))
        roi_grid = grid2.crop(low, high)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        near = ndimage.distance_transform_edt(warped[box] == 0, sampling=grid2.spacing_kji) <= 8.0
        fixed_roi = np.where(near, ndimage.gaussian_filter(target2, 0.5)[box], model.fat_hu).astype(np.float32)
        moving_roi = sitk.GetArrayFromImage(
            sitk.Resample(moving_image(model), to_sitk(fixed_roi, roi_grid), affine, sitk.sitkLinear, model.fat_hu)
        )
        moving_roi = np.where(near, moving_roi, model.fat_hu).astype(np.float32)
        field_image = demons(to_sitk(fixed_roi, roi_grid), to_sitk(moving_roi, roi_grid))
        metric_deformable = float(np.mean((fixed_roi - _warp_with(moving_roi, roi_grid, field_image))[near] ** 2))
        transform.AddTransform(sitk.DisplacementFieldTransform(field_image))
    info = {"metric_affine_hu2": float(metric_affine), "metric_deformable_hu2": metric_deformable}
    return transform, model, info


def demons(fixed, moving, levels=(2, 1), iterations=(60, 30), sigma_voxels: float = 1.5):
    """Multi-resolution symmetric-forces demons; returns a displacement field image in the fixed space."""
    import SimpleITK as sitk

    field = None
    for shrink, count in zip(levels, iterations):
        if shrink > 1:
            f = sitk.Shrink(sitk.SmoothingRecursiveGaussian(fixed, 0.5 * shrink * fixed.GetSpacing()[0]), [shrink] * 3)
            m = sitk.Shrink(sitk.SmoothingRecursiveGaussian(moving, 0.5 * shrink * fixed.GetSpacing()[0]), [shrink] * 3)
        else:
            f, m = fixed, moving
        method = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        method.SetNumberOfIterations(count)
        method.SetStandardDeviations(sigma_voxels)
        method.SetSmoothDisplacementField(True)
        method.SetSmoothUpdateField(False)
        if field is None:
            field = method.Execute(f, m)
        else:
            initial = sitk.Resample(field, f, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
            field = method.Execute(f, m, initial)
    if field.GetSize() != fixed.GetSize():
        field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
    return sitk.Cast(field, sitk.sitkVectorFloat64)


def _warp_with(moving: np.ndarray, grid: Grid, field_image) -> np.ndarray:
    import SimpleITK as sitk

    transform = sitk.DisplacementFieldTransform(sitk.Image(field_image))
    image = to_sitk(moving, grid)
    return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear, float(moving.min())))


def resample_labels_through(labels: np.ndarray, source: Grid, target: Grid, transform) -> np.ndarray:
    """Labels of ``source`` pulled onto ``target`` through a patient→atlas transform (nearest neighbour)."""
    import SimpleITK as sitk

    reference = to_sitk(np.zeros(target.shape, np.uint8), target)
    moved = sitk.Resample(to_sitk(labels, source), reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(moved)


# ----------------------------------------------------------------------------------------------- classification


def _log_gauss(x: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    return -0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma)


def classify(
    image: np.ndarray,
    grid: Grid,
    prior_labels: np.ndarray,
    model: IntensityModel,
    tau_mm: float = 1.5,
    outside_blood_weight: float = 0.05,
) -> np.ndarray:
    """MAP label of every voxel: fitted intensity likelihoods times a distance-decaying atlas prior."""
    spacing = grid.spacing_kji
    smooth = ndimage.gaussian_filter(image.astype(np.float32), np.maximum(0.6 / spacing, 0.5))
    noise = max(model.noise_hu / 3.0, 8.0)
    sigma_blood = max(noise, 25.0)
    sigma_myo = max(noise, 25.0)
    blood_means = [model.means[v] for v in BLOOD_LABELS]
    best = np.full(image.shape, -np.inf, np.float32)
    labels = np.zeros(image.shape, np.uint8)

    # Outside: fat, soft tissue, lung or air, or some other enhanced vessel.
    outside_prior = np.minimum(ndimage.distance_transform_edt(prior_labels > 0, sampling=spacing) / tau_mm, 30.0)
    outside = np.maximum.reduce(
        [
            _log_gauss(smooth, model.fat_hu, max(noise, 30.0)),
            _log_gauss(smooth, model.tissue_hu, max(noise, 30.0)),
            np.where(smooth < model.fat_hu, -np.log(30.0), -np.inf).astype(np.float32),
            np.log(outside_blood_weight) + _log_gauss(smooth, float(np.mean(blood_means)), sigma_blood),
            np.where(smooth > max(blood_means) + 3 * sigma_blood, -np.log(30.0) + np.log(outside_blood_weight), -np.inf),
        ]
    ).astype(np.float32) - outside_prior.astype(np.float32)
    best[:] = outside
    for value in range(1, 8):
        mask = prior_labels == value
        if not mask.any():
            continue
        distance_out = ndimage.distance_transform_edt(~mask, sampling=spacing)
        log_prior = -(distance_out / tau_mm).astype(np.float32)
        sigma = sigma_myo if value == LV_MYO else sigma_blood
        score = _log_gauss(smooth, model.means[value], sigma).astype(np.float32) + log_prior
        better = score > best
        best[better] = score[better]
        labels[better] = value
    return labels


def clean_labels(labels: np.ndarray, prior_labels: np.ndarray, spacing: np.ndarray, opening_mm: float = 2.5):
    """Largest part per structure, holes filled, thin protrusions removed from the blood pools.

    A blood pool is at least ``opening_mm`` thick; thinner bright parts
    stuck to it are coronary arteries or small veins running along the heart, which are not chamber.
    """
    cleaned = np.zeros_like(labels)
    for value in range(1, 8):
        mask = labels == value
        if not mask.any():
            continue
        if value != LV_MYO:
            mask = _opening(mask, opening_mm, spacing) & mask
        components, count = ndimage.label(mask)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            mask = components == int(np.argmax(sizes))
        cleaned[mask & (cleaned == 0)] = value
    # Holes: voxels enclosed by one structure join it.
    for value in range(1, 8):
        filled = ndimage.binary_fill_holes(cleaned == value)
        cleaned[filled & (cleaned == 0)] = value
    return cleaned


def _opening(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Morphological opening with a ball of ``radius_mm`` (through distance maps, within the mask's box)."""
    if not mask.any():
        return mask
    low, high = bounding_box(mask, int(np.ceil(radius_mm / spacing.min())) + 1)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    core = ndimage.distance_transform_edt(mask[box], sampling=spacing) > radius_mm
    opened = np.zeros_like(mask)
    opened[box] = ndimage.distance_transform_edt(~core, sampling=spacing) <= radius_mm
    return opened


def grow_into_connected_blood(
    labels: np.ndarray, image: np.ndarray, model: IntensityModel, spacing: np.ndarray, reach_mm: float = 20.0,
    tube_radius_mm: float = 2.5,
) -> np.ndarray:
    """Let blood structures take enhanced blood that continues them (veins, vessel ends) up to ``reach_mm`` away.

    Atlases differ in where vessels are cut (pulmonary veins into the left atrium, caval veins into the right
    atrium, the length of the aorta and pulmonary trunk). Enhanced blood that was left outside but is wider than
    a coronary artery (``tube_radius_mm``) and touches a blood structure joins the nearest one.
    """
    smooth = ndimage.gaussian_filter(image.astype(np.float32), np.maximum(0.6 / spacing, 0.5))
    threshold = 0.5 * (model.means[LV_MYO] + min(model.means[v] for v in BLOOD_LABELS))
    bright = smooth > threshold
    if not (bright & (labels == 0)).any():
        return labels
    # Opening the whole enhanced region (not only what is left outside) keeps the rims of big structures and
    # drops only thin tubes.
    radius = np.maximum(np.round(tube_radius_mm / spacing).astype(int), 1)
    domain = ndimage.binary_opening(bright, structure=_ellipsoid(radius)) & (labels == 0)
    growing = [v for v in BLOOD_LABELS if v != AORTA]  # the aorta is followed by ``extend_aorta``
    blood = np.isin(labels, growing)
    components, count = ndimage.label(domain)
    if count == 0:
        return labels
    touching = np.unique(components[ndimage.binary_dilation(blood, iterations=2) & (components > 0)])
    domain = np.isin(components, touching[touching > 0])
    if not domain.any():
        return labels
    # Geodesic growth: all structures advance together one voxel layer at a time through the domain, so each
    # continuation goes to the structure it continues.
    grown = labels.copy()
    steps = int(np.ceil(reach_mm / float(spacing.min())))
    structure = ndimage.generate_binary_structure(3, 1)
    for _ in range(steps):
        front = np.zeros_like(grown)
        for value in growing:
            reached = ndimage.binary_dilation(grown == value, structure=structure) & domain & (front == 0)
            front[reached] = value
        if not front.any():
            break
        grown[front > 0] = front[front > 0]
        domain &= front == 0
    return grown


def extend_aorta(
    labels: np.ndarray, image: np.ndarray, model: IntensityModel, spacing: np.ndarray, core_radius_mm: float = 6.0
) -> np.ndarray:
    """Follow the aorta from its root through the arch and down the descending aorta, within the image.

    The atlas holds the root and the ascending aorta. Beyond it, the aorta is the enhanced tube wider than
    ``core_radius_mm``: the centres of maximal balls (distance-map core) connected to the registered aorta,
    and every enhanced voxel that the ball around its nearest core centre covers. Other structures are kept
    out, and branches narrower than the core (arch vessels, coronaries) are left aside.
    """
    aorta = labels == AORTA
    if not aorta.any():
        return labels
    smooth = ndimage.gaussian_filter(image.astype(np.float32), np.maximum(0.6 / spacing, 0.5))
    threshold = 0.5 * (model.means[LV_MYO] + model.means[AORTA])
    others = ndimage.binary_dilation((labels > 0) & ~aorta, iterations=1)
    bright = (smooth > threshold) & (smooth < model.means[AORTA] + 400.0) & ~others
    depth = ndimage.distance_transform_edt(bright, sampling=spacing)
    core = depth >= core_radius_mm
    components, count = ndimage.label(core, structure=np.ones((3, 3, 3)))
    if count == 0:
        return labels
    seeds = np.unique(components[core & aorta])
    seeds = seeds[seeds > 0]
    if seeds.size == 0:
        return labels
    core = np.isin(components, seeds)
    to_core, nearest = ndimage.distance_transform_edt(~core, sampling=spacing, return_indices=True)
    radius_there = depth[tuple(nearest)]
    covered = bright & (to_core <= radius_there + float(spacing.max()))
    extended = labels.copy()
    extended[covered & (labels == 0)] = AORTA
    return extended


def _ellipsoid(radius: np.ndarray) -> np.ndarray:
    zz, yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1, -radius[2] : radius[2] + 1]
    return (zz / max(radius[0], 1)) ** 2 + (yy / max(radius[1], 1)) ** 2 + (xx / max(radius[2], 1)) ** 2 <= 1.0


# ----------------------------------------------------------------------------------------------- pipeline


def segment_chambers(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    atlas: Atlas,
    working_spacing_mm: float = 1.0,
    bspline: bool = True,
    whole_aorta: bool = True,
    progress=None,
) -> ChamberResult:
    """Chambers, myocardium, aorta and pulmonary artery of a contrast CT; labels on the image's own grid.

    ``working_spacing_mm``: the classification grid when the image is finer; boundaries are then refined on the
    image's own grid.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    grid = Grid(image.shape, ijk_to_ras)
    check_ct(image)
    image2, grid2 = downsample_blocks(image, grid, 2.0)
    centre, blood_hu = locate_heart(image2, grid2)
    _report(progress, 0.1, f"heart located, blood pool about {blood_hu:.0f} HU")
    timings["locate"] = time.perf_counter() - started

    t = time.perf_counter()
    transform, model, info = register_atlas(image2, grid2, atlas, centre, blood_hu, bspline=bspline, progress=progress)
    timings["register"] = time.perf_counter() - t
    _report(progress, 0.6, "atlas registered")
    left = np.mean([model.means[v] for v in LEFT_BLOOD])
    if left < MIN_CONTRAST_HU:
        raise InputError(
            f"the blood pool measures {left:.0f} HU: this is not a contrast-enhanced CT (CTA blood is above"
            f" {MIN_CONTRAST_HU:.0f} HU); the segmentation needs contrast"
        )

    # Classification grid: the heart box (+15 mm), at ``working_spacing_mm`` when the image is finer.
    t = time.perf_counter()
    pad = 20  # 40 mm around the image: how much of the registered heart falls outside the field of view
    extended = grid2.crop(np.full(3, -pad), np.array(grid2.shape) + pad)
    warped_ext = resample_labels_through(atlas.labels, atlas.grid, extended, transform)
    warped2 = warped_ext[pad:-pad, pad:-pad, pad:-pad]
    check_heart_in_view(float((warped_ext > 0).sum()), float((warped2 > 0).sum()))
    low2, high2 = bounding_box(warped2 > 0, int(np.ceil(15.0 / 2.0)))
    corners = np.array([[a, b, c] for a in (low2[0], high2[0] - 1) for b in (low2[1], high2[1] - 1) for c in (low2[2], high2[2] - 1)])
    kji = grid.ras_to_kji(grid2.kji_to_ras(corners))
    low = np.maximum(np.floor(kji.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + 1, image.shape)
    roi_grid = grid.crop(low, high)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    roi = image[box].astype(np.float32)
    if np.all(roi_grid.spacing_kji >= 0.9 * working_spacing_mm):
        work_grid, work_image = roi_grid, roi
    else:
        work_image, work_grid = downsample_blocks(roi, roi_grid, working_spacing_mm)
    prior = resample_labels_through(atlas.labels, atlas.grid, work_grid, transform)
    model = fit_intensity_model(work_image, prior, work_grid.spacing_kji, model)
    timings["prior"] = time.perf_counter() - t
    _report(progress, 0.7, "classifying")

    t = time.perf_counter()
    labels_work = classify(work_image, work_grid, prior, model)
    labels_work = clean_labels(labels_work, prior, work_grid.spacing_kji)
    labels_work = grow_into_connected_blood(labels_work, work_image, model, work_grid.spacing_kji)
    timings["classify"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = np.zeros(image.shape, np.uint8)
    if work_grid is roi_grid:
        labels[box] = labels_work
    else:
        _report(progress, 0.9, "refining boundaries at full resolution")
        labels[box] = refine_to_grid(labels_work, work_grid, roi, roi_grid, model)
    timings["refine"] = time.perf_counter() - t

    aorta_trace = None
    if whole_aorta:
        t = time.perf_counter()
        _report(progress, 0.95, "following the aorta")
        labels, aorta_trace = follow_aorta(labels, image, grid, model, working_spacing_mm)
        timings["aorta"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    info["roi_kji"] = [low.tolist(), high.tolist()]
    info["working_spacing_mm"] = [round(float(v), 3) for v in work_grid.spacing_kji[::-1]]
    _report(progress, 1.0, "chambers segmented")
    if aorta_trace is not None:
        info["aorta_centerline_mm"] = round(aorta_trace.length_mm, 1)
        info["aorta_tracking_stopped"] = aorta_trace.stopped
    return ChamberResult(labels, grid, model, timings, info, aorta_trace)


def follow_aorta(
    labels: np.ndarray, image: np.ndarray, grid: Grid, model: IntensityModel, spacing_mm: float, rim_mm: float = 4.0
):
    """Trace the aorta beyond the atlas (arch, descending aorta) on a copy of the whole image at 1.5 mm or
    coarser and label it on the image's own grid; returns (labels, trace or None)."""
    from .aorta import AortaTrace, render_aorta, trace_aorta

    spacing_mm = max(spacing_mm, 1.5)
    if np.all(grid.spacing_kji >= 0.9 * spacing_mm):
        small_image, small_grid, small_labels = image, grid, labels
    else:
        small_image, small_grid = downsample_blocks(image, grid, spacing_mm)
        small_labels = resample(labels, grid, small_grid, order=0)
    wall = model.fat_hu + 0.5 * (model.means[LV_MYO] - model.fat_hu)
    lumen = 0.5 * (model.means[LV_MYO] + model.means[AORTA])
    trace = trace_aorta(small_labels, small_image, small_grid, wall, lumen)
    if trace is None:
        return labels, None
    edge = 0.5 * (model.fat_hu + model.means[AORTA])  # lumen against fat: half-way, where the true edge is
    rendered = render_aorta(labels, image, grid, trace, edge, rim_mm=rim_mm)
    # Away from the heart (arch, descending aorta) the aorta is the whole vessel within its traced wall, a
    # false lumen or mural thrombus included; near the heart its blurred rim would be confused with the
    # chambers', so there only the lumen counts.
    heart = (small_labels > 0) & (small_labels != AORTA)
    to_heart = ndimage.distance_transform_edt(~heart, sampling=small_grid.spacing_kji)
    far = ndimage.map_coordinates(to_heart, small_grid.ras_to_kji(trace.points).T, order=1, mode="nearest") > 15.0
    for run in _runs(far):
        if len(run) >= 5:
            part = AortaTrace(trace.points[run], trace.radii[run], trace.stopped)
            rendered = render_aorta(rendered, image, grid, part, wall, rim_mm=0.0, prune=False)
    # Keep the aorta in one piece: bright vessels that the prior called aorta but that are not connected to it go.
    aorta = rendered == AORTA
    low, high = bounding_box(aorta, 1)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    components, count = ndimage.label(aorta[box])
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        sub = rendered[box]
        sub[aorta[box] & (components != int(np.argmax(sizes)))] = 0
    return rendered, trace


def _runs(flags: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the consecutive runs of True in a boolean sequence."""
    index = np.flatnonzero(flags)
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) > 1) + 1
    return np.split(index, breaks)


def refine_to_grid(labels_work: np.ndarray, work_grid: Grid, image: np.ndarray, grid: Grid, model: IntensityModel):
    """Labels of the working grid carried to the (finer) image grid, with boundary voxels re-decided by intensity.

    Near every boundary the candidates are the labels met within one working voxel; each voxel takes the
    candidate whose intensity model fits its (lightly smoothed) HU best, its own label winning ties. Edges
    defined by intensity (blood, myocardium, fat) thus land at full resolution; edges between structures of
    equal intensity stay where the working grid put them.
    """
    upsampled = resample(labels_work, work_grid, grid, order=0)
    reach = np.maximum(np.ceil(work_grid.spacing_kji / grid.spacing_kji).astype(int), 1)
    size = tuple(int(2 * r + 1) for r in reach)
    highest = ndimage.maximum_filter(upsampled, size=size)
    lowest = ndimage.minimum_filter(upsampled, size=size)
    band = highest != lowest
    if not band.any():
        return upsampled
    smooth = ndimage.gaussian_filter(image, np.maximum(0.5 / grid.spacing_kji, 0.5))[band]
    current = upsampled[band]
    candidates = np.stack([current, highest[band], lowest[band]])
    scores = np.stack([_class_log_likelihood(smooth, c, model) for c in candidates])
    scores[0] += 0.5  # keep the current label unless another fits clearly better
    choice = candidates[np.argmax(scores, axis=0), np.arange(candidates.shape[1])]
    refined = upsampled.copy()
    refined[band] = choice
    return refined


def _class_log_likelihood(values: np.ndarray, labels: np.ndarray, model: IntensityModel) -> np.ndarray:
    """Per-voxel intensity log-likelihood of each voxel's own candidate label (0: outside, i.e. fat or lung).

    Near a boundary the choice is only between the structures met there, so "outside" is the fat around the
    heart (or darker): a blurred edge is then cut half-way between the two levels, where the true edge lies.
    """
    noise = max(model.noise_hu / 3.0, 8.0)
    sigma = max(noise, 25.0)
    means = np.array([model.fat_hu] + [model.means[v] for v in range(1, 8)], np.float32)
    score = _log_gauss(values, means[labels], sigma)
    darker_than_fat = (labels == 0) & (values < model.fat_hu)
    score[darker_than_fat] = -np.log(sigma)
    return score.astype(np.float32)


def _report(progress, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
