"""nnU-Net's self-configuration (Isensee et al. 2021) in 2-D: fingerprint -> rules -> plan.

nnU-Net does not invent a new network. It measures a data set (:func:`dataset_fingerprint`:
image shapes, pixel spacings, foreground intensities, class frequencies) and turns the
measurements into a plain U-Net's configuration by fixed rules (:func:`plan_2d`):

1. **Initial patch.** A square of 2048 x 2048 pixels stretched to the spacing's aspect ratio
   (edges proportional to 1 / spacing, same area), clipped to the median image shape.
2. **Topology** (:func:`pool_and_conv_props`). Pool an axis while its feature map is at least
   8 pixels (2 x the 4-pixel minimum) and its spacing is within a factor 2 of the finest
   spacing; an axis whose spacing is still coarser gets kernel size 1 (no context to gain
   across it) until pooling the other axis has caught up. The patch is then padded up to a
   multiple of 2**pools per axis.
3. **Memory.** The number of feature-map elements a forward pass writes
   (:func:`feature_map_elements`, nnU-Net's VRAM proxy) must stay under a reference
   (85e6 for 8 GB, scaled by the memory target) for a batch of 2; while it does not, the axis
   largest relative to the median shape is shrunk by one pooling step.
4. **Batch size.** As many patches as the memory reference allows (12 at the reference), but
   at most 5 % of the data set's pixels per batch, and at least 2.
5. **Features** per stage 32 * 2**stage, capped at 512; two convolutions per stage, instance
   norm, leaky ReLU, strided convolutions to pool, transposed convolutions to upsample.
6. **Normalisation** by modality: CT images are clipped to the foreground's 0.5-99.5
   percentiles and z-scored with its mean and std; everything else is z-scored per image.
7. **Deep supervision** on every decoder resolution but the lowest, weights 1, 1/2, 1/4, ...
   (the lowest set to 0), normalised to sum 1.

The trainer is fixed, not planned (:class:`TrainerPlan`): SGD with Nesterov momentum 0.99,
learning rate 0.01 decayed as (1 - progress)**0.9, weight decay 3e-5, Dice + cross-entropy.

Checked against nnU-Net v2's source (``nnunetv2/experiment_planning/``, commit
``0e495086``; rules in ``default_experiment_planner.py`` and ``network_topology.py``, the
feature-map count in ``dynamic_network_architectures``). What this module simplifies, on
purpose: no resampling (images are planned at their median spacing, which nnU-Net also
takes as the target unless one axis is more than 3x coarser and has 3x fewer pixels, a 3-D
case), no cropping to the non-zero region (so no ``use_mask_for_norm``), no 3-D or cascade
configurations. The class frequencies are measured and shown, but nnU-Net has no rule that
reads them: it oversamples foreground in a third of each batch whatever they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .validation import finite_number, positive_int
from .variants import PlainConvUNet, deep_supervision_weights

__all__ = ["Fingerprint", "Plan2D", "TrainerPlan", "dataset_fingerprint", "feature_map_elements",
           "pool_and_conv_props", "plan_2d", "plan_dataset"]

#: nnU-Net v2's constants for 2-D plans (ExperimentPlanner.__init__).
INITIAL_PATCH_EDGE = 2048  # the initial patch holds 2048**2 pixels before clipping
REFERENCE_ELEMENTS = 85_000_000  # feature-map elements that fit the reference GPU ...
REFERENCE_GB = 8.0  # ... of this many GB ...
REFERENCE_BATCH = 12  # ... at this batch size
MIN_BATCH = 2
MIN_EDGE = 4  # smallest edge of a feature map at the bottleneck
BASE_FEATURES = 32
MAX_FEATURES = 512
MAX_DATASET_FRACTION = 0.05  # one batch sees at most 5 % of the data set's pixels
MAX_BATCH_WITHOUT_CASES = 512  # ours: nnU-Net always knows the case count to cap with


# --------------------------------------------------------------------------- the fingerprint
@dataclass(frozen=True)
class Fingerprint:
    """What nnU-Net measures of a data set before planning.

    ``shapes``: (H, W) of every image in pixels; ``spacings``: (dy, dx) of every image (any
    unit, per pixel); ``intensity``: statistics of the foreground pixels (mask > 0): mean,
    std, median, min, max, percentile_00_5, percentile_99_5; ``class_frequencies``: fraction
    of all pixels in each class; ``modality``: "CT" selects CT normalisation.
    """

    shapes: tuple[tuple[int, int], ...]
    spacings: tuple[tuple[float, float], ...]
    intensity: dict[str, float]
    class_frequencies: tuple[float, ...]
    modality: str = "EM"

    @property
    def n_cases(self) -> int:
        return len(self.shapes)

    @property
    def median_shape(self) -> tuple[float, float]:
        """Per-axis median of the shapes (a half pixel when the count is even, as in nnU-Net)."""
        m = np.median(np.array(self.shapes, dtype=np.float64), axis=0)
        return float(m[0]), float(m[1])

    @property
    def median_spacing(self) -> tuple[float, float]:
        m = np.median(np.array(self.spacings, dtype=np.float64), axis=0)
        return float(m[0]), float(m[1])


def dataset_fingerprint(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                        spacings: Sequence[tuple[float, float]] | None = None,
                        modality: str = "EM", max_samples: int = 100_000) -> Fingerprint:
    """Measure a data set: ``images`` (H, W) arrays, ``masks`` (H, W) integer class maps.

    ``spacings`` defaults to (1, 1) for every image. Intensity statistics are computed on at
    most ``max_samples`` foreground pixels drawn evenly from every image (nnU-Net samples too:
    the statistics need not see every pixel). Raises ValueError for empty or mismatched input.
    """
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(f"dataset_fingerprint needs as many masks as images, at least one; got "
                         f"{len(images)} images and {len(masks)} masks")
    spacings = [(1.0, 1.0)] * len(images) if spacings is None else list(spacings)
    if len(spacings) != len(images):
        raise ValueError(f"{len(spacings)} spacings for {len(images)} images")
    shapes, fg, counts = [], [], np.zeros(0, dtype=np.int64)
    per_image = max(1, max_samples // len(images))
    for k, (image, mask) in enumerate(zip(images, masks)):
        image, mask = np.asarray(image), np.asarray(mask)
        if image.ndim != 2 or image.shape != mask.shape:
            raise ValueError(f"image {k} has shape {image.shape} and its mask {mask.shape}; "
                             "both must be the same (H, W)")
        if mask.size and (mask.min() < 0 or not np.issubdtype(mask.dtype, np.integer)):
            raise ValueError(f"mask {k} must hold non-negative integer classes")
        shapes.append((int(image.shape[0]), int(image.shape[1])))
        counts = _add_counts(counts, np.bincount(mask.ravel()))
        values = image[mask > 0].astype(np.float64)
        fg.append(values[:: max(1, len(values) // per_image)])
    fg_all = np.concatenate(fg) if fg else np.zeros(0)
    if fg_all.size == 0:
        raise ValueError("no foreground pixel (mask > 0) in any image: nothing to plan for")
    intensity = {"mean": float(fg_all.mean()), "std": float(fg_all.std()),
                 "median": float(np.median(fg_all)), "min": float(fg_all.min()),
                 "max": float(fg_all.max()), "percentile_00_5": float(np.percentile(fg_all, 0.5)),
                 "percentile_99_5": float(np.percentile(fg_all, 99.5))}
    spacing_pairs = tuple((finite_number(a, "spacing", 0.0, strict=True),
                           finite_number(b, "spacing", 0.0, strict=True)) for a, b in spacings)
    return Fingerprint(tuple(shapes), spacing_pairs, intensity,
                       tuple(float(c) for c in counts / counts.sum()), modality)


def _add_counts(total: np.ndarray, new: np.ndarray) -> np.ndarray:
    n = max(len(total), len(new))
    return np.pad(total, (0, n - len(total))) + np.pad(new, (0, n - len(new)))


# --------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class Topology:
    """What :func:`pool_and_conv_props` decides for one patch and spacing."""

    pools_per_axis: tuple[int, int]
    pool_kernel_sizes: tuple[tuple[int, int], ...]  # per stage; stage 0 is (1, 1)
    conv_kernel_sizes: tuple[tuple[int, int], ...]  # per stage
    patch_size: tuple[int, int]  # padded to a multiple of 2**pools per axis

    @property
    def divisor(self) -> tuple[int, int]:
        return 2 ** self.pools_per_axis[0], 2 ** self.pools_per_axis[1]


def pool_and_conv_props(spacing: Sequence[float], patch_size: Sequence[float],
                        min_edge: int = MIN_EDGE) -> Topology:
    """Pool and kernel sizes of every stage, nnU-Net's rule (``get_pool_and_conv_props``).

    Each round pools every axis whose feature map is still at least ``2 * min_edge`` pixels
    and whose current spacing is less than twice the finest current spacing (a lone axis
    needs ``3 * min_edge``). Pooling an axis doubles its spacing. An axis gets 3x3 kernels
    from the first round in which its spacing is within a factor 2 of the finest, kernel
    size 1 before. The bottleneck stage always has 3x3 kernels.
    """
    spacing_now = [float(s) for s in spacing]
    size_now = [float(s) for s in patch_size]
    pools, kernel = [0, 0], [1, 1]
    pool_kernels: list[tuple[int, int]] = [(1, 1)]
    conv_kernels: list[tuple[int, int]] = []
    while True:
        axes = [a for a in (0, 1) if size_now[a] >= 2 * min_edge]
        if not axes:
            break
        finest = min(spacing_now[a] for a in axes)
        axes = [a for a in axes if spacing_now[a] / finest < 2]
        if len(axes) == 1 and size_now[axes[0]] < 3 * min_edge:
            break  # pooling one axis alone must leave it room
        for a in (0, 1):  # kernels grow to 3 once the axis is as fine as the finest
            if spacing_now[a] / min(spacing_now) < 2:
                kernel[a] = 3
        step = [1, 1]
        for a in axes:
            step[a], pools[a] = 2, pools[a] + 1
            spacing_now[a] *= 2
            size_now[a] = math.ceil(size_now[a] / 2)
        pool_kernels.append((step[0], step[1]))
        conv_kernels.append((kernel[0], kernel[1]))
    conv_kernels.append((3, 3))  # the bottleneck
    divisor = [2 ** p for p in pools]
    padded = tuple(int(math.ceil(float(s) / d) * d) for s, d in zip(patch_size, divisor))
    return Topology((pools[0], pools[1]), tuple(pool_kernels), tuple(conv_kernels),
                    (padded[0], padded[1]))


def features_per_stage(stages: int, base: int = BASE_FEATURES,
                       cap: int = MAX_FEATURES) -> tuple[int, ...]:
    """``base * 2**s`` for each stage, capped at ``cap`` (512 in 2-D)."""
    return tuple(min(cap, base * 2**s) for s in range(stages))


def feature_map_elements(patch_size: Sequence[int], topology: Topology,
                         features: Sequence[int], num_classes: int,
                         convs_per_stage: int = 2) -> int:
    """Elements written by the convolutions of one forward pass of one patch.

    nnU-Net's proxy for GPU memory (``compute_conv_feature_map_size``): every convolution's
    output (channels x pixels) in the encoder and the decoder, every transposed
    convolution's, and the segmentation head's at full resolution.
    """
    size = [int(patch_size[0]), int(patch_size[1])]
    sizes = []  # the feature map's size at each stage
    total = 0
    for step, c in zip(topology.pool_kernel_sizes, features):
        size = [size[0] // step[0], size[1] // step[1]]
        sizes.append(size)
        total += convs_per_stage * c * size[0] * size[1]
    for stage in reversed(range(len(sizes) - 1)):  # decoder: up to the stage above
        c, (h, w) = features[stage], sizes[stage]
        total += convs_per_stage * c * h * w + c * h * w  # its convs + the transposed conv
    total += num_classes * sizes[0][0] * sizes[0][1]
    return int(total)


@dataclass(frozen=True)
class TrainerPlan:
    """nnU-Net's fixed training recipe (``nnUNetTrainer``): the same for every data set."""

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    lr_schedule: str = "poly"  # (1 - progress) ** 0.9
    poly_exponent: float = 0.9
    loss: str = "dice_ce"  # soft Dice (batch Dice, no background) + cross-entropy, weights 1:1
    epochs: int = 1000
    steps_per_epoch: int = 250
    foreground_oversampling: float = 0.33


