"""Model registry: which codec decodes a stream, looked up by the model id its header records.

Archives must decode forever, across retrains and codec families, so a decoder never assumes "the"
model: it opens the one the stream names. Where a model id is found, in this order:

1. builtin ids registered in code (`register_builtin`): an exact id (a family that needs no weights
   file, e.g. "latent-v1") or a prefix ending in ":" (`random:tiny:<seed>`, tiny random VQ models for
   tests and demos);
2. in each models folder — `$PROGVC_MODELS_DIR` first when set, then the shipped `models/` — the
   folder's `index.json` (`{"<id>": {"family": "vq", "file": "progvc.pt", "note": "..."}}`), then a file
   `<id>.pt` (family "vq" unless the index says otherwise).

A loaded model whose id differs from the one asked for is refused (a misnamed file). `open_codec`
accepts a *model spec*: a model id, a `random:` spec, or a weights file path (an explicit file wins:
`--weights PATH`). Loaded codecs are cached per process (and device). `default_codec()` is the model
new streams are encoded with: `DEFAULT_MODEL_ID`, one line to change when a new model ships.

A family whose encoder takes per-encode settings (`--fidelity`, `--effort`: `pipeline.encoder_options`)
registers an encoder hook (`register_encoder`): how a loaded model becomes the encoder for those settings,
and what settings an encoder was made with (recorded in the stream header). Stream-level code reaches it
through `pipeline.stream.encoder_for`/`encoder_settings`, never through the family's own classes.

Torch-free at import; a family's code is imported when one of its models is opened.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.codec_api import CodecFamily
from pipeline.errors import ProGVCError
from pipeline.settings import REPO_ROOT

DEFAULT_MODEL_ID = "latent-v1"  # the model new streams are encoded with (latent family, pipeline/latent)
VQ_MODEL_ID = "93d29d4227e6bce7"  # the shipped VQ model, models/progvc.pt (the default before latent-v1)
MODELS_DIR_ENV = "PROGVC_MODELS_DIR"
SHIPPED_MODELS_DIR = REPO_ROOT / "models"
INDEX_FILE = "index.json"
FAMILY_MODULES = ("pipeline.latent",)  # imported before a lookup, so that their families register themselves

Factory = Callable[[str, str], CodecFamily]  # (model id or spec, device) -> codec
Loader = Callable[[Path, str], CodecFamily]  # (weights file, device) -> codec
Configure = Callable[[CodecFamily, "float | None", "str | None"], CodecFamily]  # (model, fidelity, effort) -> encoder
Describe = Callable[[CodecFamily], "dict | None"]  # encoder -> its settings for the stream header


@dataclass(frozen=True)
class ModelEntry:
    """One model the registry knows (`list_models`): `file` None for builtins; `installed` False when the
    index names a file that is not there."""

    model_id: str
    family: str
    file: str | None
    default: bool
    note: str = ""
    installed: bool = True


@dataclass(frozen=True)
class _Builtin:
    family: str
    factory: Factory
    note: str


@dataclass(frozen=True)
class EncoderHook:
    """How a family's encoder takes `--fidelity`/`--effort` (`register_encoder`)."""

    configure: Configure
    describe: Describe


_builtins: dict[str, _Builtin] = {}  # exact ids and prefixes (keys ending in ":")
_loaders: dict[str, Loader] = {}
_encoders: dict[str, EncoderHook] = {}
_modes: dict[str, tuple[str, ...]] = {}  # families that code only some modes (default: every mode)
_cache: dict[tuple[str, str], CodecFamily] = {}
_lock = threading.RLock()
_families_imported = False


def register_builtin(model_id_or_prefix: str, factory: Factory, family: str, note: str = "") -> None:
    """Make `model_id_or_prefix` resolvable without a weights file: an exact model id, or a prefix when it
    ends in ":" (then every spec starting with it goes to `factory(spec, device)`). An exact id's codec
    must report that `model_id`."""
    _builtins[model_id_or_prefix] = _Builtin(family, factory, note)


def register_family(family: str, loader: Loader) -> None:
    """How weights files of `family` are loaded: `loader(path, device) -> codec`."""
    _loaders[family] = loader


def register_encoder(family: str, configure: Configure, describe: Describe) -> None:
    """Make `--fidelity`/`--effort` apply to `family`: `configure(model, fidelity, effort)` returns the encoder
    for those settings (None = the family's default for that one), `describe(encoder)` the settings it
    encodes with, as the stream header records them (`{"fidelity": 60, "effort": "medium"}`)."""
    _encoders[family] = EncoderHook(configure, describe)


def encoder_hook(family: str) -> EncoderHook | None:
    """The family's encoder hook, or None when its encoder takes no per-encode settings (the VQ family)."""
    _import_families()
    return _encoders.get(family)


