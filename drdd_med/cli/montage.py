"""``drdd-med montage``: save a PNG (source | target | mask, three planes) of one item of a data spec."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "montage_from_spec", "run"]

#: Display window of CT panels, HU: shows air, soft tissue and bone.
CT_WINDOW_HU = (-1000.0, 1500.0)


def montage_from_spec(spec_path: str | Path, out: str | Path, split: str = "training", index: int = 0) -> Path:
    """Montage of item ``index`` of ``split``: source | target | mask rows for axial, coronal and sagittal planes.

    When the item names its source domain, the sources of every item of the split that shares its target (the
    subject's other domains) are shown too, one column each.

    Volumes are read with the pipelines' reader and reoriented to RAS. The sagittal plane is taken off the midline
    (40 % of the width) so that it cuts through a hemisphere rather than the falx.

    Returns:
        The PNG path.
    """
    import numpy as np
    from monai.transforms import Compose, LoadImaged, Orientationd

    from drdd_med import keys
    from drdd_med.data.spec import load_spec
    from drdd_med.io.nifti import VolumeReader
    from drdd_med.visualize.montage import save_montage

    spec = load_spec(spec_path)
    items = spec.items(split)
    if not 0 <= index < len(items):
        raise ValueError(f"--index {index}: split {split!r} of {spec_path} has {len(items)} items.")
    item = items[index]
    same = [it for it in items if keys.DOMAIN in item and it.get(keys.TARGET) == item.get(keys.TARGET)] or [item]
    sources = {f"{keys.SOURCE}{i}": it[keys.SOURCE] for i, it in enumerate(same)}
    present = [*sources, *(k for k in (keys.TARGET, keys.MASK) if k in item)]
    data = Compose([LoadImaged(present, reader=VolumeReader(), image_only=True, ensure_channel_first=True),
                    Orientationd(present, axcodes="RAS", labels=None)])({**item, **sources})
    display = {f"{keys.SOURCE}{i}": (it.get(keys.DOMAIN, spec.source_modality),
                                     CT_WINDOW_HU if it.get(keys.DOMAIN) == "cbct" else None)
               for i, it in enumerate(same)}
    display.update({keys.TARGET: (spec.target_modality, CT_WINDOW_HU), keys.MASK: ("mask", (0.0, 1.0))})
    panels = [(display[k][0], data[k][0].numpy(), display[k][1]) for k in present]
    first = data[present[0]]
    spacing = np.sqrt((first.affine.numpy()[:3, :3] ** 2).sum(axis=0))
    shape = first.shape[1:]
    index_ijk = (int(shape[0] * 0.4), shape[1] // 2, shape[2] // 2)
    title = f"{spec.name}: {split}[{index}] {item.get('id', '')}".strip()
    return save_montage(out, panels, slice_index=index_ijk, spacing_mm=spacing, title=title)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``montage``."""
    p = subparsers.add_parser(
        "montage", help="save a PNG montage of one data spec item",
        description="Save a PNG with one column per image of a data spec item (source | target | mask) and one row "
                    "per plane (axial, coronal, sagittal), in RAS orientation with the patient's right on the left.",
    )
    p.add_argument("spec", type=Path, help="data spec JSON (e.g. data_specs/phantom.json)")
    p.add_argument("--out", type=Path, required=True, help="output PNG path")
    p.add_argument("--split", default="training", choices=("training", "validation", "test"), help="split (default: training)")
    p.add_argument("--index", type=int, default=0, help="item index within the split (default: 0)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the montage; print its path."""
    print(f"montage: {montage_from_spec(args.spec, args.out, args.split, args.index)}")
    return 0
