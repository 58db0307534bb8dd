"""The options of the subcommands that run a trained bundle (translate, evaluate, export), and the one-line error
exit every subcommand uses."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["add_bundle_options", "add_sampling_options", "parse_steps", "positive_int", "quiet_optional_decoders",
           "unit_interval", "user_error"]


def parse_steps(text: str) -> tuple[int, int]:
    """``"R,N"`` -> (residual_steps, noise_steps); raises ``argparse.ArgumentTypeError`` with an example."""
    try:
        residual, noise = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps {text!r}: expected two integers 'R,N', e.g. --steps 2,2") from None
    from drdd_med.diffusion.scheduler import sampling_problem

    problem = sampling_problem(residual, noise)
    if problem:
        raise argparse.ArgumentTypeError(f"--steps {text!r}: {problem}.")
    return residual, noise


def positive_int(text: str) -> int:
    """An integer >= 1, else ``argparse.ArgumentTypeError``."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}.")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1], else ``argparse.ArgumentTypeError``."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}.")
    return value


def add_bundle_options(parser: argparse.ArgumentParser) -> None:
    """``--bundle`` (the trained bundle, default bundles/drdd) and the required ``--out`` folder."""
    parser.add_argument("--bundle", type=Path, default=None, help="trained bundle folder (default: bundles/drdd)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")


def add_sampling_options(parser: argparse.ArgumentParser, samples_help: str) -> None:
    """``--steps R,N``, ``--samples N``, ``--noise-correlation``, ``--device`` and ``--seed``: how the bundle's model
    samples."""
    parser.add_argument("--steps", type=parse_steps, default=None, metavar="R,N",
                        help="residual and noise sampling steps (default: the model's, 1,2 for the bundle's; a "
                             "model trained with residual_train_timesteps 'sampler' takes only its own residual "
                             "count)")
    parser.add_argument("--samples", type=positive_int, default=1, metavar="N", help=f"{samples_help} (default: 1)")
    parser.add_argument("--noise-correlation", type=unit_interval, default=None, metavar="RHO",
                        help="2D / 2.5D models: correlation of the noise fields of adjacent axial slices; 1 = one "
                             "field shared by every slice (streaks along z), 0 = independent slices (stripes) "
                             "(default: 0.5, which measured closest to the CT across slices)")
    parser.add_argument("--device", default="auto",
                        help="auto (GPU if available), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same sCT (default: 0)")


def user_error(command: str, exc: BaseException) -> int:
    """Print ``drdd-med <command>: error: <exc>`` on stderr and return the exit status of bad input, 2."""
    print(f"drdd-med {command}: error: {exc}", file=sys.stderr)
    return 2


def quiet_optional_decoders() -> None:
    """MONAI warns on every DICOM read that the optional nvImageCodec GPU decoder is absent; pydicom decodes fine."""
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
