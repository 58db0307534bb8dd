"""``drdd-med export``: a trained bundle's two networks -> ``residual.onnx`` and ``noise.onnx`` (ONNX Runtime)."""

from __future__ import annotations

import argparse
import json

from drdd_med.cli.options import add_bundle_options, user_error

__all__ = ["add_parser", "run"]

#: Shown in --help without importing torch; equal to drdd_med.export.onnx.DEFAULT_OPSET (checked by the tests).
_DEFAULT_OPSET = 17

_EPILOG = """\
examples:
  # export and verify the default bundle's networks to onnx/residual.onnx and onnx/noise.onnx
  drdd-med export --bundle bundles/drdd --out onnx

  # another opset, without the ONNX Runtime check (faster for large 3D models)
  drdd-med export --bundle bundles/drdd --out onnx --opset 18 --no-verify

outputs (written atomically, mode 0644; a failed check writes nothing):
  residual.onnx, noise.onnx   inputs x (B, C_in, *spatial) float32 (= cat[x_t, source], or x_t for an
                              unconditional noise net) and t (B,) float32; output y (B, Ct, *spatial).
                              Batch and spatial sizes are dynamic (spatial: multiples of metadata 'divisor').
                              metadata_props: stage, channels, divisor, noise_level, noise_conditioned,
                              spatial_dims and the bundle's model_config (JSON).

use from Python (same call convention as DRDDNet, e.g. inside the volume inferer):
  from drdd_med.export import OnnxDRDDNet
  net = OnnxDRDDNet.from_dir("onnx", intra_op_num_threads=2)

needs the optional dependencies: pip install drdd_med[export]
exit status: 0 written; 2 no trained bundle, missing dependencies or a failed check.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export``."""
    p = subparsers.add_parser(
        "export", help="export a trained bundle's networks to ONNX (checked with ONNX Runtime)",
        description="Export the residual and noise networks of a trained bundle to two ONNX files with dynamic "
                    "batch and spatial sizes, check them against torch with ONNX Runtime on random inputs, and "
                    "print the paths and the largest differences.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bundle_options(p)
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help=f"ONNX opset version (default: {_DEFAULT_OPSET})")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="compare ONNX Runtime with torch before writing (default: on)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Export; print the two paths and the max |onnx - torch|; return 0 (2 for a missing model or dependency)."""
    from drdd_med.export.onnx import DEFAULT_OPSET, export_onnx
    from drdd_med.workflows.model_config import ModelConfig, load_weights
    from drdd_med.workflows.paths import default_bundle_dir

    bundle = args.bundle or default_bundle_dir()
    try:
        config = ModelConfig.load(bundle)
        network = load_weights(config.build_network(), bundle)
    except FileNotFoundError as exc:
        return user_error("export", exc)
    measured: dict[str, float] = {}
    try:
        paths = export_onnx(network, args.out, config.spatial_dims, opset=args.opset or DEFAULT_OPSET,
                            verify=args.verify, metadata={"model_config": json.dumps(config.to_dict(), sort_keys=True)},
                            measured=measured)
    except ImportError as exc:
        return user_error("export", exc)
    width = max(len(stage) for stage in paths)
    for stage, path in paths.items():
        check = f"max |onnx - torch| = {measured[stage]:.3g}" if stage in measured else "not verified"
        print(f"{stage + ':':<{width + 1}} {path}  ({check})")
    return 0
