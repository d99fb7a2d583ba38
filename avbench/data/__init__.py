"""Data layer: benchmark files, the public layout importer, the synthetic benchmark."""

from avbench.data.benchmark import SPLITS, STORED_SPLITS, TEST_SPLITS, Benchmark, Split
from avbench.data.registry import avbench_home, canonical_name, dataset_path, list_benchmarks, load_benchmark

__all__ = [
    "SPLITS",
    "STORED_SPLITS",
    "TEST_SPLITS",
    "Benchmark",
    "Split",
    "avbench_home",
    "canonical_name",
    "dataset_path",
    "list_benchmarks",
    "load_benchmark",
]
