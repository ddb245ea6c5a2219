"""Codec actors on a real local Ray (2 CPUs) with the tiny random codec."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from pipeline import video_io
from pipeline.codec import Codec, CodecConfig
from pipeline.codec_api import DEFAULT_PREDICT
from pipeline.errors import VideoError
from pipeline.pgv import GopEntry
from pipeline.stream import build_header, gop_runs
from workers.requests import DecodeRequest, EncodeRequest, IdentifyRequest, PlanRequest


def _decode(pool, results, k, width=64, height=48, frame_scales=None, generate=True, predict=DEFAULT_PREDICT,
            seed=0):
    """The typed decode request for every GOP of `results` (one run) at K = k layers."""
    gops = [GopEntry(r.first_frame, r.frame_count, True, r.generate if generate else None) for r in results]
    header = build_header(pool.codec, width, height, gops, 25, frame_scales)
    (run,) = gop_runs(header, [r.chunks[:k] for r in results], max_frames=10**6)
    return pool.call(DecodeRequest(run, predict, seed))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 20-frame 64×48 H.264 clip with a hard cut at frame 9."""
    path = tmp_path_factory.mktemp("clips") / "cut.mp4"
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(0, 8, (9, 48, 64, 3)) + [200, 90, 40], 0, 255).astype(np.uint8)
    b = np.clip(rng.normal(0, 8, (11, 48, 64, 3)) + [30, 80, 200], 0, 255).astype(np.uint8)
    video_io.write_video(path, np.concatenate([a, b]), fps=25)
    return str(path)


def test_pool_resources_and_model(tiny_pool, ray_session):
    assert tiny_pool.size == 2
    gpus = ray_session.cluster_resources().get("GPU", 0)
    assert tiny_pool.resources.num_gpus == (min(1.0, gpus / 2) if gpus else 0)
    assert tiny_pool.resources.device == ("cuda" if gpus else "cpu")
    ref = Codec.random(CodecConfig.tiny(), seed=0)
    assert {i["model_id"] for i in tiny_pool.infos} == {ref.model_id}
    assert len({i["actor"] for i in tiny_pool.infos}) == 2  # two separate processes


def test_resources_follow_the_cluster():
    from pipeline.errors import ProGVCError
    from workers.pool import plan_resources

    n, r = plan_resources(0, "auto", {"CPU": 16.0, "GPU": 2.0})
    assert (n, r.num_gpus, r.device) == (2, 1.0, "cuda")  # one actor per GPU
    n, r = plan_resources(4, "auto", {"CPU": 16.0, "GPU": 1.0})
    assert (n, r.num_gpus, r.device) == (4, 0.25, "cuda")  # four actors share one GPU
    n, r = plan_resources(0, "auto", {"CPU": 8.0})
    assert (n, r.num_cpus, r.num_gpus, r.device) == (8, 1, 0, "cpu")
    n, r = plan_resources(0, "cpu", {"CPU": 8.0, "GPU": 1.0})
    assert r.device == "cpu" and r.num_gpus == 0
    with pytest.raises(ProGVCError, match="no GPU"):
        plan_resources(1, "cuda", {"CPU": 8.0})


def test_identify_plan_encode_decode_roundtrip(tiny_pool, clip):
    from pipeline.archive import video_id_of

    ident = tiny_pool.call(IdentifyRequest(clip))
    assert ident.video_id == video_id_of(clip)
    plan = tiny_pool.call(PlanRequest(clip, ident.video_id, 16))
    assert plan.frame_count == 20 and (plan.width, plan.height) == (64, 48)
    assert [g[0] for g in plan.gops] == [0, 9]  # keyframe at the cut
    results = tiny_pool.call(EncodeRequest(clip, [(i, f, n) for i, (f, n, _) in enumerate(plan.gops)]))
    assert [r.gop_index for r in results] == [0, 1]
    n_scales = len(tiny_pool.scales)
    assert all(len(r.chunks) == n_scales and r.busy_s > 0 for r in results)
    # the actor's chunks are exactly what the same codec makes in this process (determinism)
    ref = Codec.random(CodecConfig.tiny(), seed=0)
    src = video_io.read_frames(clip, 9, 11)
    assert ref.encode_gop(src, gop_index=1).chunks == results[1].chunks
    # decode on the other actor from the first 2 scales (the rest predicted)
    frames = _decode(tiny_pool, results, 2)
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == np.uint8
    # only K scales encoded when asked
    short = tiny_pool.call(EncodeRequest(clip, [(0, 0, 9)], 2))
    assert len(short[0].chunks) == 2 and short[0].chunks == results[0].chunks[:2]


