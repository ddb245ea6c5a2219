"""Write `progvc eval` outputs: results.json (every point), summary.md (BD-rate and per-clip tables, keyframe
mode vs plain mode, the latent family's layer ladder), rd_<metric>.png (bpp on x, one line per codec/preset,
ProGVC's points labelled with K, or with the fidelity for the latent family; both ProGVC modes on the same
axes). Layer-ladder points (`ladder: true`: K < N of a fidelity sweep) are in results.json and the ladder
table, not in the curves."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.evaluate.bdrate import BDResult, bd_rate
from pipeline.metrics import LOWER_IS_BETTER

METRIC_LABEL = {
    "psnr_y": "PSNR-Y (dB)",
    "psnr_rgb": "PSNR-RGB (dB)",
    "ms_ssim": "MS-SSIM",
    "vmaf": "VMAF",
    "tfd": "tfd, luma levels (lower = better)",
}
METRIC_SHORT = {"psnr_y": "PSNR-Y", "psnr_rgb": "PSNR-RGB", "ms_ssim": "MS-SSIM", "vmaf": "VMAF", "tfd": "tfd ↓"}
PLAIN = "ProGVC"
KEYFRAME = "ProGVC keyframe"
TFD_DEFINITION = (
    "tfd (temporal frame-difference error, lower is better) = mean over frames 1..T-1 of the mean absolute "
    "difference between the decoded luma change D_t − D_(t−1) and the source's S_t − S_(t−1) (BT.601 luma, "
    "0–255 levels, across GOP boundaries too). It is 0 for an error that stays the same in every frame and equals "
    "the source's mean luma change for a frozen decode; flicker and wrong motion raise it. It is not a quality "
    "scale a codec climbs with rate, so no BD-rate is computed on it."
)

BITS_DEFINITION = (
    "**Bits** = 8 × the bytes of the codec's own coded payload, the same rule for every codec: for x264/x265/"
    "AV1 the sum of the encoder's packet sizes (raw elementary stream, parameter sets in-band, no container; "
    "x264's informational version/options SEI removed and x265's switched off with `info=0`, since they "
    "carry no picture data), for ProGVC the sum of the first K scale chunks of every GOP (each chunk's "
    "length/checksum header included; the once-per-video stream header, like a container, is not). "
    "bpp = bits ÷ (frames × width × height)."
)


def curve_label(p: dict) -> str:
    if p["codec"] == "progvc":
        if p.get("mode") == "keyframe":
            return KEYFRAME
        return f"{PLAIN} ({p['preset']})" if p.get("extra_curve") else PLAIN
    return f"av1 preset {p['preset']}" if p["codec"] == "av1" else f"{p['codec']} {p['preset']}"


def is_ladder(p: dict) -> bool:
    """A layer-ladder point (K < N of a fidelity sweep): tabled per K, not a point of any RD curve."""
    return bool(p.get("ladder"))


def point_tag(p: dict) -> str:
    """A ProGVC point's label on the plots: `K=3`, or `f60` for a fidelity sweep."""
    return f"f{p['param']:g}" if p.get("param_name") == "fidelity" else f"K={p['param']}"


