"""mmu-bench: an evaluation-first benchmark suite for unlearning in multimodal LLMs."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402,F401  (re-exported for plugin authors)
