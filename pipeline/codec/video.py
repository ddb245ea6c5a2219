"""Old import path of the whole-video helpers: they are family-independent and live in `pipeline.stream`."""

from pipeline.stream import (  # noqa: F401
    EncodeStats,
    check_mode,
    decode_video,
    encode_video,
    fixed_gops,
    iter_decoded,
    plan,
)