def test_keyframe_mode_encode_quality_decode_on_actors(tiny_pool, clip):
    """encode_unit(frame_scales=K) codes each GOP's frames 1.. at scales 1..K only (chunks above K hold the
    keyframe alone), measures quality decoding in that mode, and decode_gops(frame_scales=K) decodes it."""
    gops = [(0, 0, 9), (1, 9, 11)]
    res = tiny_pool.call(EncodeRequest(clip, gops, None, True, 2))
    ref = Codec.random(CodecConfig.tiny(), seed=0)
    src = video_io.read_frames(clip, 9, 11)
    again = ref.encode_gop(src, frame_scales=2, gop_index=1)
    assert again.chunks == res[1].chunks and again.generate == res[1].generate is not None
    plain = ref.encode_gop(src)
    per_frame = [c // 11 for c in plain.token_counts]
    assert res[1].token_counts == [*plain.token_counts[:2], *per_frame[2:]]  # keyframe alone above K=2
    assert len(res[1].extra["psnr_sum"]) == len(tiny_pool.scales)
    assert all(np.isfinite(res[1].extra["psnr_sum"]))
    want = ref.decode_gop(res[1].chunks[:3], n_frames=11, width=64, height=48, frame_scales=2, gop_index=1)
    frames = _decode(tiny_pool, res, 3, frame_scales=2, generate=False)
    assert frames.shape == (20, 48, 64, 3) and np.array_equal(frames[9:], want)
    # the encoder's generated prefix (as the header carries it) reaches the decoder
    want = ref.decode_gop(res[1].chunks[:3], n_frames=11, width=64, height=48, frame_scales=2,
                          generate=res[1].generate)
    frames = _decode(tiny_pool, res, 3, frame_scales=2)
    assert np.array_equal(frames[9:], want)
    with pytest.raises(Exception, match="tokens"):  # decoding it as plain mode is refused, not misread
        _decode(tiny_pool, res, 3, generate=False)


def test_sampled_decode_on_actors_equals_the_stream_api(tiny_pool, clip):
    """`predict="sample"` on an actor gives the pixels of the in-process decode loop (GOP g seeded with
    seed + g, whichever process decodes it); other seeds give other pixels."""
    from pipeline.pgv import PgvStream
    from pipeline.stream import iter_decoded

    res = tiny_pool.call(EncodeRequest(clip, [(0, 0, 9), (1, 9, 11)]))
    got = _decode(tiny_pool, res, 1, predict="sample", seed=3)
    header = build_header(tiny_pool.codec, 64, 48, [GopEntry(r.first_frame, r.frame_count) for r in res], 25)
    ref = Codec.random(CodecConfig.tiny(), seed=0)
    stream = PgvStream.from_gops(header, [r.chunks[:1] for r in res])
    assert np.array_equal(got, np.stack(list(iter_decoded(stream, ref, predict="sample", seed=3))))
    assert not np.array_equal(got, np.stack(list(iter_decoded(stream, ref, predict="sample", seed=4))))


def test_every_actor_model_is_checked():
    """The pool refuses actors that loaded different models (not only actor 0's id is looked at), and a
    model other than the one asked for."""
    from pipeline.errors import ModelMismatchError, ProGVCError
    from workers.pool import CodecPool

    a = {"model_id": "a" * 16, "family": "vq", "actor": "node1:11", "scales": [1, 2], "tile": 4}
    b = {**a, "model_id": "b" * 16, "actor": "node2:22"}
    with pytest.raises(ProGVCError, match=f"different models.*node2:22: {'b' * 16}"):
        CodecPool._check_models([a, a, b], "w.pt", None)
    info = CodecPool._check_models([a, a], "w.pt", "a" * 16)
    assert (info.model_id, info.family, info.scales, info.tile, info.n_layers) == ("a" * 16, "vq", (1, 2), 4, 2)
    with pytest.raises(ModelMismatchError, match="c" * 16):
        CodecPool._check_models([a, a], "w.pt", "c" * 16)


def test_bad_source_errors_come_back_typed(tiny_pool, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    ident = tiny_pool.call(IdentifyRequest(str(junk)))
    with pytest.raises(VideoError, match="junk.mp4"):
        tiny_pool.call(PlanRequest(str(junk), ident.video_id, 16))


def test_bounded_in_flight(tiny_pool, clip):
    seen = []
    calls = [(i, EncodeRequest(clip, [(0, (i % 5) * 4, 4)])) for i in range(10)]
    out = []
    for tag, res, err in tiny_pool.map(calls):
        assert err is None and res[0].frame_count == 4
        seen.append(max(tiny_pool._load))
        out.append(tag)
    assert sorted(out) == list(range(10))
    assert max(seen) <= tiny_pool.per_actor
    assert tiny_pool._load == [0, 0]  # every slot given back


def test_actor_killed_mid_task_is_restarted_and_retried(tiny_pool, clip):
    """Kill the actor process while it encodes: Ray restarts it (model reloaded) and retries the call."""
    import ray

    actor = tiny_pool.actors[0]
    pid = ray.get(actor.pid.remote())
    unit = [(i, f, 4) for i, f in enumerate(range(0, 20, 4))]
    ref = actor.encode_unit.remote(EncodeRequest(clip, unit))

    def kill_soon():
        time.sleep(0.15)
        os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=kill_soon)
    t.start()
    results = ray.get(ref, timeout=120)
    t.join()
    assert [r.gop_index for r in results] == list(range(5))
    new_pid = ray.get(actor.pid.remote(), timeout=60)
    assert new_pid != pid  # it really died and came back
    again = ray.get(actor.encode_unit.remote(EncodeRequest(clip, unit)))
    assert [r.chunks for r in again] == [r.chunks for r in results]  # same bytes after the restart


def test_ray_client_init_failure_is_retried_then_named(monkeypatch):
    """A `ray://` cluster whose client server fails to start is tried again (a fresh server each time);
    when every try fails the error names the address and says where to look. A plain timeout is not
    retried."""
    import ray

    from pipeline.errors import ProGVCError
    from workers.pool import ensure_ray

    calls: list[str] = []

    def init(address=None, **kw):
        calls.append(address)
        if len(calls) < 3:
            raise ConnectionAbortedError("Initialization failure from server:\nStarting Ray client server failed.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "init", init)
    ensure_ray("ray://head:10001", client_attempts=3, client_backoff_s=0)
    assert calls == ["ray://head:10001"] * 3

    calls.clear()
    with pytest.raises(ProGVCError, match=r"ray://head:10001 \(try 2 of 2\).*client server failed.*ray_client_server"):
        ensure_ray("ray://head:10001", client_attempts=2, client_backoff_s=0)
    assert len(calls) == 2

    def timeout(address=None, **kw):
        calls.append(address)
        raise ConnectionError("ray client connection timeout")

    calls.clear()
    monkeypatch.setattr(ray, "init", timeout)
    with pytest.raises(ProGVCError, match=r"try 1 of 3.*connection timeout"):
        ensure_ray("ray://head:10001", client_attempts=3, client_backoff_s=0)
    assert len(calls) == 1
