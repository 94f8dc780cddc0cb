"""``python -m app``: serve on 0.0.0.0:$PORT (default 8080)."""

import os

# One BLAS/OpenMP thread per process: requests are tiny, and the drift worker process must not
# fight the server for the second core (set before numpy or scikit-learn are imported).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def main() -> None:
    import logging

    import uvicorn

    from app import settings
    from app.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(), host=os.environ.get("HOST", "0.0.0.0"), port=settings.port(),  # noqa: S104
                log_level="warning", access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
