"""Bitstream fuzzing (hypothesis) of `.pgv` streams and archive layer objects, tiny random codec.

Every damaged input must end in success (only where the damage leaves a valid stream, e.g. a cut at a layer
end) or in the library's own error (`ProGVCError`) with a message that says where — never another
exception, a hang (hypothesis deadline per example + pytest-timeout per test) or a memory blow-up (peak
RSS growth checked per test).

Bounded for CI (~2 minutes for the module); `scripts/fuzz_long.sh` sets PROGVC_FUZZ_EXAMPLES for a
longer, randomised run. Iterations are recorded with tests/corpus.record("fuzz", ...).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import struct
import zlib
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.codec import Codec, CodecConfig
from pipeline.codec.container import CHUNK_HEADER_BYTES, GopEntry, StreamHeader, read_pgv, split_layer
from pipeline.codec.video import iter_decoded
from pipeline.errors import ModelMismatchError, ProGVCError, StreamError
from tests.corpus import record
from tests.fixtures_codec import moving_clip

EXAMPLES = int(os.environ.get("PROGVC_FUZZ_EXAMPLES", "0")) or None  # None: the CI defaults below
LONG = EXAMPLES is not None
RSS_GROWTH_MB = 256  # peak RSS may grow at most this much over one fuzz test


def fuzz_settings(ci_examples: int):
    return settings(max_examples=EXAMPLES or ci_examples, deadline=timedelta(seconds=20), database=None,
                    derandomize=not LONG, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclasses.dataclass
class Sample:
    codec: Codec
    header: StreamHeader
    header_bytes: bytes
    gop_chunks: list[list[bytes]]  # [g][k]
    data: bytes  # the whole .pgv
    frames: np.ndarray  # its decoded frames (all scales)
    layer_ends: list[int]  # byte offsets where a layer ends (valid cut points), header end first
    chunk_offsets: list[int]  # offset of every chunk header in `data`


@pytest.fixture(scope="module")
def sample() -> Sample:
    codec = Codec.random(CodecConfig.tiny(), seed=0)
    frames = moving_clip(6, 32, 48, seed=7)
    gops = [GopEntry(0, 4, True), GopEntry(4, 2, True)]
    chunks = [codec.encode_gop(frames[g.first_frame : g.first_frame + g.frame_count], gop_index=i).chunks
              for i, g in enumerate(gops)]
    header = StreamHeader(codec.model_id, 48, 32, 25, 1, 6, tuple(codec.cfg.scales), codec.cfg.tile, gops)
    hb = header.to_bytes()
    data, ends, offs = bytearray(hb), [len(hb)], []
    for k in range(codec.cfg.n_scales):
        for c in chunks:
            offs.append(len(data))
            data += c[k]
        ends.append(len(data))
    frames_out = np.stack(list(iter_decoded(read_pgv(bytes(data)), codec)))
    return Sample(codec, header, hb, chunks, bytes(data), frames_out, ends, offs)


class Counter:
    """Counts examples and outcomes of one fuzz target; checks the RSS bound at the end."""

    def __init__(self, target: str):
        self.target, self.n, self.ok, self.errors = target, 0, 0, {}
        self.rss0 = _maxrss_mb()

    def run(self, fn, data, valid: bool | None = None):
        """Run fn(data); a ProGVCError must name where; success is allowed unless `valid` is False."""
        self.n += 1
        try:
            fn(data)
        except ProGVCError as e:
            msg = str(e)
            assert len(msg) > 20 and any(w in msg for w in ("stream", "GOP", "layer", "model", "header", ".bin")), msg
            self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
            assert valid is not True, f"a valid stream was refused: {msg}"
            return False
        self.ok += 1
        assert valid is not False, "damaged stream decoded without an error"
        return True

    def finish(self):
        growth = _maxrss_mb() - self.rss0
        record("fuzz", {"target": self.target, "examples": self.n, "decoded_ok": self.ok, "errors": self.errors,
                        "crashes": 0, "peak_rss_growth_mb": round(growth, 1)})
        assert growth < RSS_GROWTH_MB, f"{self.target}: peak RSS grew {growth:.0f} MB"


def decode_frames(codec: Codec, data: bytes) -> np.ndarray:
    return np.stack(list(iter_decoded(read_pgv(data), codec, source="fuzz.pgv")))


def decode_all(codec: Codec, data: bytes, scales: int | None = None) -> int:
    """Parse and decode every frame of a `.pgv` held in memory; returns the frame count."""
    stream = read_pgv(data, scales=scales)
    return sum(1 for _ in iter_decoded(stream, codec, scales=scales, source="fuzz.pgv"))


def test_pristine_sample_decodes_and_every_layer_cut_is_valid(sample):
    assert decode_all(sample.codec, sample.data) == 6
    for k, end in enumerate(sample.layer_ends[1:], start=1):
        stream = read_pgv(sample.data[:end])
        assert stream.n_layers == k
        assert sum(1 for _ in iter_decoded(stream, sample.codec)) == 6


@pytest.mark.timeout(900)
def test_fuzz_bit_flips(sample):
    """Any flip is detected, in a chunk's GOP tag too (format 2)."""
    c = Counter("pgv bit flips")

    @fuzz_settings(60)
    @given(st.lists(st.integers(0, 8 * len(sample.data) - 1), min_size=1, max_size=8, unique=True))
    def check(bits):
        d = bytearray(sample.data)
        for b in bits:
            d[b // 8] ^= 1 << (b % 8)
        c.run(lambda x: np.testing.assert_array_equal(decode_frames(sample.codec, x), sample.frames), bytes(d),
              valid=False)

    check()
    c.finish()


@pytest.mark.timeout(900)
def test_fuzz_entropy_payload_with_fixed_crc(sample):
    """Hostile payloads: bits flipped inside a chunk's range-coded payload *and* its payload CRC recomputed,
    so the garbage reaches the entropy decoder. It must fail with StreamError (token checksum / decoding
    failed) or, if the flip changes no decoded token, give exactly the original frames."""
    c = Counter("entropy payload, CRC fixed up")
    n_chunks = len(sample.chunk_offsets)

    @fuzz_settings(20)
    @given(st.integers(0, n_chunks - 1), st.data())
    def check(i, data):
        off = sample.chunk_offsets[i]
        n = struct.unpack_from("<I", sample.data, off + 4)[0]
        bits = data.draw(st.lists(st.integers(0, 8 * n - 1), min_size=1, max_size=6, unique=True))
        d = bytearray(sample.data)
        p0 = off + CHUNK_HEADER_BYTES
        for b in bits:
            d[p0 + b // 8] ^= 1 << (b % 8)
        struct.pack_into("<I", d, off + 20, zlib.crc32(bytes(d[p0 : p0 + n])))
        c.run(lambda x: np.testing.assert_array_equal(decode_frames(sample.codec, x), sample.frames), bytes(d))

    check()
    c.finish()


@pytest.mark.timeout(900)
def test_fuzz_truncation(sample):
    c = Counter("pgv truncation")

    @fuzz_settings(40)
    @given(st.integers(0, len(sample.data) - 1))
    def check(n):
        ok = c.run(lambda x: decode_all(sample.codec, x), sample.data[:n], valid=n in sample.layer_ends[1:] or None)
        assert ok == (n in sample.layer_ends[1:])  # a cut inside a layer or the header is always refused

    check()
    c.finish()


@pytest.mark.timeout(900)
def test_fuzz_length_fields_huge(sample):
    """Header body length, chunk payload length, token count and scale fields set to huge/odd values."""
    c = Counter("pgv length fields")
    fields = [(8, "<I")] + [(o + f, fmt) for o in sample.chunk_offsets for f, fmt in ((4, "<I"), (8, "<I"),
                                                                                       (12, "<H"))]
    values = st.one_of(st.sampled_from([0, 1, 2**15, 2**16 - 1, 2**30, 2**31 - 1, 2**32 - 1, len(sample.data)]),
                       st.integers(0, 2**32 - 1))

    @fuzz_settings(40)
    @given(st.sampled_from(fields), values)
    def check(field, value):
        off, fmt = field
        d = bytearray(sample.data)
        old = struct.unpack_from(fmt, d, off)[0]
        value = value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
        struct.pack_into(fmt, d, off, value)
        c.run(lambda x: decode_all(sample.codec, x), bytes(d), valid=True if value == old else False)

    check()
    c.finish()


@pytest.mark.timeout(900)
def test_fuzz_swapped_layers_and_gops(sample):
    """Layers in another order, or chunks of one layer moved to another GOP / scale position."""
    c = Counter("pgv swapped layers/chunks")
    n_k, n_g = sample.codec.cfg.n_scales, len(sample.gop_chunks)

    @fuzz_settings(40)
    @given(st.permutations(range(n_k)), st.permutations(range(n_g)), st.integers(1, n_k))
    def check(layer_order, gop_order, scales):
        body = b"".join(sample.gop_chunks[g][k] for k in layer_order[:scales] for g in gop_order)
        identity = list(layer_order[:scales]) == list(range(scales)) and list(gop_order) == list(range(n_g))
        # GOPs 0 and 1 differ in frame count, so a GOP swap is always detectable (token counts)
        c.run(lambda x: decode_all(sample.codec, x), sample.header_bytes + body, valid=identity)

    check()
    c.finish()


def _with_header(sample: Sample, **changes) -> bytes:
    """The sample with header fields replaced (and a valid header CRC, so only the semantics are wrong)."""
    body = json.loads(sample.header_bytes[12:-4])
    body.update(changes)
    raw = json.dumps(body, separators=(",", ":")).encode()
    hb = struct.pack("<4sII", b"PGV1", 1, len(raw)) + raw + struct.pack("<I", zlib.crc32(raw))
    return hb + sample.data[len(sample.header_bytes):]


@pytest.mark.timeout(900)
def test_fuzz_header_semantics(sample):
    """Header fields with a *valid* CRC but lying values (hostile streams): dimensions, counts, GOP table,
    fps, scale schedule, tile. Either refused with StreamError or decoded — never a crash, hang or huge
    allocation driven by the declared sizes."""
    c = Counter("pgv header semantics (valid CRC)")
    ints = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 7, 2**16, 2**31, 2**40, 10**18]), st.integers(-5, 5000))
    gop = st.lists(st.tuples(ints, ints, st.integers(0, 1)), min_size=0, max_size=4)
    field = st.one_of(
        st.fixed_dictionaries({"width": ints}), st.fixed_dictionaries({"height": ints}),
        st.fixed_dictionaries({"width": ints, "height": ints}), st.fixed_dictionaries({"frame_count": ints}),
        st.fixed_dictionaries({"fps": st.tuples(ints, ints)}), st.fixed_dictionaries({"tile": ints}),
        st.fixed_dictionaries({"scales": st.lists(ints, min_size=0, max_size=6)}),
        st.fixed_dictionaries({"gops": gop}),
    )

    @fuzz_settings(30)
    @given(field)
    def check(changes):
        c.run(lambda x: decode_all(sample.codec, x), _with_header(sample, **changes))
        c.run(lambda x: decode_all(sample.codec, x, scales=1), _with_header(sample, **changes))

    check()
    c.finish()


