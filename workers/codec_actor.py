"""`CodecActor`: a Ray actor that holds one loaded codec and works on its own input.

The driver sends only small descriptions (source URI, frame ranges); the actor downloads (S3) or opens
(local path) the source itself, decodes its frame range, encodes GOPs and returns the per-scale chunks
and stats. Raw frames never travel through the driver. It decodes archived chunks for re-serving too.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import ProGVCError
from workers.requests import DecodeRequest, EncodeRequest, IdentifyRequest, InfoRequest, PlanRequest


def load_codec(model: str | None, device: str = "cpu"):
    """The codec for a model spec: a model id, a weights path, `random:tiny:<seed>` (tests), or None for the
    registry's default model (`pipeline.registry.open_codec`)."""
    from pipeline.registry import open_codec

    return open_codec(model, device)


def content_id(path: str | Path) -> str:
    """`video_id` of a source: the archive's content hash of its bytes (`pipeline.archive.video_id_of`)."""
    from pipeline.archive import video_id_of

    return video_id_of(str(path))


@dataclass
class SourceInfo:
    """What `identify` learns about one source (cheap: hashing only)."""

    source: str
    video_id: str
    size_bytes: int


@dataclass
class SourcePlan:
    """A probed source and its GOP plan: `gops` = [(first_frame, frame_count, keyframe)]."""

    source: str
    video_id: str
    size_bytes: int
    width: int
    height: int
    fps_num: int
    fps_den: int
    frame_count: int
    gops: list[tuple[int, int, bool]]
    seek_points: list[int]
    plan_s: float
    video_bytes: int = 0  # the source's video-stream bytes (its packets; `VideoInfo.video_bytes`)
    timing_warning: str | None = None  # variable frame rate (`video_io.variable_timing`): timing not archived


@dataclass
class GopResult:
    """One encoded GOP: chunk k holds scale k+1 of all its frames."""

    gop_index: int
    first_frame: int
    frame_count: int
    chunks: list[bytes]
    token_counts: list[int]
    checksums: list[int]
    ce_bits: list[float]
    busy_s: float = 0.0  # actor wall time spent on this GOP (its share of reading + encoding)
    actor: str = ""
    extra: dict = field(default_factory=dict)
    generate: int | None = None  # keyframe mode: frames 1..generate get generated scales (EncodedGop.generate)
    encoder: dict | None = None  # the encoder's settings (pipeline.stream.encoder_settings), for the header


class _SourceCache:
    """Local copies of `s3://` sources, a few at a time (least recently used evicted)."""

    def __init__(self, s3_endpoint: str | None, keep: int = 4):
        self.s3_endpoint = s3_endpoint
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="progvc-src-"))
        self.files: OrderedDict[str, Path] = OrderedDict()

    def local(self, source: str) -> Path:
        if not source.startswith("s3://"):
            return Path(source)
        if source in self.files:
            self.files.move_to_end(source)
            return self.files[source]
        from pipeline.store import open_store, split_uri

        parent, key = split_uri(source)
        store = open_store(parent, s3_endpoint=self.s3_endpoint)
        dst = self.dir / (hashlib.sha1(source.encode()).hexdigest()[:16] + Path(key).suffix)
        tmp = dst.with_name(dst.name + ".part")
        with open(tmp, "wb") as f:
            for block in store.iter_bytes(key):
                f.write(block)
        tmp.replace(dst)
        self.files[source] = dst
        while len(self.files) > self.keep:
            _, old = self.files.popitem(last=False)
            old.unlink(missing_ok=True)
        return dst


@contextmanager
def _named_as(source: str, path: Path):
    """Errors that name the actor's local copy of an S3 source name the source URI instead."""
    try:
        yield
    except ProGVCError as exc:
        if str(path) != source and str(path) in str(exc):
            raise type(exc)(str(exc).replace(str(path), source)) from exc
        raise


