"""The model registry: streams and archives decode with the model their header names, whatever the default.

Two tiny random models A and B are saved as `<id>.pt` in a temporary models folder (`PROGVC_MODELS_DIR`);
"the default changes" = `pipeline.registry.DEFAULT_MODEL_ID` (and `PROGVC_WEIGHTS`, the encoding default of
the flows) switch from A to B, as they will when a retrained model ships.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import registry, video_io


@pytest.fixture
def models_dir(tmp_path, monkeypatch, tiny_codec, other_tiny_codec):
    """A models folder holding A (= tiny_codec) and B (= other_tiny_codec) as <id>.pt; A is the default."""
    d = tmp_path / "models"
    d.mkdir()
    tiny_codec.save(d / f"{tiny_codec.model_id}.pt")
    other_tiny_codec.save(d / f"{other_tiny_codec.model_id}.pt")
    monkeypatch.setenv("PROGVC_MODELS_DIR", str(d))
    monkeypatch.setattr(registry, "DEFAULT_MODEL_ID", tiny_codec.model_id)
    registry.clear_cache()
    yield d
    registry.clear_cache()


def test_stream_of_model_a_decodes_after_the_default_becomes_b(models_dir, tiny_codec, other_tiny_codec, tiny_video,
                                                               tmp_path, monkeypatch, capsys):
    from flows.cli import main
    from pipeline.pgv import read_pgv
    from pipeline.stream import decode_video

    a, b = tiny_codec.model_id, other_tiny_codec.model_id
    pgv = tmp_path / "a.pgv"
    assert main(["encode", tiny_video, "-o", str(pgv), "--gop", "2", "--quiet"]) == 0  # the default: A
    assert read_pgv(pgv).header.model_id == a
    ref = decode_video(pgv, None, scales=2, predict="sample", seed=4, codec=tiny_codec, progress=False)

    monkeypatch.setattr(registry, "DEFAULT_MODEL_ID", b)  # a new model ships
    registry.clear_cache()
    pgv_b = tmp_path / "b.pgv"
    assert main(["encode", tiny_video, "-o", str(pgv_b), "--gop", "2", "--quiet"]) == 0
    assert read_pgv(pgv_b).header.model_id == b  # new streams use B ...
    out = tmp_path / "a.y4m"  # ... and A's stream still decodes, with A, without any flag
    assert main(["decode", str(pgv), "-o", str(out), "--scales", "2", "--predict", "sample", "--seed", "4",
                 "--quiet"]) == 0
    want = tmp_path / "want.y4m"
    video_io.write_video(want, ref, 25)
    assert np.array_equal(video_io.read_frames(out), video_io.read_frames(want))
    assert np.array_equal(decode_video(pgv, None, scales=2, predict="sample", seed=4, progress=False), ref)

    # an explicit --weights wins, and must be the stream's model
    capsys.readouterr()
    assert main(["decode", str(pgv), "-o", str(out), "--weights", b, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert a in err and b in err


def test_missing_model_names_the_id_and_where_to_put_it(models_dir, tiny_codec, tiny_video, tmp_path, capsys):
    from flows.cli import main

    pgv = tmp_path / "a.pgv"
    assert main(["encode", tiny_video, "-o", str(pgv), "--quiet"]) == 0
    (models_dir / f"{tiny_codec.model_id}.pt").unlink()
    registry.clear_cache()
    capsys.readouterr()
    assert main(["decode", str(pgv), "-o", str(tmp_path / "x.y4m"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"model {tiny_codec.model_id} is not installed" in err
    assert str(models_dir / f"{tiny_codec.model_id}.pt") in err and "PROGVC_MODELS_DIR" in err


def test_index_builtins_listing_and_misnamed_files(models_dir, tiny_codec, other_tiny_codec, capsys):
    import json

    from flows.cli import main
    from pipeline.errors import ProGVCError

    a, b = tiny_codec.model_id, other_tiny_codec.model_id
    (models_dir / "renamed.pt").write_bytes((models_dir / f"{b}.pt").read_bytes())
    (models_dir / "index.json").write_text(json.dumps({
        "0123456789abcdef": {"family": "vq", "file": "renamed.pt", "note": "misnamed"},
        "fedcba9876543210": {"family": "vq", "file": "gone.pt"},
    }))
    listed = {m.model_id: m for m in registry.list_models()}
    assert {a, b, "93d29d4227e6bce7", "random:tiny:<seed>"} <= set(listed)
    assert listed[a].default and not listed[b].default and listed[a].family == "vq"
    assert listed["0123456789abcdef"].note == "misnamed" and not listed["fedcba9876543210"].installed
    with pytest.raises(ProGVCError, match=f"renamed.pt holds model {b}, not 0123456789abcdef"):
        registry.open_codec("0123456789abcdef")
    with pytest.raises(ProGVCError, match="gone.pt, which is missing"):
        registry.open_codec("fedcba9876543210")
    # a builtin by prefix; the loaded codec is then found by its own id too, and cached
    c = registry.open_codec("random:tiny:1")
    assert c.model_id == b and c.family == "vq" and registry.open_codec(b) is c
    # a family registered in code for an exact id needs no file (what the latent family does)
    registry.register_builtin("test-family-v1", lambda spec, device: _Named(spec), "test", "no weights")
    try:
        assert registry.open_codec("test-family-v1").model_id == "test-family-v1"
        assert main(["models"]) == 0
        out = capsys.readouterr().out
        assert f"* {a}" in out and "test-family-v1" in out and "no weights" in out and "(MISSING)" in out
    finally:
        registry._builtins.pop("test-family-v1")


class _Named:
    """The smallest object a registered factory may return for this test (the registry only reads its id)."""

    family = "test"

    def __init__(self, model_id: str):
        self.model_id = model_id


def test_codec_api_protocol_and_torch_free_imports():
    """The VQ codec implements the family protocol; the format, protocol, registry and stream modules and
    `progvc --help` load without torch, Ray or numpy-heavy codec code; eval's metric list matches."""
    import subprocess
    import sys

    from pipeline import metrics
    from pipeline.codec import Codec, CodecConfig
    from pipeline.codec_api import CodecFamily
    from pipeline.evaluate import cli as eval_cli

    c = Codec.random(CodecConfig.tiny(), seed=0)
    assert isinstance(c, CodecFamily)
    assert (c.family, c.n_layers, c.scales, c.tile) == ("vq", 4, (1, 2, 3, 4), 4)
    assert eval_cli.METRICS == metrics.METRICS
    code = ("import sys; import pipeline.pgv, pipeline.codec.container, pipeline.codec_api, pipeline.registry, "
            "pipeline.stream, pipeline.gop, workers.requests, flows.cli as c; c.build_parser().format_help(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'prefect'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    code = "import sys, flows.cli as c; c.build_parser().format_help(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_archive_reserves_with_its_model_after_the_default_changes(models_dir, tiny_codec, other_tiny_codec,
                                                                   tiny_video, tmp_path, monkeypatch,
                                                                   ray_session, prefect_harness):
    """compress (encoding default A, via PROGVC_WEIGHTS = A's id) -> the default becomes B -> reserve without
    --weights decodes with A, and its pixels equal a reference decode through the stream API; with
    `--predict sample --seed S` they equal `progvc decode` of the same layers (GOP g seeded with S + g in both)."""
    from flows.cli import main
    from flows.compress import compress
    from flows.reserve import reserve
    from pipeline.errors import ProGVCError
    from pipeline.pgv import read_pgv
    from pipeline.store import open_store
    from pipeline.stream import decode_video

    a, b = tiny_codec.model_id, other_tiny_codec.model_id
    dest = tmp_path / "archive"
    monkeypatch.setenv("PROGVC_WEIGHTS", a)
    rep = compress(sources=[tiny_video], dest=str(dest), job="reg-1", actors=1, max_gop=2)
    (v,) = rep["committed"]
    vid = v["video_id"]
    assert v["gops"] == 3

    monkeypatch.setenv("PROGVC_WEIGHTS", b)  # a new model ships
    monkeypatch.setattr(registry, "DEFAULT_MODEL_ID", b)
    store = open_store(str(dest))
    k = 2
    pgv = tmp_path / "from-archive.pgv"  # header + layers 1..K of the archive = a valid .pgv cut
    pgv.write_bytes(store.get(f"videos/{vid}/header.bin")
                    + b"".join(store.get(f"videos/{vid}/layer-{i}.bin") for i in range(1, k + 1)))
    assert read_pgv(pgv).header.model_id == a

    for predict, seed in (("argmax", 0), ("sample", 5)):
        out = tmp_path / f"reserve-{predict}.y4m"
        r = reserve(dest=str(dest), video_id=vid, scales=k, output=str(out), predict=predict, seed=seed, actors=1)
        assert r["model_id"] == a and r["frames"] == 6
        ref = tmp_path / f"ref-{predict}.y4m"
        video_io.write_video(ref, decode_video(pgv, None, predict=predict, seed=seed, progress=False), 25)
        cli = tmp_path / f"cli-{predict}.y4m"
        assert main(["decode", str(pgv), "-o", str(cli), "--predict", predict, "--seed", str(seed), "--quiet"]) == 0
        got = video_io.read_frames(out)
        assert np.array_equal(got, video_io.read_frames(ref)), predict
        assert np.array_equal(got, video_io.read_frames(cli)), predict

    # the archive's model is gone: re-serving says which model and where its file goes
    (models_dir / f"{a}.pt").unlink()
    with pytest.raises(ProGVCError, match=f"model {a} is not installed: put its weights file at .*{a}.pt"):
        reserve(dest=str(dest), video_id=vid, scales=k, output=str(tmp_path / "x.y4m"), actors=1)
