"""ProGVC neural video codec: multi-scale residual tokenizer, context model, entropy coding, `.pgv`."""

from pipeline.codec.codec import Codec, EncodedGop
from pipeline.codec.config import CodecConfig

__all__ = ["Codec", "CodecConfig", "EncodedGop"]
