"""avbench: a benchmark platform for audio-visual generalised zero-shot learning."""

__version__ = "0.1.0"