def encoder_families() -> list[str]:
    """Families whose encoders take `--fidelity`/`--effort`."""
    _import_families()
    return sorted(_encoders)


def register_modes(family: str, modes: tuple[str, ...]) -> None:
    """The coding modes (`pipeline.pgv.MODES`) `family` can encode, when not all of them."""
    _modes[family] = tuple(modes)


def check_mode_supported(spec: str | os.PathLike | None, mode: str, family: str | None = None) -> None:
    """ProGVCError (one line) when the model `spec` (None = the default), or `family` when given, cannot encode
    in `mode` (e.g. keyframe mode in the latent family). A family that cannot be told here passes."""
    _import_families()
    family = family or family_of(spec)
    allowed = _modes.get(family or "")
    if allowed is not None and mode not in allowed:
        what = f"model {spec}" if spec is not None else f"the default model {DEFAULT_MODEL_ID}"
        raise ProGVCError(f"--mode {mode}: {what} (family {family}) codes only {', '.join(allowed)} mode; for "
                          f"{mode} mode use a VQ model (--weights models/progvc.pt)")


def family_of(spec: str | os.PathLike | None) -> str | None:
    """The family of a model spec (None = the default model) without loading it: a builtin's, an installed
    id's (index or `<id>.pt`), a weights file's; None when it cannot be told here (a missing file or id,
    e.g. one that exists only on a Ray cluster's nodes)."""
    spec = str(spec) if spec is not None else DEFAULT_MODEL_ID
    if _is_path(spec):
        return _family_of_file(Path(spec)) if Path(spec).is_file() else None
    b = _builtin_for(spec)
    if b is not None:
        return b.family
    try:
        found = _find(spec)
    except ProGVCError:
        return None
    return found[1] if found else None


def check_encoder_options(spec: str | os.PathLike | None, fidelity: float | None, effort: str | None,
                          family: str | None = None) -> None:
    """ProGVCError (one line) unless `fidelity`/`effort` (None = not asked for) are valid and apply to the
    model `spec` (None = the default model) or to `family` when given. A model whose family cannot be told
    here (`family_of` None) is checked for the values only."""
    from pipeline import encoder_options

    encoder_options.check(fidelity, effort)
    if fidelity is None and effort is None:
        return
    family = family or family_of(spec)
    if family is not None and encoder_hook(family) is None:
        fams = " and ".join(f"the {f} family" for f in encoder_families()) or "no family of this build"
        what = f"model {spec}" if spec is not None else f"the default model {DEFAULT_MODEL_ID}"
        raise ProGVCError(f"{encoder_options.FLAGS} apply to {fams}; {what} is family {family} (leave them out)")


def models_dirs() -> list[Path]:
    """Folders searched for weights, in order: `$PROGVC_MODELS_DIR` (when set), then the shipped `models/`."""
    dirs = []
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(SHIPPED_MODELS_DIR)
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def read_index(folder: Path) -> dict[str, dict]:
    """`folder/index.json` as {model id: {"family", "file", "note"}} ({} when absent)."""
    p = folder / INDEX_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("expected an object of objects")
    except ValueError as exc:
        raise ProGVCError(f"{p}: not a valid model index ({exc}); fix or remove it") from exc
    return data


def _import_families() -> None:
    global _families_imported
    if _families_imported:
        return
    _families_imported = True
    for name in FAMILY_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def _builtin_for(spec: str) -> _Builtin | None:
    _import_families()
    if spec in _builtins and not spec.endswith(":"):
        return _builtins[spec]
    for key, b in _builtins.items():
        if key.endswith(":") and spec.startswith(key):
            return b
    return None


def _is_path(spec: str) -> bool:
    return os.sep in spec or spec.endswith(".pt") or Path(spec).is_file()


def _family_of_file(path: Path) -> str:
    for d in models_dirs():
        for entry in read_index(d).values():
            if entry.get("file") and (d / entry["file"]).resolve() == path.resolve():
                return str(entry.get("family", "vq"))
    return "vq"


def _find(model_id: str) -> tuple[Path, str] | None:
    """(weights file, family) of an installed model id, or None."""
    for d in models_dirs():
        entry = read_index(d).get(model_id)
        if entry is not None:
            f = entry.get("file")
            if not f:
                raise ProGVCError(f"{d / INDEX_FILE}: model {model_id} has no \"file\"; add one or register the "
                                  f"family's builtin id")
            if not (d / f).is_file():
                raise ProGVCError(f"model {model_id}: {d / INDEX_FILE} names {d / f}, which is missing; put the "
                                  f"weights file there")
            return d / f, str(entry.get("family", "vq"))
        p = d / f"{model_id}.pt"
        if p.is_file():
            return p, "vq"
    return None


