"""pipeline.codec.train end to end on a tiny data folder: every stage runs, resumes from its checkpoint
and exports a weights file that the codec loads and codes with."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipeline.codec import Codec
from pipeline.codec import data as train_data
from pipeline.codec.train import main
from pipeline.video_io import write_video
from tests.fixtures_codec import moving_clip


def test_stages_resume_and_export(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    (root / "clips" / "train").mkdir(parents=True)
    (root / "images" / "train").mkdir(parents=True)
    write_video(root / "clips" / "train" / "a.y4m", moving_clip(5, 256, 288, seed=1), 25)  # >= one 16x16 tile
    write_video(root / "clips" / "train" / "small.y4m", moving_clip(3, 64, 96, seed=4), 25)  # too small: skipped
    Image.fromarray(moving_clip(1, 80, 80, seed=2)[0]).save(root / "images" / "train" / "b.png")
    monkeypatch.setattr(train_data, "DATA", root)
    tok, dec, ctx, out = (str(tmp_path / n) for n in ("tok", "dec", "ctx", "model.pt"))
    fast = ["--batch", "1", "--crop", "64", "--w-msssim", "0", "--save-every", "0"]  # MS-SSIM needs > 160 px

    main(["tokenizer", "--out", tok, "--steps", "3", "--ae-steps", "1", "--no-pca", *fast])  # AE, k-means, VQ
    assert torch.load(f"{tok}/ckpt.pt", weights_only=False)["step"] == 3
    capsys.readouterr()
    main(["tokenizer", "--out", tok, "--steps", "4", "--ae-steps", "1", "--no-pca", *fast])
    assert "at step 3" in capsys.readouterr().out  # resumed, not restarted
    first = torch.load(f"{tok}/ckpt.pt", weights_only=False)
    assert first["step"] == 4 and first["wall"] > 0

    main(["decoder", "--tokenizer", f"{tok}/ckpt.pt", "--out", dec, "--steps", "2", *fast])
    main(["context", "--tokenizer", f"{tok}/ckpt.pt", "--out", ctx, "--steps", "2", "--batch", "2",
          "--max-frames", "4", "--dim", "32", "--layers", "1", "--heads", "2", "--mlp", "2", "--save-every", "0"])
    main(["export", "--tokenizer", f"{tok}/ckpt.pt", "--decoder", f"{dec}/ckpt.pt", "--context", f"{ctx}/ckpt.pt",
          "-o", out])

    codec = Codec.load(out)
    assert codec.meta["tokenizer_steps"] == 4 and codec.meta["decoder_finetune_steps"] == 2
    assert codec.meta["context_steps"] == 2
    clip = moving_clip(2, 48, 64, seed=3)
    enc = codec.encode_gop(clip)
    back = codec.decode_gop(enc.chunks, len(clip), 64, 48)
    assert back.shape == clip.shape and back.dtype == np.uint8