@dataclass(frozen=True)
class Plan2D:
    """A 2-D configuration planned by :func:`plan_2d`. Build its network with :meth:`network`.

    ``patch_size`` (H, W) px and ``pools_per_axis`` are tuples of two ints; the per-stage
    tuples have one entry per resolution stage (``len(features)``).
    """

    patch_size: tuple[int, int]
    pools_per_axis: tuple[int, int]
    pool_kernel_sizes: tuple[tuple[int, int], ...]
    conv_kernel_sizes: tuple[tuple[int, int], ...]
    features: tuple[int, ...]
    batch_size: int
    normalization: str
    deep_supervision_weights: tuple[float, ...]
    spacing: tuple[float, float]
    median_shape: tuple[float, float]
    feature_map_elements: int  # for one patch
    memory_reference: float  # elements allowed per patch pair (batch 2)
    # every patch the memory rule tried, with its feature-map elements, the initial one first
    tried: tuple[tuple[tuple[int, int], int], ...] = ()
    trainer: TrainerPlan = field(default_factory=TrainerPlan)

    @property
    def stages(self) -> int:
        return len(self.features)

    def network(self, in_channels: int = 1, num_classes: int = 2, deep_supervision: bool = True):
        """A freshly initialised :class:`~unet_course.variants.PlainConvUNet` of this plan."""
        return PlainConvUNet(in_channels, num_classes, features=self.features,
                             conv_kernel_sizes=self.conv_kernel_sizes,
                             pool_kernel_sizes=self.pool_kernel_sizes,
                             deep_supervision=deep_supervision)

    def summary(self) -> str:
        """A few lines a reader can compare with nnU-Net's printed plans."""
        return "\n".join([
            f"patch size         {self.patch_size[0]} x {self.patch_size[1]} px "
            f"(median image {self.median_shape[0]:g} x {self.median_shape[1]:g})",
            f"poolings per axis  {self.pools_per_axis}",
            f"pool kernels       {list(self.pool_kernel_sizes)}",
            f"conv kernels       {list(self.conv_kernel_sizes)}",
            f"features           {list(self.features)}",
            f"batch size         {self.batch_size}",
            f"normalisation      {self.normalization}",
            "deep supervision   " + ", ".join(f"{w:.3f}" for w in self.deep_supervision_weights),
        ])


