"""Submission contract validation (errors name the field and line) and grader config validation."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

from grader.config import ConfigError, load_config
from harness.contract import ContractError, load_contract, parse_contract

VALID = textwrap.dedent("""\
    version: 1
    framework: fastapi
    serving:
      predict_path: /v1/models/fraud:predict
    drift:
      signal: http
      http_path: /drift
    runtimes:
      local:
        start: python -m app
        deploy: python -m app.registry deploy {version}
        rollback: python -m app.registry rollback
    """)


def test_valid_contract_parses_with_defaults() -> None:
    c = parse_contract(VALID)
    assert c.serving.ready_path == "/healthz"
    assert c.serving.protocol == "v1"
    assert c.runtime("local").requirements == "requirements.txt"


def test_errors_name_field_and_line() -> None:
    broken = VALID.replace("predict_path: /v1", "predict_path: v1").replace("rollback: python", "rolback: python")
    with pytest.raises(ContractError) as info:
        parse_contract(broken)
    problems = "\n".join(info.value.problems)
    assert "serving.predict_path (line 4): must start with '/'" in problems
    assert "runtimes.local.rolback (line 12)" in problems  # the typo is named, with its line
    assert "runtimes.local.rollback" in problems and "Field required" in problems


def test_yaml_syntax_error_reports_line() -> None:
    with pytest.raises(ContractError, match="line 3"):
        parse_contract("version: 1\nserving:\n  predict_path: /a: b: c\nflavor: sklearn\n")


def test_signal_specific_fields_required() -> None:
    with pytest.raises(ContractError) as info:
        parse_contract(VALID.replace("  http_path: /drift\n", ""))
    assert any("http_path is required" in p for p in info.value.problems)


def test_deploy_must_take_a_version() -> None:
    with pytest.raises(ContractError) as info:
        parse_contract(VALID.replace("deploy {version}", "deploy"))
    assert any("runtimes.local.deploy" in p and "{version}" in p for p in info.value.problems)


def test_undeclared_runtime_says_how_to_fix() -> None:
    with pytest.raises(ContractError, match="--runtime local"):
        parse_contract(VALID).runtime("kind")


def test_missing_contract_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="no takehome.yaml"):
        load_contract(tmp_path)


def test_aliases_size_and_encoding_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    # Anchors and aliases are refused before expansion, with the line of the first one.
    with pytest.raises(ContractError, match=r"line 13, column 8: YAML aliases \(\*x\) are not allowed"):
        parse_contract(VALID + "extra: *x\n")
    with pytest.raises(ContractError, match=r"line 5, column 8: YAML anchors \(&a\)"):
        parse_contract(VALID.replace("drift:\n", "drift: &a\n"))
    (tmp_path / "takehome.yaml").write_bytes(VALID.encode() + b"#" * (300 * 1024))
    with pytest.raises(ContractError, match=r"takehome.yaml is \d+ bytes; the limit is 256 KiB"):
        load_contract(tmp_path)
    (tmp_path / "takehome.yaml").write_bytes(VALID.replace("fastapi", "fästapi").encode("latin-1"))
    with pytest.raises(ContractError, match="not UTF-8 text"):
        load_contract(tmp_path)
    (tmp_path / "takehome.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ContractError, match="not a text file"):
        load_contract(tmp_path)


def test_config_defaults_sum_to_100() -> None:
    cfg = load_config()
    assert cfg.max_score == 100
    assert cfg.traffic.baseline_rows >= 1000  # enough baseline to expose false-alarm-prone monitors


def test_config_override_merges_one_key(tmp_path: Path) -> None:
    f = tmp_path / "team.yaml"
    f.write_text("rubric:\n  drift:\n    items:\n      attribution: {points: 9}\nload:\n  rate_rps: 80\n")
    cfg = load_config(f)
    assert cfg.rubric["drift"].items["attribution"].points == 9
    assert cfg.rubric["drift"].items["attribution"].title  # title kept from the defaults
    assert cfg.load.rate_rps == 80 and cfg.load.duration_s == load_config().load.duration_s


@pytest.mark.parametrize("text,needle", [
    ("load:\n  rate_rsp: 80\n", "load.rate_rsp"),
    ("rubric:\n  drift:\n    items:\n      attribusion: {points: 1, title: x}\n", "attribusion"),
    ("traffic:\n  scenarios: [mean_shift, alien_invasion]\n", "alien_invasion"),
    ("load:\n  rate_rps: -5\n", "load.rate_rps"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(f)


def test_seed_from_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", "1234")
    assert load_config(overrides={"scenario_seed": 99}).seed() == (1234, "environment")
    monkeypatch.delenv("TAKEHOME_SCENARIO_SEED")
    assert load_config(overrides={"scenario_seed": 99}).seed() == (99, "config")


def test_reports_get_the_seeds_provenance_and_fingerprint_never_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.config import FALLBACK_SEED, seed_fingerprint

    secret = 4_611_686_018_427_387_903
    monkeypatch.delenv("TAKEHOME_SCENARIO_SEED", raising=False)
    assert load_config().seed_provenance() == {"source": "built-in default",
                                               "fingerprint": seed_fingerprint(FALLBACK_SEED)}
    from_config = load_config(overrides={"scenario_seed": secret}).seed_provenance()
    assert from_config["source"] == "config" and str(secret) not in json.dumps(from_config)
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", str(secret))
    from_env = load_config(overrides={"scenario_seed": 99}).seed_provenance()
    assert from_env == {"source": "environment", "fingerprint": from_config["fingerprint"]}  # same seed, same tag
    assert re.fullmatch(r"[0-9a-f]{12}", from_env["fingerprint"])
    assert len({seed_fingerprint(s) for s in range(20)}) == 20
    # Not a plain hash of the seed, which anyone could recompute for every small integer.
    assert all(from_env["fingerprint"] not in hashlib.new(algo, str(secret).encode()).hexdigest()
               for algo in ("sha256", "sha1", "md5", "blake2b"))


def test_config_digest_leaves_the_seed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAKEHOME_SCENARIO_SEED", raising=False)
    assert load_config(overrides={"scenario_seed": 1}).digest() == load_config(overrides={"scenario_seed": 2}).digest()
    assert load_config().digest() != load_config(overrides={"traffic": {"baseline_rows": 999}}).digest()


def test_a_malformed_seed_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", "98765x")
    with pytest.raises(ConfigError, match="TAKEHOME_SCENARIO_SEED") as info:
        load_config().seed()
    assert "98765" not in str(info.value)
