"""What every codec family provides (torch-free): the protocol stream-level code is written against.

A *codec family* is a kind of model (the VQ tokenizer + context model of `pipeline.codec` is family "vq");
a *model* is one trained instance, named by its `model_id`, which every stream header records. The
stream layer (`pipeline.stream`), the archive flows and the actors use only what `CodecFamily` lists,
never a family's own configuration, so a new family plugs in by implementing it and registering its
model ids (`pipeline.registry.register_builtin`).

Chunks are the `.pgv` container's (`pipeline.pgv.pack_chunk`: one length-prefixed, checksummed chunk
per (GOP, layer)); what a chunk's payload means is the family's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the command line imports this module before numpy
    import numpy as np

PREDICT_MODES = ("argmax", "sample", "none")  # how a decoder fills the layers it did not receive
GENERATION_MODES = ("auto", "all")  # keyframe mode: encoder picks the generated prefix, or every frame


# How layers past K are filled when a stream is decoded from its first K layers (`--predict`). "none"
# (decode from the K layers alone) by measurement: latent-v1 at K = 1..6 on foreman/mobile, none ≥ argmax
# by 0.00–0.06 dB PSNR-Y (the context model's mean of a dead-zone quantised detail is ~0); the VQ model:
# none better than argmax on every dev clip (MODEL_CARD.md). "argmax"/"sample" stay available.
DEFAULT_PREDICT = "none"


@dataclass
class EncodedGop:
    """One GOP's coded layers: chunks[k] for layer k+1, plus per-layer statistics."""

    chunks: list[bytes]
    token_counts: list[int]
    checksums: list[int]
    ce_bits: list[float]
    generate: int | None = None  # keyframe mode: non-keyframes 1..generate get generated layers (None = all)

    @property
    def coded_bits(self) -> list[int]:
        return [8 * len(c) for c in self.chunks]


@runtime_checkable
class CodecFamily(Protocol):
    """A loaded model of some codec family.

    `scales` and `tile` are what the stream header records for the model (for the VQ family: the token
    map side per scale of a full tile, and the tile size in latent pixels); `n_layers` = the number of
    progressive layers a full stream has (= len(scales)).
    """

    model_id: str
    family: str

    @property
    def n_layers(self) -> int: ...

    @property
    def scales(self) -> tuple[int, ...]: ...

    @property
    def tile(self) -> int: ...

    def encode_gop(
        self, frames_THWC: np.ndarray, scales: int | None = None, gop_index: int = 0,
        frame_scales: int | None = None, generation: str = "auto",
    ) -> EncodedGop:
        """Encode one GOP (uint8 (T, H, W, 3), frame 0 = keyframe) into layers 1..K (K = `scales` or all),
        each chunk tagged with `gop_index`. `frame_scales` < K: keyframe mode (frames 1.. carry layers
        1..frame_scales only); `generation` "auto" lets the encoder choose `EncodedGop.generate`."""
        ...

    def decode_gop(
        self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = DEFAULT_PREDICT,
        seed: int = 0, gop_index: int | None = None, context: str = "", frame_scales: int | None = None,
        generate: int | None = None,
    ) -> np.ndarray:
        """Decode one GOP from its first K chunks -> (T, H, W, 3) uint8; layers K+1.. are predicted as
        `predict` says (`seed` for "sample"). `gop_index`/`context` only name errors. Stream-level code
        calls this through `pipeline.stream.decode_gop_frames`, which checks the chunks and the seed."""
        ...


@dataclass(frozen=True)
class CodecInfo:
    """What the stream layer needs to know about a model without holding it (e.g. the actors' model, as
    the driver sees it): the fields a stream header records, plus the family."""

    model_id: str
    family: str
    scales: tuple[int, ...]
    tile: int

    @property
    def n_layers(self) -> int:
        return len(self.scales)

    @classmethod
    def of(cls, codec: CodecFamily) -> CodecInfo:
        return cls(codec.model_id, codec.family, tuple(int(s) for s in codec.scales), int(codec.tile))
