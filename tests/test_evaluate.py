"""`progvc eval` parts: reference codecs through real PyAV, CRF sweeps, and the CLI end to end with the
tiny random ProGVC model (real codec, real encoders, real libvmaf)."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import metrics, video_io
from pipeline.codec_api import DEFAULT_PREDICT
from pipeline.evaluate import refcodecs
from pipeline.evaluate.runner import MAX_GAP_RATIO, gop_spans, sweep_crf

ROOT = Path(__file__).resolve().parents[1]


def moving_clip(T: int = 8, H: int = 64, W: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    tex = rng.normal(0, 10, (H + 8, W + 8))
    out = []
    for t in range(T):
        base = 120 + 60 * np.sin((xx + 2 * t) / 9.0) * np.cos((yy + t) / 13.0) + tex[t % 8 : t % 8 + H, :W]
        out.append(np.stack([base, 0.7 * base + 40, 255 - base], axis=-1))
    return np.clip(np.stack(out), 0, 255).round().astype(np.uint8)


def test_x264_bits_equal_sum_of_packet_sizes(tmp_path):
    frames = moving_clip(8)
    enc = refcodecs.encode(frames, "x264", "medium", 30, gop=4)
    assert enc.bits == 8 * sum(len(p) for p in enc.packets)
    # independent count: write the elementary stream, demux it with FFmpeg's H.264 parser, sum packet.size
    path = tmp_path / "x.h264"
    path.write_bytes(b"".join(enc.packets))
    with av.open(str(path), format="h264") as c:
        demuxed = [p for p in c.demux(video=0) if p.size]
        assert sum(p.size for p in demuxed) * 8 == enc.bits
    with av.open(str(path), format="h264") as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
    # the informational x264 SEI (version/options string) was removed and nothing else
    assert 200 < enc.stripped_bytes < 2000
    assert not any(b"x264 - core" in p for p in enc.packets)
    dec = refcodecs.decode(enc, 96, 64)
    assert dec.shape == frames.shape and metrics.psnr_y(frames, dec).mean() > 25


def test_strip_info_sei_keeps_other_nal_units():
    sps = b"\x00\x00\x00\x01\x67\x42\x00\x1e"
    sei = b"\x00\x00\x01\x06\x05\x10" + b"\xaa" * 16 + b"x264 - core 165 options" + b"\x80"
    idr = b"\x00\x00\x01\x65\x88\x84\x00\x33\x00"
    out = refcodecs.strip_info_sei("x264", sps + sei + idr)
    assert b"x264 - core" not in out
    assert b"\x67\x42\x00\x1e" in out and b"\x65\x88\x84\x00\x33\x00" in out
    other_sei = b"\x00\x00\x01\x06\x04\x02\xb5\x00\x80"  # registered user data: kept
    assert refcodecs.strip_info_sei("x264", sps + other_sei + idr) == sps + other_sei + idr
    assert refcodecs.strip_info_sei("x265", sps + sei) == sps + sei  # only x264 is touched


@pytest.mark.parametrize(("codec", "preset", "crf"), [("x264", "medium", 28), ("x265", "medium", 30), ("av1", "8", 40)])
def test_reference_codecs_keyframe_interval_and_roundtrip(codec, preset, crf):
    frames = moving_clip(8)
    enc = refcodecs.encode(frames, codec, preset, crf, gop=4, fps=Fraction(25))
    assert enc.keyframes == (0, 4), f"{codec}: keyframes at packets {enc.keyframes}"
    dec = refcodecs.decode(enc, 96, 64)
    assert dec.shape == frames.shape
    assert metrics.psnr_rgb(frames, dec).mean() > 22


def test_odd_size_is_padded_and_cropped_back():
    frames = moving_clip(3, H=23, W=37)
    assert refcodecs.padded_size(37, 23) == (38, 24)
    assert refcodecs.padded_size(9, 7) == (16, 16)
    assert refcodecs.padded_size(37, 23, "x265") == (64, 64)
    for codec, preset in (("x264", "medium"), ("x265", "medium"), ("av1", "8")):
        enc = refcodecs.encode(frames, codec, preset, 10)
        dec = refcodecs.decode(enc, 37, 23)
        assert dec.shape == frames.shape
        assert metrics.psnr_y(frames, dec).mean() > 30, codec


def test_sweep_brackets_target_range_and_fills_gaps():
    calls = []

    def evaluate(crf: int) -> dict:
        calls.append(crf)
        return {"param": crf, "bpp": 2.0 ** (-(crf - 20) / 6)}  # rate halves every 6 CRF

    pts = sweep_crf(evaluate, 0, 51, 32, 0.05, 0.2)
    bpps = sorted(p["bpp"] for p in pts)
    assert bpps[0] <= 0.05 and bpps[-1] >= 0.2
    assert all(b / a <= MAX_GAP_RATIO for a, b in zip(bpps, bpps[1:]))
    assert len(calls) == len(set(calls))  # each CRF encoded once
    # a target below what the CRF range can reach stops at crf_max
    low = sweep_crf(evaluate, 0, 51, 32, 1e-6, 0.01)
    assert max(p["param"] for p in low) == 51


def test_gop_spans():
    assert gop_spans(16, 16) == [(0, 16)]
    assert gop_spans(20, 8) == [(0, 8), (8, 8), (16, 4)]


def test_progvc_eval_cli_writes_outputs_and_uses_cache(tmp_path):
    from flows.cli import main
    from pipeline.codec import Codec, CodecConfig

    clip = tmp_path / "tiny.y4m"
    video_io.write_video(clip, moving_clip(6, H=64, W=64), fps=25)
    weights = tmp_path / "tiny.pt"
    codec = Codec.random(CodecConfig.tiny(), seed=0)
    codec.save(weights)
    out = tmp_path / "ev"
    argv = [
        "eval",
        str(clip),
        "--out",
        str(out),
        "--weights",
        str(weights),
        "--codecs",
        "progvc,x264",
        "--presets",
        "medium",
        "--frames",
        "6",
        "--gop",
        "4",
        "--cache",
        str(tmp_path / "cache"),
        "--plain-predict",
        "argmax",
    ]
    assert main(argv) == 0
    for name in ("results.json", "summary.md", "rd_psnr_y.png", "rd_ms_ssim.png", "rd_vmaf.png", "rd_tfd.png"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["modes"] == ["plain", "keyframe"]
    plain = [p for p in res["points"] if p["codec"] == "progvc" and p["mode"] == "plain"]
    pv = sorted((p for p in plain if not p["extra_curve"]), key=lambda p: p["param"])
    assert [p["param"] for p in pv] == [1, 2, 3, 4]
    # the extra plain curve: the same streams with the missing scales predicted (argmax; the default is none),
    # identical at K = N
    pn = sorted((p for p in plain if p["extra_curve"]), key=lambda p: p["param"])
    assert [p["preset"] for p in pn] == ["argmax"] * 4 and [p["bits"] for p in pn] == [p["bits"] for p in pv]
    assert pn[-1]["metrics"]["psnr_y"] == pv[-1]["metrics"]["psnr_y"]
    assert pn[0]["metrics"]["psnr_y"] != pv[0]["metrics"]["psnr_y"]
    assert all(a["bits"] < b["bits"] for a, b in zip(pv, pv[1:]))  # more scales, more bits
    # bits of K = N equal the chunks of a fresh encode of the same two GOPs (4 + 2 frames)
    frames = video_io.read_frames(clip, 0, 6)
    fresh = sum(len(c) for g in (codec.encode_gop(frames[:4]), codec.encode_gop(frames[4:])) for c in g.chunks)
    assert pv[-1]["bits"] == 8 * fresh
    x264 = [p for p in res["points"] if p["codec"] == "x264"]
    assert len(x264) >= 3 and all(p["keyframes"] == [0, 4] for p in x264)
    assert min(p["bpp"] for p in x264) <= pv[0]["bpp"] or max(p["param"] for p in x264) == 51
    # keyframe mode: one point per frame-scale count K = 1..N-1, each its own encode with every chunk counted
    kf = sorted((p for p in res["points"] if p.get("mode") == "keyframe"), key=lambda p: p["param"])
    assert [p["param"] for p in kf] == [1, 2, 3] and all(p["preset"] == f"keyframe/{DEFAULT_PREDICT}" for p in kf)
    for p in kf:
        k = p["param"]
        enc = [codec.encode_gop(frames[:4], frame_scales=k), codec.encode_gop(frames[4:], frame_scales=k)]
        assert p["bits"] == 8 * sum(len(c) for g in enc for c in g.chunks)
        # chunks 1..K carry every frame (as plain mode's), K+1..N the keyframe alone
        assert pv[k - 1]["bits"] < p["bits"] < pv[-1]["bits"]
    assert all(a["bits"] < b["bits"] for a, b in zip(kf, kf[1:]))
    for p in res["points"]:
        assert set(p["metrics"]) == {"psnr_y", "psnr_rgb", "ms_ssim", "vmaf", "tfd"}
        assert p["bpp"] == pytest.approx(p["bits"] / (6 * 64 * 64))
        assert p["per_frame"]["tfd"][0] is None and len(p["per_frame"]["tfd"]) == 6
        assert p["metrics"]["tfd"] == pytest.approx(np.mean(p["per_frame"]["tfd"][1:]), abs=1e-4)
    summary = (out / "summary.md").read_text()
    assert "BD-rate of ProGVC" in summary and "x264 medium" in summary and "Bits" in summary
    assert "BD-rate of 'ProGVC keyframe' vs each reference codec" in summary
    assert "BD-rate of 'ProGVC (argmax)' vs each reference codec" in summary
    kf_section = summary.split("## Keyframe mode vs plain")[1].split("\n## ")[0]
    assert "BD-rate of keyframe mode vs plain mode, curve 'ProGVC'" in kf_section and "tfd" in kf_section
    assert "curve 'ProGVC (argmax)'" in kf_section and "kf / plain / plain argmax" in kf_section
    assert all(f"| {k} | {p['bpp']:.4f} |" in kf_section for k, p in zip((1, 2, 3), kf))
    assert "tfd" not in summary.split("## BD-rate of ProGVC vs")[1].split("## Keyframe")[0]  # no BD-rate on tfd
    y = frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # the frames evaluated (read back)
    assert res["meta"]["clips"][0]["source_motion"] == pytest.approx(np.abs(np.diff(y, axis=0)).mean(), abs=1e-3)
    assert res["meta"]["computed_points"] > 0
    # a second run computes nothing new
    assert main(argv) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert res2["meta"]["computed_points"] == 0 and res2["meta"]["cached_points"] == len(res2["points"])
    assert [p["bits"] for p in res2["points"]] == [p["bits"] for p in res["points"]]


def test_keyframe_points_cache_keys_and_matched_bpp(tmp_path):
    from pipeline.codec import Codec, CodecConfig
    from pipeline.evaluate import report
    from pipeline.evaluate.cache import EvalCache, frames_hash, key_of
    from pipeline.evaluate.runner import (
        EVAL_VERSION,
        EvalConfig,
        codec_code_hash,
        keyframe_points,
        progvc_cache_key,
        progvc_points,
    )

    codec = Codec.random(CodecConfig.tiny(), seed=1)
    frames = moving_clip(4, H=64, W=64, seed=2)
    cfg = EvalConfig(codecs=("progvc",), gop=4, metrics=("psnr_y", "tfd"))
    cache = EvalCache(tmp_path / "c")
    plain = progvc_points(codec, "c", frames, cfg, cache)
    kf = keyframe_points(codec, "c", frames, cfg, cache)
    assert [p["param"] for p in plain] == [1, 2, 3, 4] and [p["param"] for p in kf] == [1, 2, 3]
    # plain keys are the ones written before keyframe mode existed (old caches stay valid)
    base = {"clip": frames_hash(frames), "codec": "progvc", "model": codec.model_id, "gop": 4,
            "eval": EVAL_VERSION, "code": codec_code_hash()}
    assert progvc_cache_key(base, "point", K=2, predict="argmax") == key_of(
        {**base, "kind": "point", "K": 2, "predict": "argmax"})
    keys = {progvc_cache_key(base, "point", K=k, predict=DEFAULT_PREDICT) for k in (1, 2, 3, 4)}
    keys |= {progvc_cache_key(base, "point", "keyframe", frame_scales=k, predict=DEFAULT_PREDICT) for k in (1, 2, 3)}
    enc_keys = {progvc_cache_key(base, "encode")}
    enc_keys |= {progvc_cache_key(base, "encode", "keyframe", frame_scales=k) for k in (1, 2, 3)}
    assert len(keys) == 7 and len(enc_keys) == 4
    stored = {f.stem for f in (tmp_path / "c").rglob("*.json")}
    assert keys | enc_keys == stored  # each mode and K has its own entry: 7 points + 4 encodes
    # a second pass reads everything from the cache, identical results
    cache2 = EvalCache(tmp_path / "c")
    again = keyframe_points(codec, "c", frames, cfg, cache2)
    assert cache2.misses == 0 and [p["bits"] for p in again] == [p["bits"] for p in kf]
    # predict="argmax" fills the non-keyframes' fine scales with the context model's prediction: other points
    pred = keyframe_points(codec, "c", frames, EvalConfig(codecs=("progvc",), gop=4, metrics=("psnr_y",),
                                                            predict="argmax"), cache2)
    assert [p["bits"] for p in pred] == [p["bits"] for p in kf] and cache2.misses == 3
    # matched-bpp interpolation of the plain curve (linear in log bpp, none outside its range)
    matched = 0
    for p in kf:
        v = report.plain_at_bpp(plain, p["bpp"], "psnr_y")
        below = [q for q in plain if q["bpp"] <= p["bpp"]]
        above = [q for q in plain if q["bpp"] >= p["bpp"]]
        assert (v is None) == (not below or not above)
        if v is not None:
            matched += 1
            lo = max(below, key=lambda q: q["bpp"])["metrics"]["psnr_y"]
            hi = min(above, key=lambda q: q["bpp"])["metrics"]["psnr_y"]
            assert min(lo, hi) - 1e-9 <= v <= max(lo, hi) + 1e-9
    assert matched == 3  # keyframe bits lie between plain K=1 and K=N by construction
    assert report.plain_at_bpp(plain, plain[0]["bpp"] / 2, "psnr_y") is None
    assert report.plain_at_bpp(plain, plain[1]["bpp"], "psnr_y") == pytest.approx(plain[1]["metrics"]["psnr_y"])
    assert [report.curve_label(p) for p in (plain[0], kf[0])] == ["ProGVC", "ProGVC keyframe"]
    assert report.bd_metrics(["psnr_y", "tfd", "vmaf"]) == ["psnr_y", "vmaf"]


def test_latent_fidelity_sweep_one_encode_per_fidelity_every_k(tmp_path):
    """The default (latent) model: one encode per (clip, fidelity) at the chosen effort serves every K; the main
    curve is the K = N points over the fidelities, K < N are the ladder (out of the curves, tabled); cache keys
    carry fidelity, effort and the latent sources' hash; a second pass computes nothing."""
    import torch

    from pipeline.evaluate import report
    from pipeline.evaluate.cache import EvalCache, frames_hash
    from pipeline.evaluate.runner import (
        EVAL_VERSION,
        EvalConfig,
        codec_code_hash,
        fidelity_points,
        has_encoder_settings,
        progvc_cache_key,
    )
    from pipeline.registry import open_codec

    torch.set_num_threads(1)  # as `progvc eval` runs it (--threads 1)
    codec = open_codec(None)
    assert codec.model_id == "latent-v1" and has_encoder_settings(codec)
    frames = video_io.read_frames(ROOT / "samples" / "sam2_dog.mp4", 0, 3)[:, 96:160, 200:296].copy()
    cfg = EvalConfig(codecs=("progvc",), gop=16, metrics=("psnr_y",), fidelities=(40, 60), effort="fast")
    cache = EvalCache(tmp_path / "c")
    pts = fidelity_points(codec, "dog", frames, cfg, cache)
    n = codec.n_layers
    assert [(p["fidelity"], p["K"]) for p in pts] == [(f, k) for f in (40, 60) for k in range(1, n + 1)]
    for f in (40, 60):
        ladder = [p for p in pts if p["fidelity"] == f]
        assert all(a["bits"] < b["bits"] for a, b in zip(ladder, ladder[1:]))  # one stream: bits rise with K
        assert len({p["encode_s"] for p in ladder}) == 1  # ... from one encode
        assert [p["ladder"] for p in ladder] == [True] * (n - 1) + [False]
        assert all(p["param_name"] == "fidelity" and p["param"] == f and p["preset"] == "fast" for p in ladder)
    top = [p for p in pts if not p["ladder"]]
    assert top[0]["bits"] < top[1]["bits"] and top[0]["metrics"]["psnr_y"] < top[1]["metrics"]["psnr_y"]
    base = {"clip": frames_hash(frames), "codec": "progvc", "model": "latent-v1", "gop": 16, "eval": EVAL_VERSION,
            "code": codec_code_hash(codec)}
    assert codec_code_hash(codec) != codec_code_hash()  # the latent sources, not the VQ family's
    keys = {progvc_cache_key(base, "point", K=k, predict=DEFAULT_PREDICT, fidelity=float(f), effort="fast")
            for f in (40, 60) for k in range(1, n + 1)}
    keys |= {progvc_cache_key(base, "encode", fidelity=float(f), effort="fast") for f in (40, 60)}
    assert keys == {f.stem for f in (tmp_path / "c").rglob("*.json")}  # 2 encodes + 2 x N points
    cache2 = EvalCache(tmp_path / "c")
    again = fidelity_points(codec, "dog", frames, cfg, cache2)
    assert cache2.misses == 0 and [p["bits"] for p in again] == [p["bits"] for p in pts]
    # the report: one 'ProGVC' curve of the K = N points, labelled by fidelity; the ladder table at fidelity 60
    curves = report._curves(pts)
    assert list(curves["dog"]) == ["ProGVC"] and [p["K"] for p in curves["dog"]["ProGVC"]] == [n, n]
    assert [report.point_tag(p) for p in curves["dog"]["ProGVC"]] == ["f40", "f60"]
    assert report.ladder_fidelity(pts) == 60
    table = "\n".join(report._ladder_markdown(pts))
    assert "Layer ladder at fidelity 60 (effort fast)" in table
    assert all(f"| {p['K']} | {p['bpp']:.4f} / " in table for p in pts if p["fidelity"] == 60)


def test_eval_refuses_latent_flags_for_the_vq_model(tmp_path, capsys):
    from flows.cli import main
    from pipeline.codec import Codec, CodecConfig

    weights = tmp_path / "tiny.pt"
    Codec.random(CodecConfig.tiny(), seed=0).save(weights)
    clip = tmp_path / "c.y4m"
    video_io.write_video(clip, moving_clip(2, H=64, W=64), fps=25)
    assert main(["eval", str(clip), "--out", str(tmp_path / "ev"), "--weights", str(weights), "--effort", "fast",
                 "--codecs", "progvc", "--no-cache"]) == 1
    assert "--fidelities/--effort apply to the latent family" in capsys.readouterr().err