def missing_model_error(model_id: str) -> ProGVCError:
    where = models_dirs()[0] / f"{model_id}.pt"
    return ProGVCError(
        f"model {model_id} is not installed: put its weights file at {where} (or in the folder "
        f"{MODELS_DIR_ENV} names), or pass --weights PATH; `progvc models` lists the installed models"
    )


def _load_file(path: Path, family: str, device: str) -> CodecFamily:
    if family not in _loaders:
        _import_families()
    if family not in _loaders:
        raise ProGVCError(f"{path}: codec family {family!r} is unknown to this build (known: "
                          f"{', '.join(sorted(_loaders))}); upgrade progvc")
    return _loaders[family](path, device)


def open_codec(spec: str | os.PathLike | None = None, device: str = "cpu") -> CodecFamily:
    """The codec for a model spec (model id, `random:` spec or weights file; None = `DEFAULT_MODEL_ID`),
    loaded once per process and device. ProGVCError naming the id and where its file goes when it is not
    installed."""
    spec = str(spec) if spec is not None else DEFAULT_MODEL_ID
    with _lock:
        hit = _cache.get((spec, device))
        if hit is not None:
            return hit
        if _is_path(spec):
            path = Path(spec)
            if not path.is_file():
                raise ProGVCError(f"{spec}: weights file not found; pass --weights PATH or a model id "
                                  f"(`progvc models` lists them)")
            codec = _load_file(path, _family_of_file(path), device)
        elif (b := _builtin_for(spec)) is not None:
            codec = b.factory(spec, device)
            if spec in _builtins and codec.model_id != spec:
                raise ProGVCError(f"builtin model {spec} reports model id {codec.model_id}; its factory is wrong")
        else:
            found = _find(spec)
            if found is None:
                raise missing_model_error(spec)
            codec = _load_file(found[0], found[1], device)
            if codec.model_id != spec:
                raise ProGVCError(f"{found[0]} holds model {codec.model_id}, not {spec}: the file is misnamed or "
                                  f"its index entry is wrong; rename it to {codec.model_id}.pt")
        _cache[(spec, device)] = codec
        _cache.setdefault((codec.model_id, device), codec)
        return codec


def clear_cache() -> None:
    """Forget the loaded codecs (the next `open_codec` loads again, e.g. after files changed)."""
    with _lock:
        _cache.clear()


def default_codec(device: str = "cpu") -> CodecFamily:
    """The model new streams are encoded with (`DEFAULT_MODEL_ID`)."""
    return open_codec(DEFAULT_MODEL_ID, device)


def list_models() -> list[ModelEntry]:
    """Every model the registry can open: builtins, then each models folder's index and `<id>.pt` files."""
    _import_families()
    out: list[ModelEntry] = []
    seen: set[str] = set()
    for key, b in _builtins.items():
        mid = key + "<seed>" if key.endswith(":") else key
        out.append(ModelEntry(mid, b.family, None, key == DEFAULT_MODEL_ID, b.note))
        seen.add(key)
    for d in models_dirs():
        index = read_index(d)
        indexed = set()
        for mid, e in index.items():
            f = e.get("file")
            indexed.add(f)
            if mid in seen:
                continue
            seen.add(mid)
            out.append(ModelEntry(mid, str(e.get("family", "vq")), str(d / f) if f else None, mid == DEFAULT_MODEL_ID,
                                  str(e.get("note", "")), bool(f) and (d / f).is_file()))
        for p in sorted(d.glob("*.pt")) if d.is_dir() else []:
            if p.name in indexed or p.stem in seen:
                continue
            seen.add(p.stem)
            out.append(ModelEntry(p.stem, "vq", str(p), p.stem == DEFAULT_MODEL_ID))
    return out


# ---- the VQ family (pipeline.codec) -----------------------------------------------------------------


def _load_vq(path: Path, device: str) -> CodecFamily:
    from pipeline.codec.codec import Codec

    return Codec.load(path, device=device)


def _random_vq(spec: str, device: str) -> CodecFamily:
    """`random:tiny:<seed>`: a tiny randomly initialised VQ model (tests, demos; always on the CPU)."""
    parts = spec.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ProGVCError(f"model spec {spec!r}: use 'random:tiny:<seed>', a model id or a weights path")
    from pipeline.codec.codec import Codec
    from pipeline.codec.config import CodecConfig

    return Codec.random(CodecConfig.tiny(), seed=int(parts[2]))


register_family("vq", _load_vq)
register_builtin("random:tiny:", _random_vq, "vq", "tiny random VQ model (tests, demos)")
