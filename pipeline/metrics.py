"""Full-reference quality metrics on RGB uint8 video frames.

Every function takes the reference first and the distorted frames second, both `numpy.uint8` arrays
`(T, H, W, 3)` RGB of the same shape, and returns one value per frame as a float64 array `(T,)`.
Clip figures are the mean of the per-frame values (`clip_means`), as JVET/MPEG common test conditions
average per-frame PSNR.

- `psnr_y`: PSNR of BT.601 luma `Y = 0.299 R + 0.587 G + 0.114 B` computed in float on the full 8-bit
  range (peak 255, no rounding, no 16..235 scaling). A limited-range Y plane would read about 1.3 dB
  higher for the same pictures; we compare every codec through this one definition.
- `psnr_rgb`: PSNR over the MSE of all three RGB channels together (peak 255).
  Both PSNRs are capped at `PSNR_MAX_DB` (identical frames give exactly that value, never inf).
- `ms_ssim`: MS-SSIM (pytorch-msssim: 5 scales, standard weights, Gaussian window sigma 1.5) on RGB
  in [0, 255], averaged over the three channels. MS-SSIM needs the smaller side > 16 * (window - 1);
  the standard 11-tap window needs > 160 px. Smaller frames (e.g. QCIF 176x144) keep all 5 scales and
  the weights but use the largest odd window that fits (QCIF: 9 taps), see `ms_ssim_window`.
  Frames whose smaller side is <= 32 px cannot hold 5 scales: they fall back to single-scale SSIM.
- `vmaf`: libvmaf (model `vmaf_v0.6.1`, built into the static FFmpeg of `imageio-ffmpeg`). Frames are
  handed over as raw rgb24 and converted by FFmpeg to BT.601 limited-range yuv420p (VMAF reads luma).
- `tfd` (temporal frame-difference error, lower is better): for frame t >= 1 the mean absolute
  difference, over the pixels, between the decoded luma change `D_t - D_{t-1}` and the source's
  `S_t - S_{t-1}` (same BT.601 full-range luma as `psnr_y`, 0..255 units). It is 0 for any decode whose
  error is constant in time (even a large static offset) and equals the source's mean absolute luma
  change for a decode that freezes; flicker or jerky motion raise it. Frame 0 has no predecessor: its
  value is NaN, and `clip_means` averages frames 1..T-1 only (a 1-frame clip gives NaN).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.errors import ProGVCError

PSNR_MAX_DB = 100.0
METRICS: tuple[str, ...] = ("psnr_y", "psnr_rgb", "ms_ssim", "vmaf", "tfd")
#: metrics where a smaller value is better (never BD-rate them as if higher were better)
LOWER_IS_BETTER: frozenset[str] = frozenset({"tfd"})
#: metrics whose frame-0 value is undefined (NaN); their clip mean skips it
NO_FIRST_FRAME: frozenset[str] = frozenset({"tfd"})
_LUMA_BT601 = np.array([0.299, 0.587, 0.114])
_MSSSIM_STD_WIN = 11


def _check_pair(ref_THWC: np.ndarray, dist_THWC: np.ndarray) -> None:
    if ref_THWC.shape != dist_THWC.shape:
        raise ValueError(f"reference {ref_THWC.shape} and distorted {dist_THWC.shape} frames differ in shape")
    if ref_THWC.ndim != 4 or ref_THWC.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got {ref_THWC.shape}")
    if ref_THWC.dtype != np.uint8 or dist_THWC.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {ref_THWC.dtype} and {dist_THWC.dtype}")


def _psnr_from_mse(mse_T: np.ndarray) -> np.ndarray:
    floor = 255.0**2 * 10 ** (-PSNR_MAX_DB / 10)
    return 10.0 * np.log10(255.0**2 / np.maximum(mse_T, floor))


def luma_bt601(frames_THWC: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB uint8 frames `(T, H, W, 3)` -> float64 `(T, H, W)` in [0, 255]."""
    return frames_THWC.astype(np.float64) @ _LUMA_BT601


def psnr_y(ref_THWC: np.ndarray, dist_THWC: np.ndarray) -> np.ndarray:
    """Per-frame PSNR of BT.601 luma (full 8-bit range, peak 255) in dB, `(T,)`, capped at 100 dB."""
    _check_pair(ref_THWC, dist_THWC)
    d_THW = luma_bt601(ref_THWC) - luma_bt601(dist_THWC)
    return _psnr_from_mse(np.mean(d_THW**2, axis=(1, 2)))


def psnr_rgb(ref_THWC: np.ndarray, dist_THWC: np.ndarray) -> np.ndarray:
    """Per-frame PSNR over all RGB samples (peak 255) in dB, `(T,)`, capped at 100 dB."""
    _check_pair(ref_THWC, dist_THWC)
    d = ref_THWC.astype(np.float64) - dist_THWC.astype(np.float64)
    return _psnr_from_mse(np.mean(d**2, axis=(1, 2, 3)))


def ms_ssim_window(height: int, width: int) -> int | None:
    """Gaussian window (odd taps) MS-SSIM uses for frames of this size; None = single-scale SSIM."""
    side = min(height, width)
    for win in range(_MSSSIM_STD_WIN, 2, -2):
        if side > (win - 1) * 16:
            return win
    return None


