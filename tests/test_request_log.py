"""Finding a request's log record by id and reading its inputs in every form the contract promises."""

from __future__ import annotations

import json

from harness.request_log import logged_request, records_for
from reference_model.schema import FEATURES

ROW = {f: i for i, f in enumerate(FEATURES)}


def _logged(*lines: str, rid: str = "tk-1"):
    return logged_request(rid, records_for("\n".join(lines), [rid])[rid])


def test_instances_by_name_lists_in_feature_order_and_v2_tensors_give_the_same_rows() -> None:
    forms = [{"request_id": "tk-1", "instances": [ROW]},
             {"request_id": "tk-1", "rows": [[ROW[f] for f in FEATURES]]},
             {"id": "tk-1", "request": {"inputs": [{"name": f, "shape": [1], "data": [v]} for f, v in ROW.items()]}},
             {"meta": {"rid": "tk-1"}, "body": json.dumps({"instances": [ROW]})}]
    for record in forms:
        got = _logged("INFO: " + json.dumps(record))
        assert got is not None and got.rows == [ROW], (record, got)


def test_a_record_without_inputs_is_passed_over_for_one_with_them_and_otherwise_says_why() -> None:
    access = json.dumps({"request_id": "tk-1", "path": "/predict", "status": 200})
    full = json.dumps({"request_id": "tk-1", "instances": [ROW]})
    assert _logged(access, full).rows == [ROW]
    only = _logged(access)
    assert only is not None and only.rows is None and "no instances, inputs, rows key" in only.where
    short = _logged(json.dumps({"request_id": "tk-1", "rows": [[1, 2]]}))
    assert short.rows is None and "feature order" in short.where


def test_ids_are_matched_as_whole_values_and_broken_lines_are_skipped() -> None:
    lines = ["tk-1 plain text mention", "{not json tk-1", json.dumps({"request_id": "tk-10", "instances": [ROW]}),
             json.dumps([{"request_id": "tk-1"}])]
    assert records_for("\n".join(lines), ["tk-1"]) == {"tk-1": []}  # tk-10 is another request
    assert _logged(*lines) is None