def test_wrong_model_id_is_refused_naming_both(sample):
    other = Codec.random(CodecConfig.tiny(), seed=1)
    with pytest.raises(ModelMismatchError) as e:
        decode_all(other, sample.data)
    assert sample.codec.model_id in str(e.value) and other.model_id in str(e.value)
    forged = _with_header(sample, model_id="0123456789abcdef")
    with pytest.raises(ModelMismatchError, match="0123456789abcdef"):
        decode_all(sample.codec, forged)


# ----------------------------------------------------------------------------- archive layer objects


@pytest.fixture(scope="module")
def archived(sample, tmp_path_factory):
    """The sample archived in a local store through ArchiveWriter (real commit protocol)."""
    from pipeline.archive import ArchiveWriter, GopData, SourceInfo
    from pipeline.store import open_store

    store = open_store(str(tmp_path_factory.mktemp("fuzz-archive")))
    enc = [sample.codec.encode_gop(moving_clip(6, 32, 48, seed=7)[g.first_frame : g.first_frame + g.frame_count])
           for g in sample.header.gops]
    gops = [GopData(g.first_frame, g.frame_count, True, e.chunks, e.token_counts, e.checksums)
            for g, e in zip(sample.header.gops, enc)]
    vid = "f" * 24
    ArchiveWriter(store, "fuzz-1").archive_video(vid, sample.header_bytes, gops,
                                                 SourceInfo("file:///fuzz.mp4", 1000, 48, 32, 25.0),
                                                 sample.codec.model_id)
    return store, vid