def _curves(points: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """clip -> curve label -> points sorted by bpp (layer-ladder points left out)."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        if is_ladder(p):
            continue
        out[p["clip"]][curve_label(p)].append(p)
    for clip in out:
        for lab in out[clip]:
            out[clip][lab].sort(key=lambda p: p["bpp"])
    return out


def is_progvc(label: str) -> bool:
    return label.startswith(PLAIN)


def is_plain(label: str) -> bool:
    """A plain-mode ProGVC curve: "ProGVC" or an extra one decoded otherwise, "ProGVC (<predict>)"."""
    return label == PLAIN or label.startswith(PLAIN + " (")


def _label_order(label: str) -> tuple:
    return (not is_progvc(label), label)


def bd_metrics(metrics: list[str]) -> list[str]:
    """The metrics BD-rate is computed on: higher-is-better ones (tfd is reported in tables only)."""
    return [m for m in metrics if m not in LOWER_IS_BETTER]


def bd_table(
    points: list[dict], test: str, metrics: list[str], anchors: list[str] | None = None
) -> dict[str, dict[str, dict[str, BDResult]]]:
    """metric -> clip -> anchor label -> BD-rate of `test` curve vs that anchor.

    Anchors: the given labels, else every curve except `test` and the ProGVC curves (the reference codecs).
    Lower-is-better metrics are skipped."""
    curves = _curves(points)
    table: dict[str, dict[str, dict[str, BDResult]]] = {}
    for m in bd_metrics(metrics):
        table[m] = {}
        for clip, by_label in curves.items():
            if test not in by_label:
                continue
            t = by_label[test]
            row = {}
            for lab, a in by_label.items():
                if lab == test or (lab not in anchors if anchors is not None else is_progvc(lab)):
                    continue
                if not all(m in p["metrics"] for p in a + t):
                    continue
                row[lab] = bd_rate(
                    [p["bpp"] for p in a],
                    [p["metrics"][m] for p in a],
                    [p["bpp"] for p in t],
                    [p["metrics"][m] for p in t],
                )
            table[m][clip] = row
    return table


def _fmt_bd(r: BDResult | None, notes: dict[str, int]) -> str:
    if r is None:
        return "–"
    if r.value is None:
        reason = r.reason or "n/a"
        if reason.startswith("no overlap"):
            return "no overlap"
        if reason.startswith("too few"):
            return "too few points"
        if reason not in notes:
            notes[reason] = len(notes) + 1
        return f"n/a [{notes[reason]}]"
    return f"{r.value:+.1f} %"


def _bd_markdown(table: dict, metrics: list[str], anchors: list[str]) -> list[str]:
    lines: list[str] = []
    notes: dict[str, int] = {}
    for m in metrics:
        clips = sorted(table.get(m, {}))
        if not clips:
            continue
        lines += [
            f"**{METRIC_SHORT.get(m, m)}**",
            "",
            "| clip | " + " | ".join(anchors) + " |",
            "|---|" + "---|" * len(anchors),
        ]
        means: dict[str, list[float]] = defaultdict(list)
        for clip in clips:
            cells = []
            for a in anchors:
                r = table[m][clip].get(a)
                cells.append(_fmt_bd(r, notes))
                if r is not None and r.value is not None:
                    means[a].append(r.value)
            lines.append(f"| {clip} | " + " | ".join(cells) + " |")
        mean_cells = [
            (f"{sum(means[a]) / len(means[a]):+.1f} % ({len(means[a])}/{len(clips)})" if means[a] else "–")
            for a in anchors
        ]
        lines += ["| **mean (clips with overlap)** | " + " | ".join(mean_cells) + " |", ""]
    lines += [
        "'no overlap': the two curves share no quality range (see the per-clip tables and RD plots); "
        "'too few points': fewer than 2 non-dominated RD points.",
        "",
    ]
    if notes:
        lines += ["Not computable:"] + [f"[{i}] {reason}" for reason, i in notes.items()] + [""]
    return lines


def _fmt(v: float | None, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" if metric == "ms_ssim" else f"{v:.2f}"


def write_results_json(path: Path, points: list[dict], meta: dict) -> None:
    path.write_text(json.dumps({"meta": meta, "points": points}, indent=1))


def plot_rd(out_dir: Path, points: list[dict], metrics: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = _curves(points)
    clips = sorted(curves)
    labels = sorted({lab for c in curves.values() for lab in c}, key=_label_order)
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    written = []
    for m in metrics:
        n = len(clips)
        if not n:
            break
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
        for ax, clip in zip(axes.flat, clips):
            for lab in labels:
                pts = [p for p in curves[clip].get(lab, []) if m in p["metrics"]]
                if not pts:
                    continue
                x = [p["bpp"] for p in pts]
                y = [p["metrics"][m] for p in pts]
                style = dict(marker=".", ms=5, lw=1.2)
                if lab == PLAIN:
                    style = dict(marker="o", ms=4, lw=2.2)
                elif lab == KEYFRAME:
                    style = dict(marker="s", ms=4, lw=2.2, ls="--")
                ax.plot(x, y, label=lab, color=colors[lab], **style)
                if is_progvc(lab):
                    for p, xi, yi in zip(pts, x, y):
                        ax.annotate(
                            point_tag(p),
                            (xi, yi),
                            textcoords="offset points",
                            xytext=(3, -9) if lab == PLAIN else (3, 4),
                            fontsize=7,
                            color=colors[lab],
                        )
            ax.set_xscale("log")
            lo, hi = ax.get_xlim()
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if hi / lo > 60 else (1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(clip, fontsize=10)
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(METRIC_LABEL.get(m, m))
            ax.grid(True, which="both", alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        seen: dict[str, object] = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        ncol = min(len(seen), 3 * cols)
        legend_rows = math.ceil(len(seen) / max(ncol, 1))
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=9)
        fig.tight_layout(rect=(0, 0.05 * legend_rows / rows + 0.02, 1, 1))
        path = out_dir / f"rd_{m}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plain_at_bpp(plain: list[dict], bpp: float, metric: str) -> float | None:
    """Plain ProGVC's `metric` at `bpp`: linear in log10(bpp) between its neighbouring points (sorted by
    bpp); None outside plain's bpp range (no extrapolation)."""
    pts = sorted((p for p in plain if metric in p["metrics"]), key=lambda p: p["bpp"])
    if not pts or not pts[0]["bpp"] <= bpp <= pts[-1]["bpp"]:
        return None
    x = np.log10([p["bpp"] for p in pts])
    y = np.array([p["metrics"][metric] for p in pts], dtype=np.float64)
    return float(np.interp(np.log10(bpp), x, y))