def _initial_patch(median: tuple[float, ...], spacing: tuple[float, ...]) -> list[float]:
    """Rule 1's patch (H, W) in px; a ValueError where it leaves nothing to plan a U-Net on."""
    scale = (INITIAL_PATCH_EDGE**2 * spacing[0] * spacing[1]) ** 0.5  # edges are scale / spacing
    patch = [min(round(scale / s), m) for s, m in zip(spacing, median)]
    if min(patch) < 1 or pool_and_conv_props(spacing, patch).pools_per_axis == (0, 0):
        raise ValueError(f"median shape {median[0]:g} x {median[1]:g} px at spacing {spacing[0]:g} "
                         f"x {spacing[1]:g} gives a patch of {patch[0]:g} x {patch[1]:g} px, too "
                         f"small to plan a U-Net: an axis is pooled from {2 * MIN_EDGE} px on "
                         f"({3 * MIN_EDGE} px alone); spacings over {2 * INITIAL_PATCH_EDGE}**2 "
                         "apart make an axis 0 px")
    return patch


def plan_2d(median_shape: Sequence[float], spacing: Sequence[float] = (1.0, 1.0), *,
            n_cases: int | None = None, num_classes: int = 2, modality: str = "EM",
            gpu_memory_gb: float = REFERENCE_GB, base_features: int = BASE_FEATURES,
            max_features: int = MAX_FEATURES) -> Plan2D:
    """nnU-Net's 2-D configuration for images of ``median_shape`` (H, W) px at ``spacing``.

    ``n_cases`` (images in the data set) caps the batch at 5 % of its pixels; None caps it at
    ``MAX_BATCH_WITHOUT_CASES``. ``gpu_memory_gb`` scales the memory reference (8 GB in nnU-Net);
    ``base_features`` and ``max_features`` (32 and 512) set the widths. Smaller values of
    these three plan a network for a CPU with the same rules.

    >>> plan_2d((512, 512)).patch_size, plan_2d((512, 512)).pools_per_axis
    ((512, 512), (7, 7))
    """
    median = tuple(finite_number(s, "median_shape", 0.0, strict=True) for s in median_shape)
    spacing = tuple(finite_number(s, "spacing", 0.0, strict=True) for s in spacing)
    if len(median) != 2 or len(spacing) != 2:
        raise ValueError(f"plan_2d plans 2-D images: median_shape and spacing need two values, "
                         f"got {tuple(median_shape)} and {tuple(spacing)}")
    num_classes = positive_int(num_classes, "num_classes", 2)
    gpu_memory_gb = finite_number(gpu_memory_gb, "gpu_memory_gb", 0.0, strict=True)
    base_features = positive_int(base_features, "base_features")
    max_features = positive_int(max_features, "max_features")

    # 1. a patch of 2048**2 pixels in the spacing's aspect ratio, clipped to the median image
    patch = _initial_patch(median, spacing)

    def estimate(topology: Topology) -> int:
        feats = features_per_stage(len(topology.pool_kernel_sizes), base_features, max_features)
        return feature_map_elements(topology.patch_size, topology, feats, num_classes)

    # 2. the topology, 3. shrink while a batch of two does not fit the memory reference
    topology = pool_and_conv_props(spacing, patch)
    reference = REFERENCE_ELEMENTS * gpu_memory_gb / REFERENCE_GB
    elements = estimate(topology)
    tried = [(topology.patch_size, elements)]
    while elements / REFERENCE_BATCH * MIN_BATCH > reference:
        size = list(topology.patch_size)
        axis = int(np.argsort([p / m for p, m in zip(size, median)])[-1])
        # one pooling step of the smaller patch, not of this one: 256 -> 224, not 192
        trial = list(size)
        trial[axis] -= topology.divisor[axis]
        if trial[axis] < 1:
            raise ValueError(f"no patch fits a memory target of {gpu_memory_gb} GB with "
                             f"{base_features} base features; raise gpu_memory_gb")
        size[axis] -= pool_and_conv_props(spacing, trial).divisor[axis]
        topology = pool_and_conv_props(spacing, size)
        elements = estimate(topology)
        tried.append((topology.patch_size, elements))

    # 4. batch size: what the memory allows, at most 5 % of the data set, at least two
    batch, cap = round(reference / elements * REFERENCE_BATCH), MAX_BATCH_WITHOUT_CASES
    if n_cases is not None:
        n_cases = positive_int(n_cases, "n_cases")
        pixels = median[0] * median[1] * n_cases
        cap = round(pixels * MAX_DATASET_FRACTION / np.prod(topology.patch_size))
    batch = max(min(batch, cap), MIN_BATCH)

    stages = len(topology.pool_kernel_sizes)
    return Plan2D(
        patch_size=topology.patch_size, pools_per_axis=topology.pools_per_axis,
        pool_kernel_sizes=topology.pool_kernel_sizes,
        conv_kernel_sizes=topology.conv_kernel_sizes,
        features=features_per_stage(stages, base_features, max_features), batch_size=int(batch),
        normalization="CTNormalization" if modality.upper() == "CT" else "ZScoreNormalization",
        deep_supervision_weights=deep_supervision_weights(stages),
        spacing=(spacing[0], spacing[1]), median_shape=(median[0], median[1]),
        feature_map_elements=elements, memory_reference=reference, tried=tuple(tried))


def plan_dataset(fingerprint: Fingerprint, **kwargs) -> Plan2D:
    """:func:`plan_2d` for a measured data set (its median shape, median spacing, cases)."""
    return plan_2d(fingerprint.median_shape, fingerprint.median_spacing,
                   n_cases=fingerprint.n_cases, modality=fingerprint.modality, **kwargs)


def normalize(image: np.ndarray, plan: Plan2D, fingerprint: Fingerprint | None = None) -> np.ndarray:
    """Apply the plan's normalisation to one (H, W) image; float32 out.

    Z-score: the image's own mean and std. CT: clip to the foreground's 0.5-99.5 percentiles,
    then the foreground's mean and std (from ``fingerprint``, required).
    """
    image = np.asarray(image, dtype=np.float32)
    if plan.normalization == "CTNormalization":
        if fingerprint is None:
            raise ValueError("CT normalisation needs the data set's fingerprint")
        s = fingerprint.intensity
        image = np.clip(image, s["percentile_00_5"], s["percentile_99_5"])
        return (image - s["mean"]) / max(s["std"], 1e-8)
    return (image - image.mean()) / max(float(image.std()), 1e-8)
