"""mmu-bench: an evaluation-first benchmark suite for unlearning in multimodal LLMs."""

__version__ = "0.1.0"
