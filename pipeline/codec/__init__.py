"""The VQ codec family ("vq"): multi-scale residual tokenizer, context model, entropy coding.

Exports are lazy (PEP 562), so `import pipeline.codec.<torch-free module>` (config, container, cli) does
not load torch; `from pipeline.codec import Codec` does. The `.pgv` byte format is `pipeline.pgv`, the
stream-level API `pipeline.stream`, model lookup `pipeline.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Codec", "CodecConfig", "EncodedGop"]

if TYPE_CHECKING:
    from pipeline.codec.codec import Codec
    from pipeline.codec.config import CodecConfig
    from pipeline.codec_api import EncodedGop


def __getattr__(name: str):
    if name == "Codec":
        from pipeline.codec.codec import Codec

        return Codec
    if name == "CodecConfig":
        from pipeline.codec.config import CodecConfig

        return CodecConfig
    if name == "EncodedGop":
        from pipeline.codec_api import EncodedGop

        return EncodedGop
    raise AttributeError(f"module 'pipeline.codec' has no attribute {name!r}")
