"""Staged, resumable training of the ProGVC codec (CPU or CUDA; needs only torch + numpy + PyAV/PIL data).

    python -m pipeline.codec.train tokenizer --out runs/tok --minutes 40
    python -m pipeline.codec.train context --tokenizer runs/tok/ckpt.pt --out runs/ctx --minutes 20
    python -m pipeline.codec.train export --tokenizer runs/tok/ckpt.pt --context runs/ctx/ckpt.pt \
        -o models/progvc.pt

Stage "tokenizer": continuous autoencoder for --ae-steps, then codebook k-means init on real
multi-scale residuals, then multi-scale residual VQ with quantize dropout and dead-code reset.
Stage "context": tokenizer frozen; train clips tokenized once; (keyframe, previous, current) frame
triples; cross-entropy of the context model. Each stage resumes from its own ckpt.pt.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.codec.config import CodecConfig
from pipeline.codec.context import ContextModel, scale_features
from pipeline.codec.tokenizer import Tokenizer, _up


def _log(out: Path, rec: dict) -> None:
    print(json.dumps(rec), flush=True)
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


class _Checkpoint:
    """A stage's resumable `ckpt.pt`: the trained module and its optimizer, the step and the wall time
    spent over all runs (s). Written atomically (tmp + rename) at most every `every_s` seconds and at
    the end, so a killed run resumes from its last save."""

    def __init__(self, path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, config: dict,
                 every_s: float):
        self.path, self.module, self.opt, self.config, self.every_s = path, module, opt, config, every_s
        self.step, self.wall_before = 0, 0.0  # where this run starts (resumed from the file, if any)
        if path.exists():
            s = torch.load(path, weights_only=False)
            module.load_state_dict(s["model"])
            opt.load_state_dict(s["opt"])
            self.step, self.wall_before = s["step"], s["wall"]
            print(f"resumed {path} at step {self.step}", flush=True)
        self.t_start = self.last_save = time.time()

    def run_minutes(self) -> float:
        """Minutes this run has trained (the --minutes budget)."""
        return (time.time() - self.t_start) / 60

    def wall_min(self) -> float:
        """Minutes over all runs, for the log."""
        return round((self.wall_before + time.time() - self.t_start) / 60, 1)

    def save(self, step: int, final: bool = False) -> None:
        """Write the checkpoint when `every_s` has passed since the last write, or when `final`."""
        if not final and time.time() - self.last_save <= self.every_s:
            return
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": self.module.state_dict(), "opt": self.opt.state_dict(), "step": step,
                    "wall": self.wall_before + time.time() - self.t_start, "config": self.config}, tmp)
        tmp.replace(self.path)
        self.last_save = time.time()
        if final:
            print(f"saved {self.path} at step {step}", flush=True)


def _batch(pool: list[np.ndarray], n: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    from pipeline.codec.data import random_crop

    imgs = []
    for _ in range(n):
        a = pool[rng.integers(len(pool))]
        if a.ndim == 4:
            a = a[rng.integers(len(a))]
        imgs.append(random_crop(a, crop, rng))
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2).float() / 255.0
    return x


def _recon_loss(x_hat: torch.Tensor, x: torch.Tensor, w_ms: float) -> torch.Tensor:
    from pytorch_msssim import ms_ssim

    loss = F.l1_loss(x_hat, x) + F.mse_loss(x_hat, x)
    if w_ms > 0:
        loss = loss + w_ms * (1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0))
    return loss


@torch.no_grad()
def _pca_init(tok: Tokenizer, pool: list[np.ndarray], rng: np.random.Generator, n_patches: int = 30000) -> None:
    """Encoder/decoder linear paths ← orthonormal PCA of stride×stride RGB patches; CNN corrections ← 0,
    so training starts from the closed-form transform (latent ℓ2 = pixel ℓ2 of the patch)."""
    s = tok.cfg.stride
    x = _batch(pool, 64, 256, rng)
    p = F.unfold(x - 0.5, s, stride=s).transpose(1, 2).reshape(-1, 3 * s * s).double()
    p = p[torch.randperm(len(p))[:n_patches]]
    mu = p.mean(0)
    cov = (p - mu).T @ (p - mu) / len(p)
    _, vecs = torch.linalg.eigh(cov)
    basis = vecs[:, -tok.cfg.latent_dim :].flip(1).T.float()  # (C, 3*s*s), largest first
    enc, dec = tok.encoder.linear, tok.decoder.linear
    enc.weight.copy_(basis.view(-1, 3, s, s))
    enc.bias.copy_(-(basis @ mu.float()))
    dec.weight.copy_(basis.view(-1, 3, s, s))
    # ConvTranspose bias is per channel: the mean patch's per-channel mean (patches are near-flat)
    dec.bias.copy_(mu.float().view(3, s * s).mean(1))
    tok.encoder.net[-1].weight.zero_()
    tok.encoder.net[-1].bias.zero_()
    tok.decoder.net[-1].weight.zero_()
    tok.decoder.net[-1].bias.zero_()


@torch.no_grad()
def _kmeans(v: torch.Tensor, c: torch.Tensor, iters: int, g: torch.Generator) -> torch.Tensor:
    n = len(c)
    for _ in range(iters):
        a = torch.cdist(v, c).argmin(1)
        s = torch.zeros_like(c).index_add_(0, a, v)
        cnt = torch.bincount(a, minlength=n).float()
        ok = cnt > 0
        c[ok] = s[ok] / cnt[ok, None]
        c[~ok] = v[torch.randint(len(v), (int((~ok).sum()),), generator=g)]
    return c


@torch.no_grad()
def _kmeans_init(tok: Tokenizer, x: torch.Tensor, rounds: int = 3, iters: int = 10) -> None:
    """Codebook ← k-means of the residual vectors of every scale; repeated `rounds` times, each time on
    the residuals the current codebook actually leaves (round 0: residuals of exact quantization)."""
    q = tok.quant
    f = tok.encoder(x)
    th, tw = f.shape[-2:]
    g = torch.Generator().manual_seed(0)
    c = None
    for r in range(rounds):
        f_rest = f.clone()
        vecs = []
        for k, (hk, wk) in enumerate(q.sizes(th, tw)):
            res = F.interpolate(f_rest, size=(hk, wk), mode="area") if (hk, wk) != (th, tw) else f_rest
            vecs.append(res.permute(0, 2, 3, 1).reshape(-1, res.shape[1]))
            z = res if r == 0 else q.codebook.weight[q.lookup(res, q.codebook.weight)].permute(0, 3, 1, 2)
            f_rest = f_rest - q.phi_for(k)(_up(z, (th, tw)))
        v = torch.cat(vecs)
        if c is None:
            c = v[torch.randint(len(v), (q.codebook.weight.shape[0],), generator=g)].clone()
        c = _kmeans(v, c, iters, g)
        q.codebook.weight.copy_(c)
        err = F.mse_loss(f - f_rest, f).item() if r else float("nan")
        print(f"k-means round {r}: {len(v)} residual vectors, latent mse after RQ {err:.4f}", flush=True)


def train_tokenizer(a: argparse.Namespace) -> None:
    from pipeline.codec.data import source_frames, train_clips, train_images

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = CodecConfig()
    tok = Tokenizer(cfg)
    opt = torch.optim.AdamW(tok.parameters(), lr=a.lr, weight_decay=0.0)
    usage = torch.zeros(cfg.codebook_size)
    t0 = time.time()
    pool: list[np.ndarray] = train_clips() + train_images()
    if a.sources:
        pool += source_frames()
    print(f"data: {len(pool)} items, loaded in {time.time() - t0:.0f}s", flush=True)
    ck = _Checkpoint(out / "ckpt.pt", tok, opt, cfg.to_dict(), a.save_every)
    step = ck.step
    rng = np.random.default_rng(step + 1)
    if step == 0 and a.pca:
        _pca_init(tok, pool, rng)
        with torch.no_grad():
            xx = _batch(pool, 8, a.crop, rng)
            mse = F.mse_loss(tok.decoder(tok.encoder(xx)).clamp(0, 1), xx).item()
        print(f"PCA init: linear autoencoder PSNR {-10 * np.log10(mse):.2f} dB", flush=True)
    n = cfg.n_scales
    while True:
        if ck.run_minutes() > a.minutes or step >= a.steps:
            break
        x = _batch(pool, a.batch, a.crop, rng)
        if step == a.ae_steps:
            _kmeans_init(tok, _batch(pool, 24, a.crop, rng))
            print("codebook initialised by k-means", flush=True)
        f = tok.encoder(x)
        n_used = n
        if step < a.ae_steps:
            x_hat = tok.decoder(f)
            vq = torch.zeros(())
        else:
            n_used = int(rng.integers(1, n + 1)) if rng.random() < a.qdrop else n
            f_q, idxs, vq = tok.quant(f, n_used=n_used, collect=True)
            x_hat = tok.decoder(f_q)
            with torch.no_grad():
                usage *= 0.99
                for idx in idxs:
                    usage += torch.bincount(idx.flatten(), minlength=cfg.codebook_size).float()
        loss = _recon_loss(x_hat, x, a.w_msssim) + a.w_vq * vq
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
        step += 1
        if step > a.ae_steps and step % 50 == 0:
            with torch.no_grad():  # dead-code reset: unused codes ← random recent residual vectors
                dead = (usage < 0.03).nonzero().flatten()
                if len(dead):
                    r = torch.cat(tok.quant.last_residuals)
                    pick = torch.randint(len(r), (len(dead),))
                    tok.quant.codebook.weight[dead] = r[pick] + 1e-3 * torch.randn_like(r[pick])
                    usage[dead] = 1.0
        if step % 20 == 0:
            with torch.no_grad():
                mse = F.mse_loss(x_hat.clamp(0, 1), x).item()
            _log(out, {"stage": "tokenizer", "step": step, "loss": round(loss.item(), 5),
                       "vq": round(float(vq), 5), "K": n_used, "psnr": round(-10 * np.log10(max(mse, 1e-10)), 2),
                       "used": int((usage > 0.03).sum()), "wall_min": ck.wall_min()})
        ck.save(step)
    ck.save(step, final=True)


def train_decoder(a: argparse.Namespace) -> None:
    """Stage B': encoder and quantizer frozen (tokens unchanged, so the context model stays valid);
    the decoder CNN is fine-tuned on quantized latents of random scale prefixes."""
    from pipeline.codec.data import source_frames, train_clips, train_images

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = torch.load(a.tokenizer, weights_only=False)
    cfg = CodecConfig.from_dict(ts["config"])
    tok = Tokenizer(cfg)
    tok.load_state_dict(ts["model"])
    tok.encoder.requires_grad_(False)
    tok.quant.requires_grad_(False)
    opt = torch.optim.AdamW(tok.decoder.parameters(), lr=a.lr)
    pool: list[np.ndarray] = train_clips() + train_images() + source_frames()
    ck = _Checkpoint(out / "ckpt.pt", tok.decoder, opt, cfg.to_dict(), a.save_every)
    step = ck.step
    rng = np.random.default_rng(step + 7)
    n = cfg.n_scales
    while ck.run_minutes() < a.minutes and step < a.steps:
        x = _batch(pool, a.batch, a.crop, rng)
        n_used = int(rng.integers(1, n + 1)) if rng.random() < a.qdrop else n
        with torch.no_grad():
            f_q, _, _ = tok.quant(tok.encoder(x), n_used=n_used)
        x_hat = tok.decoder(f_q)
        loss = _recon_loss(x_hat, x, a.w_msssim)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.decoder.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            mse = F.mse_loss(x_hat.detach().clamp(0, 1), x).item()
            _log(out, {"stage": "decoder", "step": step, "K": n_used, "loss": round(loss.item(), 5),
                       "psnr": round(-10 * np.log10(max(mse, 1e-10)), 2),
                       "wall_min": ck.wall_min()})
        ck.save(step)
    ck.save(step, final=True)


def _tokenize_clips(tok: Tokenizer, max_clips: int = 0, max_frames: int = 0) -> list[list[list[torch.Tensor]]]:
    """Per clip, per frame: tokens per scale (Hk, Wk) (float64 quantizer path, as at encode)."""
    from pipeline.codec.data import train_clips

    out = []
    clips = train_clips()
    for clip in clips[:max_clips] if max_clips else clips:
        frames = []
        for fr in clip[:max_frames] if max_frames else clip:
            x = torch.from_numpy(fr).permute(2, 0, 1)[None].float() / 255.0
            frames.append(tok.encode_frame(x))
        out.append(frames)
    return out


def train_context(a: argparse.Namespace) -> None:
    from pipeline.codec.tokenizer import grid_to_blocks

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = torch.load(a.tokenizer, weights_only=False)
    cfg = replace(CodecConfig.from_dict(ts["config"]), ctx_dim=a.dim, ctx_layers=a.layers, ctx_heads=a.heads,
                  ctx_mlp=a.mlp)
    tok = Tokenizer(cfg)
    tok.load_state_dict(ts["model"])
    tok.eval().requires_grad_(False)
    ctx = ContextModel(cfg)
    opt = torch.optim.AdamW(ctx.parameters(), lr=a.lr, weight_decay=0.01)
    cache = out / "tokens.pt"
    t0 = time.time()
    if cache.exists():
        clips = torch.load(cache, weights_only=False)
    else:
        clips = _tokenize_clips(tok, a.max_clips, a.max_frames)
        torch.save(clips, cache)
    print(f"tokenized {len(clips)} clips in {time.time() - t0:.0f}s", flush=True)
    clips = [c for c in clips if min(c[0][-1].shape) >= cfg.tile]  # trains on full tiles only
    if not clips:
        raise SystemExit(f"no train clip is large enough for one full {cfg.tile}x{cfg.tile}-token tile "
                         f"(frames of at least {cfg.tile * cfg.stride} px a side)")
    ck = _Checkpoint(out / "ckpt.pt", ctx, opt, cfg.to_dict(), a.save_every)
    step = ck.step
    # full-size tiles only (batchable), with (clip, frame, tile) addressing
    h0, w0 = clips[0][0][-1].shape
    rng = np.random.default_rng(step + 1)
    q = tok.quant
    cb = q.codebook.weight

    def contrib(idx: torch.Tensor, k: int) -> torch.Tensor:
        return q.phi_for(k)(_up(cb[idx].permute(0, 3, 1, 2), (cfg.tile, cfg.tile)))

    sizes = [(s, s) for s in cfg.scales]
    none = cfg.codebook_size
    while ck.run_minutes() < a.minutes and step < a.steps:
        cur, prev, key = [[] for _ in sizes], [[] for _ in sizes], [[] for _ in sizes]
        has_prev = []
        for _ in range(a.batch):
            c = clips[rng.integers(len(clips))]
            f = int(rng.integers(len(c)))
            p = int(rng.integers(0, min(f, a.gop - 1) + 1)) if rng.random() > 0.15 else 0
            kf = f - p
            from pipeline.codec.tiles import TileGrid

            H16, W16 = c[f][-1].shape  # finest-scale grid = latent size for the full-scale schedule
            grid = TileGrid(H16, W16, cfg.tile, cfg.scales) if cfg.scales[-1] == cfg.tile else None
            assert grid is not None
            full = [i for i, t in enumerate(grid.tiles()) if t[2] == cfg.tile and t[3] == cfg.tile]
            ti = full[rng.integers(len(full))]
            for k in range(len(sizes)):
                cur[k].append(grid_to_blocks(c[f][k], grid, k)[ti])
                prev[k].append(grid_to_blocks(c[f - 1][k], grid, k)[ti] if p > 0 else None)
                key[k].append(grid_to_blocks(c[kf][k], grid, k)[ti] if p > 0 else None)
            has_prev.append(p > 0)
        cur_t = [torch.stack(c_) for c_ in cur]
        def _fill(lists: list, s_: tuple[int, int]) -> torch.Tensor:
            return torch.stack([t if t is not None else torch.full(s_, none) for t in lists])

        prev_t = [_fill(pk, s_) for pk, s_ in zip(prev, sizes)]
        key_t = [_fill(kk, s_) for kk, s_ in zip(key, sizes)]
        with torch.no_grad():
            feats = scale_features(cur_t, len(sizes), contrib, (a.batch, cfg.latent_dim, cfg.tile, cfg.tile),
                                   sizes, torch.float32)
        logits = ctx(feats, prev_t, key_t)
        target = torch.cat([t.flatten(1) for t in cur_t], 1)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.flatten(), reduction="none")
        loss = ce.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctx.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            ce_b = ce.detach().view(a.batch, -1) / np.log(2)
            per = []
            o = 0
            for s_ in sizes:
                n_ = s_[0] * s_[1]
                per.append(round(ce_b[:, o : o + n_].mean().item(), 2))
                o += n_
            hp = torch.tensor(has_prev)
            _log(out, {"stage": "context", "step": step, "bits_per_token": round(ce_b.mean().item(), 3),
                       "bits_intra": round(ce_b[~hp].mean().item(), 3) if (~hp).any() else None,
                       "bits_inter": round(ce_b[hp].mean().item(), 3) if hp.any() else None,
                       "per_scale": per, "wall_min": ck.wall_min()})
        ck.save(step)
    ck.save(step, final=True)


def export(a: argparse.Namespace) -> None:
    """Combine the tokenizer and context checkpoints into one shipped weights file."""
    ts = torch.load(a.tokenizer, weights_only=False)
    state = {f"tokenizer.{k}": v for k, v in ts["model"].items()}
    meta = {"tokenizer_steps": ts["step"], "tokenizer_wall_s": round(ts["wall"])}
    if a.decoder:
        ds = torch.load(a.decoder, weights_only=False)
        state.update({f"tokenizer.decoder.{k}": v for k, v in ds["model"].items()})
        meta.update({"decoder_finetune_steps": ds["step"], "decoder_finetune_wall_s": round(ds["wall"])})
    config = ts["config"]
    if a.context:
        cs = torch.load(a.context, weights_only=False)
        config = cs["config"]
        state.update({f"context.{k}": v for k, v in cs["model"].items()})
        meta.update({"context_steps": cs["step"], "context_wall_s": round(cs["wall"])})
    else:
        from pipeline.codec.context import ContextModel

        torch.manual_seed(0)
        ctx = ContextModel(CodecConfig.from_dict(ts["config"]))
        state.update({f"context.{k}": v for k, v in ctx.state_dict().items()})
    Path(a.o).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config, "state_dict": state, "meta": meta}, a.o)
    print(f"wrote {a.o}: {meta}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pipeline.codec.train")
    sub = p.add_subparsers(dest="stage", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("--out", default="runs/tok")
    t.add_argument("--minutes", type=float, default=40)
    t.add_argument("--steps", type=int, default=10**9)
    t.add_argument("--ae-steps", type=int, default=400)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--qdrop", type=float, default=0.5)
    t.add_argument("--w-msssim", type=float, default=0.2)
    t.add_argument("--w-vq", type=float, default=0.1, help="weight of codebook + 0.25·commitment loss")
    t.add_argument("--no-pca", dest="pca", action="store_false", help="skip the PCA start")
    t.add_argument("--sources", action="store_true", help="also sparse frames of the permitted sources/")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--save-every", type=float, default=180)
    t.set_defaults(func=train_tokenizer)
    c = sub.add_parser("context")
    c.add_argument("--tokenizer", default="runs/tok/ckpt.pt")
    c.add_argument("--out", default="runs/ctx")
    c.add_argument("--minutes", type=float, default=20)
    c.add_argument("--steps", type=int, default=10**9)
    c.add_argument("--batch", type=int, default=6)
    c.add_argument("--gop", type=int, default=16)
    c.add_argument("--max-clips", type=int, default=0, help="tokenize only the first N train clips (smoke)")
    c.add_argument("--max-frames", type=int, default=0, help="tokenize only the first N frames of each clip")
    c.add_argument("--lr", type=float, default=5e-4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--save-every", type=float, default=180)
    d = CodecConfig()
    c.add_argument("--dim", type=int, default=d.ctx_dim)
    c.add_argument("--layers", type=int, default=d.ctx_layers)
    c.add_argument("--heads", type=int, default=d.ctx_heads)
    c.add_argument("--mlp", type=int, default=d.ctx_mlp)
    c.set_defaults(func=train_context)
    dd = sub.add_parser("decoder")
    dd.add_argument("--tokenizer", default="runs/tok/ckpt.pt")
    dd.add_argument("--out", default="runs/dec")
    dd.add_argument("--minutes", type=float, default=20)
    dd.add_argument("--steps", type=int, default=10**9)
    dd.add_argument("--batch", type=int, default=4)
    dd.add_argument("--crop", type=int, default=256)
    dd.add_argument("--lr", type=float, default=2e-4)
    dd.add_argument("--qdrop", type=float, default=0.5)
    dd.add_argument("--w-msssim", type=float, default=0.2)
    dd.add_argument("--threads", type=int, default=1)
    dd.add_argument("--save-every", type=float, default=180)
    dd.set_defaults(func=train_decoder)
    e = sub.add_parser("export")
    e.add_argument("--tokenizer", default="runs/tok/ckpt.pt")
    e.add_argument("--context", default="runs/ctx/ckpt.pt")
    e.add_argument("--decoder", default=None, help="fine-tuned decoder checkpoint (stage 'decoder')")
    e.add_argument("-o", default="models/progvc.pt")
    e.set_defaults(func=export)
    a = p.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
