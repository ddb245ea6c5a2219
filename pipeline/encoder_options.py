"""Encoder settings a user chooses per encode (`--fidelity`, `--effort`): names, defaults, checks.

Plain Python (no numpy, no torch), so the command line can offer and check them before anything heavy is
imported. They apply to codec families that register an encoder hook (`pipeline.registry.register_encoder`:
the latent family); `pipeline.stream.encoder_for(codec, fidelity, effort)` turns a loaded model into the
encoder for those settings, and the stream header records them (`StreamHeader.encoder`).

- fidelity: 0..100, the rate knob (higher = more bits, better pictures); default 60.
- effort: "fast" | "medium" | "slow", the encoder's work per GOP (same decoder); default "medium".
"""

from __future__ import annotations

import argparse
import math

from pipeline.errors import ProGVCError

EFFORTS = ("fast", "medium", "slow")
DEFAULT_FIDELITY = 60.0
DEFAULT_EFFORT = "medium"
FLAGS = "--fidelity/--effort"


def check(fidelity: float | None, effort: str | None) -> tuple[float | None, str | None]:
    """(fidelity, effort) validated (None = the family's default); ProGVCError naming the flag otherwise."""
    if fidelity is not None:
        if isinstance(fidelity, bool) or not isinstance(fidelity, (int, float)):
            raise ProGVCError(f"--fidelity {fidelity!r}: use a number 0..100")
        if not (math.isfinite(fidelity) and 0 <= fidelity <= 100):
            raise ProGVCError(f"--fidelity {fidelity}: out of range, use 0..100 (higher = more bits, better "
                              f"pictures; default {DEFAULT_FIDELITY:g})")
        fidelity = float(fidelity)
    if effort is not None and effort not in EFFORTS:
        raise ProGVCError(f"--effort {effort!r}: use one of {', '.join(EFFORTS)} (default {DEFAULT_EFFORT})")
    return fidelity, effort


def fidelity_arg(text: str) -> float:
    """argparse type of `--fidelity`: a number 0..100 (a bad value is a one-line usage error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (use 0..100)") from None
    try:
        return check(value, None)[0]
    except ProGVCError:
        raise argparse.ArgumentTypeError(f"{text} is out of range: use 0..100") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`--fidelity F` and `--effort fast|medium|slow` on an encoding command (default None = the family's
    default, so a family without these settings can tell that they were not asked for)."""
    p.add_argument("--fidelity", type=fidelity_arg, default=None, metavar="F",
                   help=f"latent family: rate knob 0..100 (higher = more bits, better pictures; default "
                        f"{DEFAULT_FIDELITY:g})")
    p.add_argument("--effort", choices=EFFORTS, default=None,
                   help=f"latent family: encoder work per GOP, {'|'.join(EFFORTS)} (default {DEFAULT_EFFORT}; "
                        "the decoder is the same)")


def describe(settings: dict | None) -> str:
    """`fidelity=60 effort=medium` (a header's `encoder` field) for `progvc info` and logs; "" for None."""
    if not settings:
        return ""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
