"""Typed requests for the codec actors: one dataclass per actor method, sent with `CodecPool.call/map`.

Each request names the actor method that serves it (`method`), so the driver never calls actors by
method-name strings with positional tuples; a field added to a request is added in one place. Plain data
(no torch, no Ray).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.codec_api import DEFAULT_PREDICT
from pipeline.stream import GopRun


@dataclass(frozen=True)
class InfoRequest:
    """The actor's model (`CodecInfo` fields), device and name, as a dict."""

    method: ClassVar[str] = "info"


@dataclass(frozen=True)
class IdentifyRequest:
    """Content hash and size of a source (downloaded first when on S3) -> `SourceInfo`."""

    method: ClassVar[str] = "identify"
    source: str


@dataclass(frozen=True)
class PlanRequest:
    """Probe a source and plan its GOPs with colour-distance keyframes -> `SourcePlan`."""

    method: ClassVar[str] = "plan"
    source: str
    video_id: str
    max_gop: int = 16
    threshold: float | None = None


@dataclass(frozen=True)
class EncodeRequest:
    """Encode consecutive GOPs `[(gop_index, first_frame, frame_count)]` of one source, layers 1..`scales`
    (None: all) -> list of `GopResult`. `quality`: also measure PSNR-Y/MS-SSIM at every K; `frame_scales`:
    keyframe mode; `fidelity`/`effort`: encoder settings (`pipeline.stream.encoder_for`; None = the model's
    defaults; families without them refuse them)."""

    method: ClassVar[str] = "encode_unit"
    source: str
    gops: list[tuple[int, int, int]]
    scales: int | None = None
    quality: bool = False
    frame_scales: int | None = None
    fidelity: float | None = None
    effort: str | None = None


@dataclass(frozen=True)
class DecodeRequest:
    """Decode a run of consecutive GOPs of one stream -> (sum T, H, W, 3) uint8, exactly as
    `pipeline.stream.decode_run` does in any process (GOP g sampled with `seed + g`). `context` (e.g. the
    video id) names errors."""

    method: ClassVar[str] = "decode_gops"
    run: GopRun
    predict: str = DEFAULT_PREDICT
    seed: int = 0
    context: str = ""


Request = InfoRequest | IdentifyRequest | PlanRequest | EncodeRequest | DecodeRequest
