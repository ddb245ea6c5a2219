"""The latent codec family ("latent-v1"): per-GOP overfitted context model over integer multi-resolution
latent grids (wavelet sub-bands), no dataset training. Importing it registers the builtin model id."""

from __future__ import annotations

from pipeline import registry

MODEL_ID = "latent-v1"


def _factory(spec: str, device: str):
    from pipeline.latent.codec import LatentCodec

    return LatentCodec()


registry.register_builtin(MODEL_ID, _factory, family="latent",
                          note="overfitted latent grids + integer ARM; needs no weights file")
