"""``python -m fraud_kserve``: the KServe model server on 0.0.0.0:$PORT (default 8080).

Nothing is imported at module level: the Evidently report worker is a *spawned* process, which
re-imports this module as ``__mp_main__``, and must not pay for torch and KServe.
"""

import os


def main() -> None:
    # One BLAS/OpenMP/torch thread: requests are tiny (0.3 ms for 10 rows with one thread, 1.5 ms
    # with a pool that wakes both cores), and the second core belongs to the load and the monitor.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from fraud_kserve.server import main as serve

    serve()


if __name__ == "__main__":
    main()