def _keyframe_markdown(points: list[dict], metrics: list[str], facts: list[dict]) -> list[str]:
    """'Keyframe mode vs plain': BD-rate of the keyframe curve vs the plain one, and per clip each keyframe
    point beside plain mode interpolated at the same bpp."""
    curves = _curves(points)
    clips = sorted(c for c in curves if KEYFRAME in curves[c] and PLAIN in curves[c])
    plains = sorted({lab for c in clips for lab in curves[c] if is_plain(lab)}, key=lambda x: (x != PLAIN, x))
    L = ["## Keyframe mode vs plain", ""]
    L += [
        "Keyframe mode: frame 0 of each GOP at all N scales, the other frames at scales 1..K only, their finer "
        "scales generated by the context model conditioned on the keyframe (and the previous frame). "
        "Each keyframe-mode point is its own encode (frame scales K = 1..N−1), bits = all its chunks; "
        "plain mode = every frame at scales 1..K. Figures as measured, whichever mode wins.",
        "",
    ]
    if not clips:
        return L + ["No clip has both ProGVC curves in this run (see `--modes`).", ""]
    bdm = bd_metrics(metrics)
    table = bd_table(points, KEYFRAME, metrics, anchors=plains)
    notes: dict[str, int] = {}
    for anchor in plains:
        L += [
            f"**BD-rate of keyframe mode vs plain mode, curve '{anchor}'** (negative = keyframe mode needs fewer "
            "bits for the same quality)",
            "",
            "| clip | " + " | ".join(METRIC_SHORT.get(m, m) for m in bdm) + " |",
            "|---|" + "---|" * len(bdm),
        ]
        means: dict[str, list[float]] = defaultdict(list)
        for clip in clips:
            cells = []
            for m in bdm:
                r = table.get(m, {}).get(clip, {}).get(anchor)
                cells.append(_fmt_bd(r, notes))
                if r is not None and r.value is not None:
                    means[m].append(r.value)
            L.append(f"| {clip} | " + " | ".join(cells) + " |")
        L.append(
            "| **mean (clips with overlap)** | "
            + " | ".join(
                f"{sum(means[m]) / len(means[m]):+.1f} % ({len(means[m])}/{len(clips)})" if means[m] else "–"
                for m in bdm
            )
            + " |"
        )
        L.append("")
    if notes:
        L += ["Not computable:"] + [f"[{i}] {reason}" for reason, i in notes.items()] + [""]
    shown = [m for m in metrics if m != "psnr_rgb"]
    L += [
        "**At matched bpp**: each keyframe-mode point (K = frame scales) beside plain mode at the same bpp "
        "(plain interpolated linearly in log bpp between its neighbouring K; '–' outside plain's range). "
        f"Cells: keyframe / {' / '.join(plains)}; better/worse counts compare with the best plain curve at "
        "that bpp; tfd as defined under Setup (lower is better; 'source motion' = the tfd of a decode frozen "
        "on frame 0).",
        "",
    ]
    short = ["plain" if lab == PLAIN else "plain " + lab[len(PLAIN) + 2 : -1] for lab in plains]
    head = " | ".join(f"{METRIC_SHORT.get(m, m)} kf / {' / '.join(short)}" for m in shown)
    wins: dict[str, list[int]] = {m: [0, 0] for m in shown}
    motion = {c["clip"]: c.get("source_motion") for c in facts}
    for clip in clips:
        sm = motion.get(clip)
        L += [
            f"*{clip}*" + (f" (source motion {sm:.2f})" if sm is not None else ""),
            "",
            f"| K | bpp | {head} |",
            "|---|---|" + "---|" * len(shown),
        ]
        for p in curves[clip][KEYFRAME]:
            cells = []
            for m in shown:
                kv = p["metrics"].get(m)
                pvs = [plain_at_bpp(curves[clip].get(lab, []), p["bpp"], m) for lab in plains]
                cells.append(" / ".join([_fmt(kv, m)] + [_fmt(pv, m) for pv in pvs]))
                known = [pv for pv in pvs if pv is not None and not math.isnan(pv)]
                if kv is None or math.isnan(kv) or not known:
                    continue
                best = min(known) if m in LOWER_IS_BETTER else max(known)
                if kv != best:
                    better = kv < best if m in LOWER_IS_BETTER else kv > best
                    wins[m][0 if better else 1] += 1
            L.append(f"| {p['param']} | {p['bpp']:.4f} | " + " | ".join(cells) + " |")
        L.append("")
    L += [
        "Matched points where keyframe mode is better / worse than the best plain curve: "
        + "; ".join(f"{METRIC_SHORT.get(m, m)} {w[0]} / {w[1]}" for m, w in wins.items())
        + ".",
        "",
    ]
    return L