class CodecActor:
    """Plain class; `workers.pool` wraps it with `ray.remote` and the resources the cluster has."""

    def __init__(self, model: str | None, device: str = "cpu", threads: int = 1, s3_endpoint: str | None = None,
                 env: dict[str, str] | None = None):
        if env:  # S3 settings of the driver (embedded local Ray only, see workers.pool.local_s3_env)
            os.environ.update(env)
        import torch

        torch.set_num_threads(max(1, threads))
        self.device = device
        self.codec = load_codec(model, device)
        self.sources = _SourceCache(s3_endpoint)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def info(self, req: InfoRequest | None = None) -> dict:
        return {
            "model_id": self.codec.model_id,
            "family": self.codec.family,
            "scales": list(self.codec.scales),
            "tile": int(self.codec.tile),
            "device": self.device,
            "actor": self.name,
        }

    def identify(self, req: IdentifyRequest) -> SourceInfo:
        """Content hash and size of a source (downloading it first when it is on S3)."""
        source = req.source
        path = self.sources.local(source)
        if not path.is_file():
            raise ProGVCError(f"{source}: not a readable file; check the path")
        return SourceInfo(source=source, video_id=content_id(path), size_bytes=path.stat().st_size)

    def plan(self, req: PlanRequest) -> SourcePlan:
        """Probe the source and plan its GOPs with colour-distance keyframes."""
        from pipeline import gop as gop_mod
        from pipeline import video_io

        t0 = time.perf_counter()
        source = req.source
        path = self.sources.local(source)
        kw = {} if req.threshold is None else {"threshold": req.threshold}
        with _named_as(source, path):
            info = video_io.probe(path)
            gops = gop_mod.plan_gops(path, max_gop=req.max_gop, **kw)
            seek_points = gop_mod.source_keyframes(path)
        frames = sum(g.frame_count for g in gops)
        return SourcePlan(
            source=source,
            video_id=req.video_id,
            size_bytes=info.size_bytes,
            width=info.width,
            height=info.height,
            fps_num=info.fps.numerator,
            fps_den=info.fps.denominator,
            frame_count=frames,
            gops=[(g.first_frame, g.frame_count, bool(g.keyframe)) for g in gops],
            seek_points=seek_points,
            plan_s=time.perf_counter() - t0,
            video_bytes=info.video_bytes,
            timing_warning=video_io.variable_timing(info),
        )

    def encode_unit(self, req: EncodeRequest) -> list[GopResult]:
        """Encode consecutive GOPs `[(gop_index, first_frame, frame_count)]` of one source, layers 1..K
        (`req.scales`, default all); the frames are read with one seek. One `GopResult` per GOP, in order.
        `req.quality`: also decode each GOP at every k = 1..K (finer layers predicted, as re-serving does)
        and put per-scale sums over its frames of PSNR-Y and MS-SSIM in `extra`. `req.frame_scales`:
        keyframe mode (each GOP's frame 0 at layers 1..K, its other frames at 1..frame_scales only).
        `req.fidelity`/`req.effort`: the encoder's settings (`pipeline.stream.encoder_for`)."""
        from pipeline import video_io
        from pipeline.stream import encoder_for, encoder_settings

        encoder = encoder_for(self.codec, req.fidelity, req.effort)
        settings = encoder_settings(encoder)
        t0 = time.perf_counter()
        source, gops = req.source, req.gops
        path = self.sources.local(source)
        first = gops[0][1]
        total = gops[-1][1] + gops[-1][2] - first
        with _named_as(source, path):
            frames_THWC = video_io.read_frames(path, first, total)
        read_s = time.perf_counter() - t0
        out: list[GopResult] = []
        for gi, f0, n in gops:
            t1 = time.perf_counter()
            ref = frames_THWC[f0 - first : f0 - first + n]
            enc = encoder.encode_gop(ref, scales=req.scales, frame_scales=req.frame_scales, gop_index=gi)
            extra = self._quality(ref, gi, enc.chunks, req.frame_scales, enc.generate) if req.quality else {}
            busy = time.perf_counter() - t1 + read_s * n / total
            out.append(
                GopResult(
                    gop_index=gi,
                    first_frame=f0,
                    frame_count=n,
                    chunks=list(enc.chunks),
                    token_counts=list(enc.token_counts),
                    checksums=list(enc.checksums),
                    ce_bits=[float(b) for b in enc.ce_bits],
                    busy_s=busy,
                    actor=self.name,
                    extra=extra,
                    generate=enc.generate,
                    encoder=settings,
                )
            )
        return out

    def _quality(self, ref_THWC: np.ndarray, gop_index: int, chunks: list[bytes], frame_scales: int | None = None,
                 generate: int | None = None) -> dict:
        """Per-scale sums of PSNR-Y and MS-SSIM of the GOP decoded from layers 1..k, k = 1..K, through the
        stream API (as re-serving decodes it)."""
        from pipeline import metrics
        from pipeline.pgv import GopEntry
        from pipeline.stream import build_header, decode_gop_frames

        T, H, W, _ = ref_THWC.shape
        header = build_header(self.codec, W, H, [], frame_scales=frame_scales)
        entry = GopEntry(0, T, True, generate)
        psnr, ssim = [], []
        for k in range(1, len(chunks) + 1):
            dec = decode_gop_frames(self.codec, header, gop_index, list(chunks[:k]), entry=entry)
            psnr.append(float(metrics.psnr_y(ref_THWC, dec).sum()))
            ssim.append(float(metrics.ms_ssim(ref_THWC, dec).sum()))
        return {"psnr_sum": psnr, "ms_ssim_sum": ssim}

    def decode_gops(self, req: DecodeRequest) -> np.ndarray:
        """Decode a run of consecutive GOPs -> (sum T, H, W, 3) uint8 (`pipeline.stream.decode_run`)."""
        from pipeline.stream import decode_run

        return decode_run(self.codec, req.run, req.predict, req.seed, req.context)

    def pid(self) -> int:
        return os.getpid()

    def cleanup(self) -> None:
        """Delete the local copies of S3 sources (called by `CodecPool.close` before the actor is killed)."""
        import shutil

        shutil.rmtree(self.sources.dir, ignore_errors=True)
        self.sources.files.clear()
