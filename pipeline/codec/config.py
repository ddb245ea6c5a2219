"""Codec hyper-parameters (tokenizer + context model), stored inside every weights file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class CodecConfig:
    """Shape of a ProGVC model.

    The tokenizer maps an RGB frame (H, W) to a latent of `latent_dim` channels at stride 16,
    cut into `tile`×`tile` latent tiles (the last row/column may be smaller); each tile is coded
    by multi-scale residual VQ with the `scales` schedule (token map side per scale for a full tile)
    and one shared codebook of `codebook_size` codes.
    """

    latent_dim: int = 32
    enc_channels: tuple[int, ...] = (32, 64, 96, 128)  # one stride-2 stage each: 4 stages = stride 16
    codebook_size: int = 1024
    scales: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    tile: int = 16
    phi_count: int = 4  # φ refinement convs shared across scales (VAR "partially shared")
    phi_ratio: float = 0.5  # f += (1 - r) * z + r * φ(z)
    ctx_dim: int = 128
    ctx_layers: int = 3
    ctx_heads: int = 4
    ctx_mlp: int = 3

    @property
    def stride(self) -> int:
        return 2 ** len(self.enc_channels)

    @property
    def n_scales(self) -> int:
        return len(self.scales)

    @classmethod
    def default(cls) -> CodecConfig:
        return cls()

    @classmethod
    def tiny(cls) -> CodecConfig:
        """A very small model for tests: 64×64 frames, 4 frames in well under a second."""
        return cls(
            latent_dim=8,
            enc_channels=(8, 8, 16, 16),
            codebook_size=64,
            scales=(1, 2, 3, 4),
            tile=4,
            phi_count=2,
            ctx_dim=32,
            ctx_layers=1,
            ctx_heads=2,
            ctx_mlp=2,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        d["scales"] = list(self.scales)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("enc_channels", "scales"):
            if k in kw:
                kw[k] = tuple(int(v) for v in kw[k])
        return cls(**kw)


_ = field  # re-exported for callers building variants
