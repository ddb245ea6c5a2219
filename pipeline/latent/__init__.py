"""The latent codec family ("latent-v1"): per-GOP overfitted context model over integer multi-resolution
latent grids (wavelet sub-bands), no dataset training. Importing it registers the builtin model id and the
family's encoder hook (`--fidelity` = `LatentCodec(quality=...)`, `--effort`); torch is imported only when
a codec is made."""

from __future__ import annotations

from pipeline import registry
from pipeline.encoder_options import DEFAULT_EFFORT, DEFAULT_FIDELITY, check

MODEL_ID = "latent-v1"
FAMILY = "latent"


def configured(fidelity: float | None = None, effort: str | None = None):
    """The latent encoder for `fidelity` (0..100, the rate knob: `LatentCodec(quality=fidelity)`) and `effort`
    ("fast" | "medium" | "slow"); None = the default (60, "medium"). Any instance decodes any latent-v1
    stream: the GOP's parameters travel in its first layer."""
    from pipeline.latent.codec import LatentCodec

    fidelity, effort = check(fidelity, effort)
    return LatentCodec(quality=DEFAULT_FIDELITY if fidelity is None else fidelity,
                       effort=effort or DEFAULT_EFFORT)


def settings(codec) -> dict:
    """What a latent encoder records in the stream header: {"fidelity": 60, "effort": "medium"}."""
    q = float(codec.quality)
    return {"fidelity": int(q) if q.is_integer() else q, "effort": codec.effort.name}


def _configure(codec, fidelity: float | None, effort: str | None):
    if fidelity is None and effort is None:
        return codec
    cur = settings(codec)
    return configured(cur["fidelity"] if fidelity is None else fidelity, effort or cur["effort"])


def _factory(spec: str, device: str):
    return configured()


registry.register_builtin(MODEL_ID, _factory, family=FAMILY,
                          note="overfitted latent grids + integer ARM; needs no weights file")
registry.register_encoder(FAMILY, _configure, settings)
registry.register_modes(FAMILY, ("plain",))  # no keyframe mode yet