def ladder_fidelity(points: list[dict], wanted: float | None = None) -> float | None:
    """The fidelity whose layer ladder the summary tables: `wanted` when swept, else the swept one nearest
    the default fidelity (60); None without a fidelity sweep."""
    fids = sorted({p["fidelity"] for p in points if p.get("param_name") == "fidelity" and "fidelity" in p})
    if not fids:
        return None
    if wanted is not None and wanted in fids:
        return wanted
    from pipeline.encoder_options import DEFAULT_FIDELITY

    return min(fids, key=lambda f: (abs(f - DEFAULT_FIDELITY), -f))


def _ladder_markdown(points: list[dict], wanted: float | None = None) -> list[str]:
    """'Layer ladder': per clip, bpp and PSNR-Y of ONE stream (fidelity `ladder_fidelity`) decoded from its first
    K layers, K = 1..N (the later layers predicted as the run's --predict says)."""
    fid = ladder_fidelity(points, wanted)
    if fid is None:
        return []
    rows = [p for p in points if p["codec"] == "progvc" and p.get("param_name") == "fidelity"
            and p.get("fidelity") == fid]
    clips = sorted({p["clip"] for p in rows})
    by = {(p["clip"], p["K"]): p for p in rows}
    ks = sorted({p["K"] for p in rows})
    effort = rows[0].get("effort", "") if rows else ""
    L = [
        f"## Layer ladder at fidelity {fid:g} (effort {effort})",
        "",
        f"One stream per clip (fidelity {fid:g}), decoded from its first K layers: what a re-serve at K layers "
        "reads and shows. Cells: bpp / PSNR-Y (dB).",
        "",
        "| K | " + " | ".join(clips) + " |",
        "|---|" + "---|" * len(clips),
    ]
    for k in ks:
        cells = []
        for c in clips:
            p = by.get((c, k))
            cells.append("–" if p is None else f"{p['bpp']:.4f} / {_fmt(p['metrics'].get('psnr_y'), 'psnr_y')}")
        L.append(f"| {k} | " + " | ".join(cells) + " |")
    return L + [""]


