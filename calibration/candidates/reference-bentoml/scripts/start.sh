#!/usr/bin/env bash
# Start the BentoML server in the foreground on $PORT (the grader's `start`, the container's CMD).
#
# BentoML keeps its home (model store, bentos, the Prometheus multiprocess directory) under
# $BENTOML_HOME, by default ~/bentoml; the grader gives us a scratch HOME, so put it next to the
# registry in $TAKEHOME_STATE_DIR instead, where it lives for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."

export TAKEHOME_STATE_DIR="${TAKEHOME_STATE_DIR:-$PWD/state}"
export BENTOML_HOME="${BENTOML_HOME:-$TAKEHOME_STATE_DIR/bentoml}"
export BENTOML_DO_NOT_TRACK=True          # no usage analytics calls from a grading sandbox
export PYTHONUNBUFFERED=1                 # request-log lines reach stdout at once
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$BENTOML_HOME" "$TAKEHOME_STATE_DIR" logs

echo "starting BentoML: service:FraudService on ${HOST:-0.0.0.0}:${PORT:-3000} (state: $TAKEHOME_STATE_DIR)"
exec bentoml serve service:FraudService --host "${HOST:-0.0.0.0}" --port "${PORT:-3000}"
