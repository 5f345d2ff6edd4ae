"""Readers of the on-disk formats users bring: CIFAR's python pickles (through the data-only `safe_pickle`),
MNIST's idx-ubyte, MXNet RecordIO (without mxnet) and insightface's ``.bin`` verification benchmarks.

They turn files into arrays and refuse a bad file in one line naming it; they know nothing of datasets,
options or the registry (the families in `samrepro.data.families` build on them).
"""