def _reserve_from_archive(store, vid, codec: Codec, scales: int) -> int:
    """What re-serving does: manifest -> ranged reads -> header -> decode every GOP."""
    from pipeline import manifest
    from pipeline.retrieval import fetch, plan_retrieval

    rows = manifest.read_manifest(store, video_ids=[vid])
    got = fetch(store, plan_retrieval(rows, vid, scales=scales))
    hdr = StreamHeader.from_bytes(got.header, store.url(f"videos/{vid}/header.bin"))
    hdr.check_model(codec.model_id)
    n = 0
    for (g, gop), chunks in zip(enumerate(hdr.gops), got.gop_chunks()):
        n += len(codec.decode_gop(chunks, gop.frame_count, hdr.width, hdr.height, gop_index=g, context=vid))
    return n


@pytest.mark.timeout(900)
def test_fuzz_archive_layer_objects(sample, archived):
    """Damage one stored object of an archived video (bit flips, truncation, another layer's bytes): the
    re-serve path (manifest -> ranged reads -> decode) and `split_layer` end in ProGVCError."""
    store, vid = archived
    c = Counter("archive layer objects")
    keys = ["header.bin"] + [f"layer-{k}.bin" for k in range(1, sample.codec.cfg.n_scales + 1)]
    pristine = {k: store.get(f"videos/{vid}/{k}") for k in keys}

    def reserved(layer: bytes) -> set[int]:
        out, off = set(), 0
        while off + CHUNK_HEADER_BYTES <= len(layer):
            out |= {off + 14, off + 15}
            off += CHUNK_HEADER_BYTES + struct.unpack_from("<I", layer, off + 4)[0]
        return out
    assert _reserve_from_archive(store, vid, sample.codec, sample.codec.cfg.n_scales) == 6

    @fuzz_settings(30)
    @given(st.sampled_from(keys), st.sampled_from(["flip", "truncate", "swap"]), st.data())
    def check(key, how, data):
        raw = pristine[key]
        if how == "flip":
            bits = data.draw(st.lists(st.integers(0, 8 * len(raw) - 1), min_size=1, max_size=4, unique=True))
            d = bytearray(raw)
            for b in bits:
                d[b // 8] ^= 1 << (b % 8)
            bad = bytes(d)
            if key != "header.bin" and all(b // 8 in reserved(raw) for b in bits):
                return  # a chunk's GOP tag: archive reads check chunks against manifest rows instead
        elif how == "truncate":
            bad = raw[: data.draw(st.integers(0, len(raw) - 1))]
        else:
            bad = pristine[data.draw(st.sampled_from([k for k in keys if k != key]))]
        store.put(f"videos/{vid}/{key}", bad)
        try:
            c.run(lambda _: _reserve_from_archive(store, vid, sample.codec, sample.codec.cfg.n_scales), None,
                  valid=False)
            if key.startswith("layer-"):
                k = int(key[6:-4])
                # split_layer only cuts chunks (token counts are checked when decoding): no other error type
                c.run(lambda x: split_layer(x, len(sample.header.gops), k, key), bad)
        finally:
            store.put(f"videos/{vid}/{key}", raw)

    check()
    c.finish()
    assert _reserve_from_archive(store, vid, sample.codec, 2) == 6


def test_equal_length_gops_swapped_are_refused(sample):
    """Chunks carry their GOP tag (format 2): two GOPs of the same frame count swapped inside a `.pgv` are
    refused, naming the GOP and scale, instead of decoding into frames in the wrong order. A format-1
    stream (tag 0 everywhere) still decodes."""
    codec = sample.codec
    frames = moving_clip(4, 32, 48, seed=9)
    a, b = codec.encode_gop(frames[:2], gop_index=0), codec.encode_gop(frames[2:], gop_index=1)
    hdr = dataclasses.replace(sample.header, frame_count=4, gops=[GopEntry(0, 2, True), GopEntry(2, 2, True)])
    ordered = hdr.to_bytes() + b"".join(x.chunks[k] for k in range(codec.cfg.n_scales) for x in (a, b))
    assert decode_all(codec, ordered) == 4
    swapped = hdr.to_bytes() + b"".join(x.chunks[k] for k in range(codec.cfg.n_scales) for x in (b, a))
    with pytest.raises(StreamError, match="GOP 0 scale 1: chunk belongs to GOP 1.*out of order"):
        read_pgv(swapped)
    v1 = dataclasses.replace(hdr, format_version=1)
    a0 = codec.encode_gop(frames[2:], gop_index=0)  # format 1 wrote tag 0 for every GOP
    legacy = v1.to_bytes() + b"".join(x.chunks[k] for k in range(codec.cfg.n_scales) for x in (a, a0))
    out = np.stack(list(iter_decoded(read_pgv(legacy), codec)))
    ref = np.stack(list(iter_decoded(read_pgv(ordered), codec)))
    assert np.array_equal(out, ref)
    with pytest.raises(StreamError):  # but a GOP of another frame count never decodes in its place
        decode_all(codec, sample.header_bytes + b"".join(
            sample.gop_chunks[g][k] for k in range(codec.cfg.n_scales) for g in (1, 0)))