def write_summary(path: Path, points: list[dict], clips: list[dict], meta: dict, metrics: list[str]) -> None:
    curves = _curves(points)
    anchors = sorted({curve_label(p) for p in points if p["codec"] != "progvc"})
    has_progvc = any(curve_label(p) == PLAIN for p in points)
    has_keyframe = any(curve_label(p) == KEYFRAME for p in points)
    bdm = bd_metrics(metrics)
    L: list[str] = ["# ProGVC rate–distortion evaluation", ""]
    if meta.get("regenerate"):
        L += [f"Regenerate with: `{meta['regenerate']}`", ""]
    L += [
        f"Command: `{meta.get('command', '')}`  ",
        f"Generated {meta.get('generated', '')} on {meta.get('host', '')}; wall time "
        f"{meta.get('wall_s', 0):.0f} s ({meta.get('computed_points', 0)} points computed, "
        f"{meta.get('cached_points', 0)} from the cache).",
        "",
        "## Setup",
        "",
        f"- Clips: first {meta.get('frames')} frames of each; GOP / keyframe interval {meta.get('gop')} frames for "
        "every codec (x264/x265: `keyint=min-keyint`, no scene cut, closed GOP; SVT-AV1: `gop_size`).",
        f"- ProGVC: {meta.get('progvc', 'not evaluated')}",
        f"- ProGVC modes: {', '.join(meta.get('modes', ['plain']))} (curves 'ProGVC' = plain, 'ProGVC keyframe' = "
        "keyframe mode, see 'Keyframe mode vs plain').",
        f"- References: {meta.get('references', '')}",
        f"- {BITS_DEFINITION}",
        "- Metrics on RGB frames, mean of per-frame values: PSNR-Y = BT.601 luma in full 8-bit range "
        "(peak 255, no 16–235 scaling); PSNR-RGB over all three channels; MS-SSIM (pytorch-msssim, RGB, "
        "5 scales; QCIF uses a 9-tap window because 11 taps need > 160 px); VMAF = libvmaf v0.6.1 model "
        "in imageio-ffmpeg's FFmpeg (frames converted to BT.601 limited-range yuv420p). PSNR capped at 100 dB.",
        f"- {TFD_DEFINITION}",
        "- Reference codecs get the RGB frames converted to yuv420p (BT.601, limited range) and are "
        "measured after converting back; the round trip alone costs what the per-clip 'yuv420 ceiling' says. "
        "Odd sizes would be padded (edge pixels) to even and cropped back; bpp always uses the original size.",
        "- BD-rate: Bjøntegaard delta rate with PCHIP interpolation of log10(bpp) over quality (JVET/`bd-metric` "
        "method), only over the quality range both curves cover, on each curve's Pareto front. Negative = "
        "the ProGVC curve needs fewer bits than that codec for the same quality.",
        "",
    ]
    if meta.get("notes"):
        L += ["Notes:", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    L += ["## BD-rate of ProGVC vs each reference codec", ""]
    if has_progvc and anchors:
        L += _bd_markdown(bd_table(points, PLAIN, metrics), bdm, anchors)
    elif not anchors:
        L += ["No reference codec in this run.", ""]
    else:
        L += ["ProGVC points are missing from this run (see notes above), so there is no ProGVC BD-rate.", ""]
    L += _ladder_markdown(points, meta.get("ladder_fidelity"))
    extra_plains = sorted({curve_label(p) for p in points if is_plain(curve_label(p))} - {PLAIN})
    for lab in extra_plains + ([KEYFRAME] if has_keyframe else []):
        if anchors:
            L += [f"## BD-rate of '{lab}' vs each reference codec", ""]
            L += _bd_markdown(bd_table(points, lab, metrics), bdm, anchors)
    if has_keyframe:
        L += _keyframe_markdown(points, metrics, clips)
    base = "x264 medium"
    if base in anchors:
        others = [a for a in anchors if a != base]
        L += [f"## Sanity check: reference codecs vs {base} (BD-rate of the column codec)", ""]
        table: dict = {m: {} for m in bdm}
        for a in others:
            t = bd_table([p for p in points if curve_label(p) in (base, a)], a, metrics)
            for m in bdm:
                for clip, row in t[m].items():
                    table[m].setdefault(clip, {})[a] = row.get(base)
        L += _bd_markdown(table, bdm, others)
    L += [
        "## Swept ranges (bpp, CRF) per reference codec, over all clips",
        "",
        "| codec | points | bpp min | bpp max | param range |",
        "|---|---|---|---|---|",
    ]
    by_lab: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        if not is_ladder(p):
            by_lab[curve_label(p)].append(p)
    for lab in sorted(by_lab, key=_label_order):
        ps = by_lab[lab]
        params = [p["param"] for p in ps]
        L.append(
            f"| {lab} | {len(ps)} | {min(p['bpp'] for p in ps):.4f} | {max(p['bpp'] for p in ps):.4f} | "
            f"{ps[0]['param_name']} {min(params)}–{max(params)} |"
        )
    L += ["", "## Per clip", ""]
    facts = {c["clip"]: c for c in clips}
    heads = " | ".join(METRIC_SHORT.get(m, m) for m in metrics)
    for clip in sorted(curves):
        f = facts.get(clip, {})
        ceil = f.get("yuv420_roundtrip", {})
        L += [
            f"### {clip}",
            "",
            f"{f.get('width')}×{f.get('height')}, {f.get('frames')} of {f.get('source_frames')} frames, fps "
            f"{f.get('fps')}; yuv420 ceiling: PSNR-Y {ceil.get('psnr_y', float('nan')):.2f} dB, PSNR-RGB "
            f"{ceil.get('psnr_rgb', float('nan')):.2f} dB; source motion (tfd of a frozen decode) "
            f"{f.get('source_motion') or float('nan'):.2f}; sweep target bpp "
            f"{'–'.join(f'{x:.4f}' for x in f.get('sweep_bpp_target', []))}; evaluation wall time (s, "
            f"cache hits are free): {', '.join(f'{k} {v:.0f}' for k, v in f.get('wall_s', {}).items())}",
            "",
            f"| codec | param | bpp | {heads} | enc s | dec s |",
            "|---|---|---|" + "---|" * len(metrics) + "---|---|",
        ]
        for lab in sorted(curves[clip], key=_label_order):
            for p in curves[clip][lab]:
                vals = " | ".join(_fmt(p["metrics"].get(m), m) for m in metrics)
                L.append(
                    f"| {lab} | {p['param_name']}={p['param']} | {p['bpp']:.4f} | {vals} | "
                    f"{p['encode_s']:.2f} | {p['decode_s']:.2f} |"
                )
        pv = [p for p in curves[clip].get(PLAIN, []) if p.get("ce_bits")]
        if pv:
            top = max(pv, key=lambda p: p["param"])
            L += [
                "",
                f"ProGVC entropy efficiency at {top['param_name']}={top['param']}: coded bits ÷ the encoder's "
                f"estimate (model cross-entropy) = {top['bits'] / top['ce_bits']:.4f} (chunk headers included).",
            ]

        L.append("")
    L += ["RD plots: " + ", ".join(f"[rd_{m}.png](rd_{m}.png)" for m in metrics), ""]
    path.write_text("\n".join(L))
