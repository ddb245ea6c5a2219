"""Keyframe mode (issue 8) through the archive pipeline: `progvc compress --mode keyframe` of a bundled
sample clip into SeaweedFS (real Ray, Prefect's test harness, tiny random codec), the manifest's
`frames_coded`/`keyframe`/`mode`, savings by mode, and re-serving at K below and above `frame_scales`."""

from __future__ import annotations

from pathlib import Path

import av
import pyarrow.compute as pc
import pytest

from pipeline import video_io
from pipeline.errors import ProGVCError
from tests.fixtures_cluster import TINY_MODEL
from tests.fixtures_store import aws_env, new_bucket

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sam2_dog.mp4"  # 24 frames, 448x256
K = 2  # frame_scales: scales coded for the frames after each GOP's keyframe (the tiny model has 4)


def _mp4_frames(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, s.codec_context.width, s.codec_context.height


def test_keyframe_compress_manifest_savings_reserve(s3_server, ray_session, prefect_harness, monkeypatch,
                                                    tmp_path):
    aws_env(monkeypatch, s3_server)
    from flows.cli import main
    from flows.reserve import reserve
    from flows.savings import savings
    from pipeline import manifest
    from pipeline.archive import video_id_of
    from pipeline.codec.container import StreamHeader
    from pipeline.store import open_store

    dest = f"s3://{new_bucket(s3_server)}/archive"
    assert main(["compress", str(SAMPLE), "--dest", dest, "--weights", TINY_MODEL, "--actors", "2", "--gop", "8",
                 "--mode", "keyframe", "--frame-scales", str(K), "--job", "kf-1"]) == 0
    store = open_store(dest)
    vid = video_id_of(SAMPLE)
    rows = manifest.read_manifest(store)
    assert set(rows.column("video_id").to_pylist()) == {vid}
    assert set(rows.column("mode").to_pylist()) == {"keyframe"}
    layers = rows.filter(pc.greater(rows.column("scale"), 0)).to_pylist()
    assert {r["scale"] for r in layers} == {1, 2, 3, 4} and sum(r["frame_count"] for r in layers
                                                                if r["scale"] == 1) == 24
    for r in layers:  # every GOP row marks its first frame as a keyframe; above K only it is coded
        assert r["keyframe"] is True
        assert r["frames_coded"] == (r["frame_count"] if r["scale"] <= K else 1), r
    assert any(r["frame_count"] > 1 for r in layers)  # so the check above tells the two cases apart
    (hdr_row,) = rows.filter(pc.equal(rows.column("scale"), 0)).to_pylist()
    assert hdr_row["frames_coded"] == 0 and hdr_row["frame_count"] == 24
    header = StreamHeader.from_bytes(store.get(f"videos/{vid}/header.bin"))
    assert (header.mode, header.frame_scales) == ("keyframe", K)

    # layer k is exactly chunk k of every GOP coded in keyframe mode by the same model here; the same GOPs
    # in plain mode cost the same up to K and more above it
    from pipeline.codec import Codec, CodecConfig

    codec = Codec.random(CodecConfig.tiny(), seed=0)
    frames = video_io.read_frames(SAMPLE, 0, 24)
    kf = [codec.encode_gop(frames[g.first_frame:g.first_frame + g.frame_count], frame_scales=K, gop_index=i)
          for i, g in enumerate(header.gops)]
    pl = [codec.encode_gop(frames[g.first_frame:g.first_frame + g.frame_count]) for g in header.gops]
    assert [g.generate for g in header.gops] == [e.generate for e in kf]  # the encoder's generated prefixes
    assert all(g.generate is not None for g in header.gops if g.frame_count > 1)
    for k in (1, 2, 3, 4):
        assert store.get(f"videos/{vid}/layer-{k}.bin") == b"".join(e.chunks[k - 1] for e in kf)
        kf_bytes, pl_bytes = (sum(len(e.chunks[k - 1]) for e in x) for x in (kf, pl))
        assert kf_bytes == pl_bytes if k <= K else kf_bytes < pl_bytes

    def layer_bytes(t, k):
        return pc.sum(t.filter(pc.equal(t.column("scale"), k)).column("byte_length")).as_py()

    sv = savings(dest=dest, by="mode")
    assert {(r["mode"], r["scales"]) for r in sv["rows"]} == {("keyframe", k) for k in (1, 2, 3, 4)}
    full = next(r for r in sv["rows"] if r["scales"] == 4)
    assert full["archived_bytes"] == sum(o.size for o in store.list("videos/")) == sv["totals"]["stored_bytes"]

    # re-serve below and above K: the decoder takes the mode from the stored header
    for k in (1, 4):
        out = tmp_path / f"kf_k{k}.mp4"
        r = reserve(dest=dest, video_id=vid, scales=k, output=str(out), weights=TINY_MODEL, actors=1)
        assert (r["mode"], r["frame_scales"], r["frames"]) == ("keyframe", K, 24)
        assert r["layer_bytes_read"] == r["layer_bytes"] == sum(layer_bytes(rows, j) for j in range(1, k + 1))
        assert _mp4_frames(out) == (24, 448, 256)
        assert video_io.probe(out).frame_count == 24

    # a later job in the other mode skips the video: the id is the content hash, whatever the mode
    from flows.compress import compress

    rep = compress(sources=[str(SAMPLE)], dest=dest, weights=TINY_MODEL, actors=1, job="plain-2")
    assert [(v["status"], v["reason"]) for v in rep["videos"]] == [("skipped", "already archived")]
    assert not manifest.list_parts(store, "plain-2")


@pytest.mark.parametrize("argv, message", [
    (["--mode", "keyframe"], "needs --frame-scales"),
    (["--mode", "keyframe", "--frame-scales", "0"], "use an integer >= 1"),
    (["--mode", "keyframe", "--frame-scales", "3", "--scales", "2"], "more than the 2 scales kept"),
    (["--frame-scales", "2"], "needs --mode keyframe"),
])
def test_compress_rejects_bad_frame_scales_before_starting(argv, message, tmp_path, capsys):
    from flows.cli import main

    dest = tmp_path / "archive"
    try:
        rc = main(["compress", str(SAMPLE), "--dest", str(dest), "--weights", TINY_MODEL, *argv])
    except SystemExit as exc:  # argument-level checks exit 2 (argparse), value combinations return 1
        rc = exc.code
    assert rc in (1, 2)
    assert message in capsys.readouterr().err
    assert not dest.exists()  # refused before anything was read or written


def test_frame_scales_above_the_model_and_deployment_checks(tmp_path, ray_session, prefect_harness):
    from flows.compress import compress
    from flows.deploy import compress_deployment

    with pytest.raises(ProGVCError, match="more than the 4 scales kept"):
        compress(sources=[str(SAMPLE)], dest=str(tmp_path / "a"), weights=TINY_MODEL, actors=1, mode="keyframe",
                 frame_scales=5)
    d = compress_deployment(sources=["s3://raw/"], dest="s3://archive", mode="keyframe", frame_scales=K)
    assert d.parameters == {"sources": ["s3://raw/"], "dest": "s3://archive", "mode": "keyframe", "frame_scales": K}
    with pytest.raises(ProGVCError, match="needs --mode keyframe"):
        compress_deployment(sources=["x"], dest="y", frame_scales=2)
