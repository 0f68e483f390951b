"""The probes' statistics on features run with one BLAS thread.

LogME's eigendecomposition, the cross-validated k-NN, the linear probes and the orientation
classifiers work on small matrices (hundreds of rows): OpenBLAS' second thread mostly waits
(it spins) and, on a machine with two cores, competes with the work itself, with TensorFlow's
threads and with anything else running. Measured on the probe's eurosat_rgb_3k sample
(mobilenet_v2 features), OpenBLAS' default 2 threads against one, alternating: both cores at
nice -10 beside development work, the linear probe 3.9-6.1 s against 0.13-0.15 s, the
orientation classifiers 3.1-6.1 s against 0.2 s, LogME 0.23-0.27 s against 0.07-0.11 s; at a
load of 8, 10.5-11.8 s against 0.34 s for the linear probe.

The figures are the same: the k-NN, linear-probe and orientation accuracies bitwise; LogME's
last digits (about 1e-14) depend on BLAS' thread count, so it already differed between a
one-core and a two-core machine; with one thread it is on every machine the value a one-core machine
gives (0.2790046423405772 for that sample on this machine, one core or two).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_blas_thread(user_api: str | None = "blas") -> Iterator[None]:
    """Inside the block, BLAS (OpenBLAS, MKL, …) uses one thread; restored after it.
    ``user_api=None`` limits OpenMP too (its limit is per thread: enter the block in each
    worker thread)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api=user_api):
        yield
