"""Dictionary keys and intensity constants shared by transforms, engines, bundles and I/O.

This module imports nothing, so every layer can depend on it.
"""

__all__ = [
    "SOURCE", "TARGET", "MASK", "DOMAIN", "DOMAIN_INDEX", "IMAGE", "PRED", "STD",
    "HU_MIN", "HU_MAX", "HU_AIR", "UNIT_MIN", "UNIT_MAX", "MODES",
]

#: Source image (e.g. MR), scaled to [-1, 1] by the transforms.
SOURCE = "source"
#: Target image (e.g. CT), scaled to [-1, 1] by the transforms.
TARGET = "target"
#: Optional body mask (binary).
MASK = "mask"
#: Optional source domain of a data spec item (one of ``drdd_med.data.domains.DOMAINS``, e.g. ``"t2w"``).
DOMAIN = "domain"
#: Position of an item's domain in the model's domain list: the class label of a domain-embedding model.
DOMAIN_INDEX = "domain_index"
#: Source key used by inference configs: MONAI Label / Deploy read the first input key, named ``image``.
IMAGE = "image"
#: Prediction key (synthetic target) in inference and evaluation pipelines.
PRED = "pred"
#: Per-voxel standard deviation of an ensemble of samples (uncertainty map).
STD = "pred_std"

#: Default CT window in Hounsfield units, mapped linearly to [UNIT_MIN, UNIT_MAX] (SynthRAD2025 range).
HU_MIN = -1024.0
HU_MAX = 3071.0
HU_AIR = -1000.0
UNIT_MIN = -1.0
UNIT_MAX = 1.0

#: Training and sampling modes: axial 2D slices, axial slices with neighbouring source slices as channels, 3D.
MODES = ("2d", "2.5d", "3d")