def ms_ssim(ref_THWC: np.ndarray, dist_THWC: np.ndarray, batch: int = 8) -> np.ndarray:
    """Per-frame MS-SSIM on RGB (mean of channels), `(T,)` in [0, 1]; small frames: see module doc."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim import ssim as _ssim

    _check_pair(ref_THWC, dist_THWC)
    T, H, W, _ = ref_THWC.shape
    win = ms_ssim_window(H, W)
    out = np.empty(T, dtype=np.float64)
    # oneDNN's path for these thin depthwise 1-D Gaussian convs measured 1.5-10x slower than ATen's here;
    # switching it off warns about TF32 on Intel GPUs, which does not concern us
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration")
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
            for s in range(0, T, batch):
                x_BChw = torch.from_numpy(ref_THWC[s : s + batch]).permute(0, 3, 1, 2).float()
                y_BChw = torch.from_numpy(dist_THWC[s : s + batch]).permute(0, 3, 1, 2).float()
                if win is not None:
                    v_B = _ms_ssim(x_BChw, y_BChw, data_range=255, size_average=False, win_size=win)
                else:
                    small_win = max(1, min(H, W, _MSSSIM_STD_WIN) // 2 * 2 - 1)
                    v_B = _ssim(x_BChw, y_BChw, data_range=255, size_average=False, win_size=small_win)
                out[s : s + batch] = v_B.numpy()
    return out


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the static FFmpeg shipped by `imageio-ffmpeg` (the one with libvmaf)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ProGVCError("VMAF needs the PyPI package imageio-ffmpeg: pip install imageio-ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=1)
def vmaf_available() -> bool:
    """True when imageio-ffmpeg's FFmpeg has the libvmaf filter."""
    try:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError, ProGVCError):
        return False
    return " libvmaf " in out.stdout


def vmaf(ref_THWC: np.ndarray, dist_THWC: np.ndarray, threads: int = 2) -> np.ndarray:
    """Per-frame VMAF (libvmaf, model vmaf_v0.6.1) `(T,)`, 0..100; runs imageio-ffmpeg's FFmpeg."""
    _check_pair(ref_THWC, dist_THWC)
    T, H, W, _ = ref_THWC.shape
    exe = ffmpeg_exe()
    with tempfile.TemporaryDirectory(prefix="progvc-vmaf-") as tmp:
        tmpdir = Path(tmp)
        ref_path, dist_path, log_path = tmpdir / "ref.rgb", tmpdir / "dist.rgb", tmpdir / "vmaf.json"
        ref_path.write_bytes(np.ascontiguousarray(ref_THWC).tobytes())
        dist_path.write_bytes(np.ascontiguousarray(dist_THWC).tobytes())
        raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "25"]
        to_yuv = "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p"
        graph = (
            f"[0:v]{to_yuv}[dist];[1:v]{to_yuv}[ref];"
            f"[dist][ref]libvmaf=log_fmt=json:log_path={log_path.as_posix()}:n_threads={threads}"
        )
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *raw, "-i", str(dist_path)]
        cmd += [*raw, "-i", str(ref_path), "-lavfi", graph, "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not log_path.exists():
            raise ProGVCError(
                f"VMAF: {exe} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}; "
                "check that imageio-ffmpeg's FFmpeg lists the libvmaf filter (ffmpeg -filters)"
            )
        log = json.loads(log_path.read_text())
    per_frame = sorted(log["frames"], key=lambda f: f["frameNum"])
    out = np.array([f["metrics"]["vmaf"] for f in per_frame], dtype=np.float64)
    if out.shape != (T,):
        raise ProGVCError(f"VMAF: libvmaf scored {out.shape[0]} frames, expected {T}")
    return out


def tfd(ref_THWC: np.ndarray, dist_THWC: np.ndarray) -> np.ndarray:
    """Per-frame temporal frame-difference error `(T,)` in luma levels (0..255), NaN at frame 0.

    tfd[t] = mean over pixels of |(D_t - D_{t-1}) - (S_t - S_{t-1})| on BT.601 luma, t >= 1.
    """
    _check_pair(ref_THWC, dist_THWC)
    out = np.full(ref_THWC.shape[0], np.nan)
    if ref_THWC.shape[0] > 1:
        e_THW = luma_bt601(dist_THWC) - luma_bt601(ref_THWC)  # error of each frame; tfd = |its change|
        out[1:] = np.mean(np.abs(np.diff(e_THW, axis=0)), axis=(1, 2))
    return out


_FUNCS = {"psnr_y": psnr_y, "psnr_rgb": psnr_rgb, "ms_ssim": ms_ssim, "vmaf": vmaf, "tfd": tfd}


def compute_metrics(
    ref_THWC: np.ndarray, dist_THWC: np.ndarray, metrics: Iterable[str] = METRICS
) -> dict[str, np.ndarray]:
    """Per-frame values `(T,)` of each named metric (names from `METRICS`)."""
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        if name not in _FUNCS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        out[name] = _FUNCS[name](ref_THWC, dist_THWC)
    return out


def clip_means(per_frame: dict[str, Sequence[float | None] | np.ndarray]) -> dict[str, float]:
    """Clip figure of each metric: the mean of its per-frame values (frame 0 skipped for `NO_FIRST_FRAME`
    metrics, whose frame-0 value is NaN or None; NaN when no frame is left)."""
    out = {}
    for name, v in per_frame.items():
        a = np.asarray(v, dtype=np.float64)  # None -> NaN
        if name in NO_FIRST_FRAME:
            a = a[1:]
        out[name] = float(np.mean(a)) if a.size else float("nan")
    return out
