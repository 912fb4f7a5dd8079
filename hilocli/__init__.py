"""hilo: look inside HiLo attention (LITv2)."""

__version__ = "0.1.0"
