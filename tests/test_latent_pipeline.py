"""The default model (latent-v1) through the archive pipeline: `progvc compress --fidelity --effort` (real Ray,
Prefect's test harness, a local archive), the settings in the stored header and the manifest, and `reserve`
with no model flag giving the stream API's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from pipeline import video_io

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sam2_dog.mp4"


def test_latent_compress_records_settings_and_reserves(ray_session, prefect_harness, tmp_path, capsys):
    from flows.cli import main
    from flows.reserve import reserve
    from pipeline import manifest
    from pipeline.archive import video_id_of
    from pipeline.pgv import PgvStream, StreamHeader, split_layer
    from pipeline.store import open_store
    from pipeline.stream import iter_decoded

    src = tmp_path / "crop.y4m"
    x = video_io.read_frames(SAMPLE, 0, 6)
    video_io.write_video(src, np.ascontiguousarray(x[:, 100:148, 200:264]), 25)
    dest = str(tmp_path / "archive")
    assert main(["compress", str(src), "--dest", dest, "--fidelity", "50", "--effort", "fast", "--actors", "1",
                 "--gop", "4", "--job", "latent-1"]) == 0
    store = open_store(dest)
    vid = video_id_of(src)
    rows = manifest.read_manifest(store)
    assert set(rows.column("model_id").to_pylist()) == {"latent-v1"}
    assert set(zip(rows.column("effort").to_pylist(), rows.column("fidelity").to_pylist())) == {("fast", 50.0)}
    assert set(rows.filter(pc.greater(rows.column("scale"), 0)).column("scale").to_pylist()) == set(range(1, 8))
    header = StreamHeader.from_bytes(store.get(f"videos/{vid}/header.bin"))
    assert header.encoder == {"fidelity": 50, "effort": "fast"} and header.model_id == "latent-v1"
    layers = [split_layer(store.get(f"videos/{vid}/layer-{k}.bin"), len(header.gops), k) for k in range(1, 8)]
    stream = PgvStream.from_gops(header, [[layers[k][g] for k in range(7)] for g in range(len(header.gops))])
    out = tmp_path / "k3.y4m"
    r = reserve(dest=dest, video_id=vid, scales=3, output=str(out), actors=1)  # the model from the header
    assert r["model_id"] == "latent-v1" and r["frames"] == 6
    ref = np.stack(list(iter_decoded(stream, None, scales=3)))
    want = tmp_path / "ref.y4m"
    video_io.write_video(want, ref, 25)
    assert np.array_equal(video_io.read_frames(out), video_io.read_frames(want))
