#!/usr/bin/env python3
"""Self-check for the take-home: replay the public traffic against your running service.

    python selfcheck.py --url http://127.0.0.1:8080 --contract path/to/takehome.yaml

Copied elsewhere, it finds the assignment (samples/, public_traffic/) beside itself, in the
current directory or one of their parents; or pass --kit path/to/the/unpacked/archive.

Checks the ready path, the sample request, the drift monitor on public_traffic/ (quiet on the
baseline, fires on the drift file naming the feature, clears on clean rows), bad and odd inputs,
and metrics. Exit 0 when every check passes, else 1. NOT YOUR GRADE: the grader plays hidden
scenarios and tests latency and rollback too. Standard library only (PyYAML if installed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The grader's cadence and limits (README, "How you will be graded").
POLL_EVERY_ROWS, ROWS_PER_REQUEST, SETTLE_S, WASHOUT_MAX_ROWS = 50, 10, 2.0, 1500
#: Unscored in-distribution rows sent before the baseline, as the grader does: they push the
#: check's own first requests (the sample, odd rows) out of a windowed monitor.
WARMUP_ROWS = 500
ATTRIBUTION_MAX_FEATURES, DETECTION_FAST_ROWS, OVERSIZED_BODY_MB = 3, 500, 12
#: The grader refuses a takehome.yaml over this size, not UTF-8, or with YAML anchors / aliases.
CONTRACT_MAX_BYTES = 256 * 1024
#: serving.* and drift.* keys of the contract; each has a command-line flag that overrides it.
CONTRACT_KEYS = ("protocol", "predict_path", "ready_path", "metrics_path", "request_id_header", "signal",
                 "http_path", "drift_field", "features_field", "prometheus_metric", "feature_label")
DEFAULTS = {"protocol": "v1", "ready_path": "/healthz", "metrics_path": "/metrics", "request_id_header": "X-Request-ID",
            "drift_field": "drift", "features_field": "features", "feature_label": "feature"}
Rows = list[dict[str, Any]]


# --- contract ------------------------------------------------------------------------------
def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1]
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    return int(text) if text.isdigit() else text


def tiny_yaml(text: str) -> dict[str, Any]:
    """Nested mappings of scalars: enough YAML to read a takehome.yaml without PyYAML."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()  # comments ('#' inside quotes is not expected)
        if not line.strip() or line.lstrip().startswith("-"):
            continue  # block lists are not needed here
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        if value.strip():
            stack[-1][1][key.strip()] = _scalar(value)
        else:
            child: dict = {}
            stack[-1][1][key.strip()] = child
            stack.append((indent, child))
    return root


def _quoted_out(line: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', line)


def alias_in(text: str) -> str | None:
    """The first YAML anchor (&name) or alias (*name) that starts a node, as "&name" / "*name"."""
    for raw in text.splitlines():
        body = _quoted_out(re.sub(r"(^|\s)#.*$", "", raw)).strip()
        while body.startswith("-"):  # list items: "- *x", "- - &y"
            body = body[1:].lstrip()
        value = body.partition(": ")[2].lstrip() if ": " in body else body
        if value[:1] in ("&", "*"):
            return value.split()[0]
        if value[:1] in ("[", "{"):  # flow collection: a node starts after each [ { , and ": "
            hit = re.search(r"(?:[\[{,]|:\s)\s*([&*][^\s,\[\]{}]*)", value)
            if hit:
                return hit.group(1)
    return None


def _refuse(problem: str) -> SystemExit:
    return SystemExit(f"selfcheck: {problem} (the grader refuses it too)")


def read_contract(path: str) -> dict[str, Any]:
    """The contract as data, refused the way the grader refuses it: too big, not UTF-8 text,
    or using YAML anchors / aliases (which can expand to gigabytes)."""
    with open(path, "rb") as fh:
        data = fh.read(CONTRACT_MAX_BYTES + 1)
    if len(data) > CONTRACT_MAX_BYTES:
        raise _refuse(f"takehome.yaml is {max(len(data), Path(path).stat().st_size)} bytes; "
                      f"the limit is {CONTRACT_MAX_BYTES // 1024} KiB")
    if b"\0" in data:
        raise _refuse("takehome.yaml is not a text file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(f"takehome.yaml is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        import yaml  # optional
    except ImportError:
        token = alias_in(text)
        if token:
            kind = "aliases" if token[0] == "*" else "anchors"
            raise _refuse(f"YAML {kind} ({token}) are not allowed in takehome.yaml") from None
        return tiny_yaml(text)

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                kind, mark = ("aliases", "*") if isinstance(event, yaml.AliasEvent) else ("anchors", "&")
                raise _refuse(f"YAML {kind} ({mark}{event.anchor}) are not allowed in takehome.yaml "
                              f"(line {event.start_mark.line + 1})")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliasLoader) or {}  # a SafeLoader
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise _refuse(f"takehome.yaml is not valid YAML: {type(exc).__name__}: {exc}") from None


_TYPES: dict[str, Any] = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def schema_problems(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "") -> list[str]:
    """What ``value`` breaks in ``schema`` (the JSON Schema keywords takehome.schema.json uses), as
    "field: problem" lines; empty when it is valid. Standard library only, like the rest of this file."""
    at = where or "(top level)"
    if "$ref" in schema:
        return schema_problems(value, _resolve(schema, root), root, where)
    out: list[str] = []
    if "type" in schema and not _is(value, schema["type"]):
        return [f"{at}: should be {schema['type']}, got {type(value).__name__} {value!r:.40}"]
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"])):
        out.append(f"{at}: should be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{at}: should be one of {', '.join(repr(e) for e in schema['enum'])}, got {value!r:.40}")
    if "anyOf" in schema:
        out.extend(_any_of(value, schema["anyOf"], root, where))
    for sub in schema.get("allOf", []):
        out.extend(schema_problems(value, sub, root, where))
    if "if" in schema and not schema_problems(value, schema["if"], root, where):
        out.extend(schema_problems(value, schema.get("then", {}), root, where))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{at}: should not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{at}: should match {schema['pattern']!r}")
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{at}: should be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{at}: should be <= {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where + '.' if where else ''}{key}: field required")
        for key, item in value.items():
            sub_at = f"{where + '.' if where else ''}{key}"
            if key in props:
                out.extend(schema_problems(item, props[key], root, sub_at))
            elif schema.get("additionalProperties") is False:
                out.append(f"{sub_at}: not a known key (a typo?); known here: {', '.join(props)}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out.extend(schema_problems(item, schema["items"], root, f"{where}.{i}"))
    return out


def _any_of(value: Any, branches: list[dict[str, Any]], root: dict[str, Any], where: str) -> list[str]:
    problems = [schema_problems(value, b, root, where) for b in branches]
    if not all(problems):
        return []
    at = where or "(top level)"
    kinds: list[str] = [str(_resolve(b, root).get("type") or "") for b in branches]
    if all(kinds):
        fitting = [p for p, k in zip(problems, kinds) if _is(value, k)]
        if fitting:  # the right type, wrong in some other way: say how
            return fitting[0]
        return [f"{at}: should be {' or '.join(kinds)}, got {type(value).__name__} {value!r:.40}"]
    return [f"{at}: none of the allowed forms fits ({' / '.join(p[0] for p in problems)})"]


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema:
        return schema
    target: Any = root
    for part in schema["$ref"].lstrip("#/").split("/"):
        target = target[part]
    return target


def check_contract(data: Any, schema_path: Path) -> None:
    """Refuse a contract the grader would refuse, by the schema the grader ships with the kit."""
    if not schema_path.is_file():
        print(f"selfcheck: {schema_path} not found: takehome.yaml is not validated (pass --schema)", file=sys.stderr)
        return
    try:
        import yaml  # noqa: F401 - without it the contract was read by tiny_yaml, too loosely to judge types
    except ImportError:
        print("selfcheck: PyYAML is not installed: takehome.yaml is not validated (pip install pyyaml)",
              file=sys.stderr)
        return
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    problems = schema_problems(data, schema, schema) if isinstance(data, dict) else [
        f"(top level): expected a mapping, got {type(data).__name__}"]
    if problems:
        raise _refuse(f"{len(problems)} problem(s) in takehome.yaml:\n  " + "\n  ".join(problems[:20]))


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the contract's serving and drift sections, then explicit flags."""
    settings = dict(DEFAULTS)
    if args.contract:
        data = read_contract(args.contract)
        if args.schema is None:
            resolve_kit(args)
        check_contract(data, Path(args.schema))
        for section in ("serving", "drift"):
            settings.update({k: v for k, v in (data.get(section) or {}).items() if v is not None})
    settings.update({k: getattr(args, k) for k in CONTRACT_KEYS if getattr(args, k, None) is not None})
    if not settings.get("predict_path"):
        raise SystemExit("selfcheck: pass --contract takehome.yaml or --predict-path")
    settings.setdefault("signal", "http" if settings.get("http_path") else "none")
    return settings


# --- HTTP and wire format --------------------------------------------------------------------
def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int | None, bytes, str | None]:
    """(status, body, error); never raises."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), None
    except (OSError, ValueError) as exc:
        return None, b"", f"{type(exc).__name__}: {exc}"


class Service:
    """The candidate's service, as the contract describes it."""

    def __init__(self, url: str, s: dict[str, Any]) -> None:
        self.url, self.s = url.rstrip("/"), s
        schema = HERE / "reference_data" / "schema.json"
        self.fields = json.loads(schema.read_text())["features"] if schema.exists() else []

    def encode(self, rows: Rows) -> bytes:
        """A v1 or v2 request body (v2: one tensor per feature present, in schema order)."""
        if self.s["protocol"] != "v2":
            return json.dumps({"instances": rows}).encode()
        types = {f["name"]: {"categorical": "BYTES", "integer": "INT64"}.get(f["type"], "FP64") for f in self.fields}
        names = [*types, *(k for k in (rows[0] if rows else {}) if k not in types)]  # unknown keys: extra tensors
        tensors = [{"name": n, "shape": [len(rows)], "datatype": types.get(n, "FP64"), "data": [r.get(n) for r in rows]}
                   for n in names if rows and n in rows[0]]
        return json.dumps({"inputs": tensors}).encode()

    def post(self, body: bytes, request_id: str | None = None) -> tuple[int | None, bytes, str | None]:
        rid = request_id or f"selfcheck-{uuid.uuid4().hex[:12]}"
        return http("POST", self.url + self.s["predict_path"], body, {"Content-Type": "application/json",
                                                                      self.s["request_id_header"]: rid})

    def predict(self, rows: Rows) -> tuple[list[float] | None, str]:
        """(probabilities, "") or (None, what was wrong)."""
        status, body, err = self.post(self.encode(rows))
        if status != 200:
            return None, err or f"HTTP {status}: {body[:200]!r}"
        try:
            payload = json.loads(body)
            preds = payload["outputs"][0]["data"] if self.s["protocol"] == "v2" else payload["predictions"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None, f"unexpected response shape: {body[:200]!r}"
        ok = isinstance(preds, list) and len(preds) == len(rows) and all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in preds)
        return (preds, "") if ok else (None, f"expected {len(rows)} probabilities in [0, 1], got {body[:200]!r}")


# --- drift signal ----------------------------------------------------------------------------
class Webhook:
    """A local receiver for the webhook signal: Alertmanager-style or plain payloads."""

    def __init__(self, listen: str, label: str) -> None:
        host, _, port = listen.rpartition(":")
        self.firing: dict[tuple, list[str]] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            log_message = lambda *a: None  # noqa: E731 - quiet

            def do_POST(self) -> None:
                try:
                    owner.apply(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))), label)
                    self.send_response(200)
                except (ValueError, TypeError, AttributeError, KeyError):
                    self.send_response(400)
                self.end_headers()

        self.server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def apply(self, p: dict[str, Any], label: str) -> None:
        """Update the firing set from one payload."""
        for a in p.get("alerts", []):
            labels, key = a.get("labels", {}), tuple(sorted(a.get("labels", {}).items()))
            if str(a.get("status", p.get("status", "firing"))).lower() == "resolved":
                self.firing.pop(key, None)
            else:
                self.firing[key] = [labels[label]] if label in labels else []
        if "alerts" not in p:
            self.firing = {("plain",): list(p.get("features") or [])} if p["drift"] in (True, "true", 1) else {}


def _dig(obj: Any, path: str) -> Any:
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    head, _, rest = path.partition(".")
    return _dig(obj[head], rest) if rest and isinstance(obj, dict) and head in obj else None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_POSITIVE = re.compile(r"\+?(?=\.?\d)\d*\.?\d*(?:[eE][+-]?\d+)?|\+?Inf")  # a float that can be > 0
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_gauge(text: str, metric: str, label: str) -> tuple[bool, set[str]]:
    """Any sample of ``metric`` above 0 is firing; the ``label`` values of those samples are the features."""
    hits = [m for m in map(_SAMPLE.match, text.splitlines())
            if m and m.group(1) == metric and _POSITIVE.fullmatch(m.group(3)) and float(m.group(3)) > 0]
    return bool(hits), {v for m in hits for k, v in _LABEL.findall(m.group(2) or "") if k == label}


def read_drift(svc: Service, hook: Webhook | None) -> tuple[bool | None, set[str], str]:
    """(firing, features, error); firing is None when the signal could not be read."""
    s = svc.s
    if s["signal"] == "webhook" and hook:
        return bool(hook.firing), {f for fs in hook.firing.values() for f in fs}, ""
    if s["signal"] not in ("http", "prometheus"):
        return None, set(), "no drift signal declared"
    path = s["http_path"] if s["signal"] == "http" else s["metrics_path"]
    status, body, err = http("GET", svc.url + path, timeout=2.0)
    if status != 200:
        return None, set(), err or f"GET {path}: HTTP {status}"
    if s["signal"] == "prometheus":
        return (*prometheus_gauge(body.decode("utf-8", "replace"), s["prometheus_metric"], s["feature_label"]), "")
    try:
        data = json.loads(body)
    except ValueError:
        data = body
    if not isinstance(data, dict):
        return None, set(), f"GET {path}: expected a JSON object, got {body[:100]!r}"
    flag, feats = _dig(data, s["drift_field"]), _dig(data, s["features_field"]) or []
    firing = flag.strip().lower() in ("true", "yes", "1", "firing") if isinstance(flag, str) else bool(flag)
    names = {k for k, v in feats.items() if v} if isinstance(feats, dict) else {f for f in feats if isinstance(f, str)}
    return firing, names, ""


# --- checks ----------------------------------------------------------------------------------
class Report(list):
    """(status, name, detail) lines: PASS / FAIL / INFO, printed as they come."""

    def add(self, status: str, name: str, detail: str) -> None:
        self.append((status, name, detail))
        print(f"  [{status}] {name}: {detail}", flush=True)

    def check(self, ok: bool, name: str, detail: str) -> bool:
        self.add("PASS" if ok else "FAIL", name, detail)
        return ok


def read_rows(path: Path) -> Rows:
    """The rows of a .jsonl file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def replay(svc: Service, rows: Rows, hook: Webhook | None, stop_when: bool | None, args: argparse.Namespace) -> dict:
    """Send rows, read the signal every ``--poll-every`` rows and then for ``--settle`` s.
    Stops as soon as the signal reads ``stop_when`` (None: never)."""
    out: dict[str, Any] = {"sent": 0, "errors": [], "fired_at": None, "features": set(), "polls": 0, "last": None,
                           "read_errors": []}

    def poll() -> bool:
        firing, feats, err = read_drift(svc, hook)
        out["polls"] += 1
        if firing is None:
            out["read_errors"].append(err)
            return False
        out["last"] = firing
        if firing and out["fired_at"] is None:
            out["fired_at"], out["features"] = out["sent"], feats
        return stop_when is not None and firing == stop_when

    next_poll = args.poll_every
    for i in range(0, len(rows), args.rows_per_request):
        preds, err = svc.predict(rows[i:i + args.rows_per_request])
        if preds is None:
            out["errors"].append(err)
        out["sent"] = min(i + args.rows_per_request, len(rows))
        if out["sent"] >= next_poll:
            next_poll += args.poll_every
            if poll():
                return out
    end = time.monotonic() + args.settle
    while time.monotonic() < end and not poll():
        time.sleep(0.5)
    return out


def check_drift(svc: Service, r: Report, hook: Webhook | None, args: argparse.Namespace, baseline: Rows) -> None:
    """An unscored warm-up, the baseline (no alarm allowed), then each public drift file (fire, name, clear)."""
    warm = replay(svc, (baseline * (WARMUP_ROWS // max(1, len(baseline)) + 1))[:WARMUP_ROWS], hook, None, args)
    r.add("INFO", "warm-up", f"{warm['sent']} unscored in-distribution rows first, as the grader sends"
          + ("; the alarm was on after them (the grader does not score that)" if warm["last"] else ""))
    out = replay(svc, baseline, hook, None, args)
    first = f"; first: {out['errors'][0]}" if out["errors"] else ""
    r.check(not out["errors"], "baseline requests", f"{out['sent']} rows, {len(out['errors'])} failed requests{first}")
    first = f"; first error: {out['read_errors'][0]}" if out["read_errors"] else ""
    r.check(not out["read_errors"], "drift signal readable", f"{out['polls']} reads{first}")
    r.check(out["fired_at"] is None, "quiet on baseline", f"no alarm in {out['polls']} reads" if out["fired_at"] is None
            else f"FALSE ALARM after {out['fired_at']} rows, naming {sorted(out['features'])}")
    clean = (baseline * (WASHOUT_MAX_ROWS // max(1, len(baseline)) + 1))[:WASHOUT_MAX_ROWS]
    last = out["last"]
    for sc in json.loads((Path(args.traffic_dir) / "scenarios.json").read_text()).get("scenarios", []):
        if last:
            r.add("INFO", sc["file"], "alarm still on: sending clean rows to clear it first")
            replay(svc, clean, hook, False, args)
        got = replay(svc, read_rows(Path(args.traffic_dir) / sc["file"]), hook, True, args)
        fired, named, want = got["fired_at"], got["features"], set(sc.get("features", []))
        slow = " (slower than the grader's full-credit delay)" if fired and fired > DETECTION_FAST_ROWS else ""
        if not r.check(fired is not None, f"detects {sc['kind']} ({sc['file']})",
                       f"alarm after {fired} drifted rows{slow}" if fired is not None
                       else f"no alarm in {got['sent']} drifted rows"):
            last = got["last"]
            continue
        r.check(bool(want & named) and len(named) <= ATTRIBUTION_MAX_FEATURES, f"names {', '.join(sorted(want))}",
                f"alarm named {', '.join(sorted(named)) or 'no feature'}")
        cleared = replay(svc, clean, hook, False, args)
        last = cleared["last"]
        r.check(last is False, "clears on clean rows", f"cleared within {cleared['sent']} rows" if last is False
                else f"still firing after {cleared['sent']} clean rows")


def check_inputs(svc: Service, r: Report, good: dict[str, Any]) -> None:
    """Malformed requests get a 4xx, odd-but-valid ones a 200, and the service stays ready."""
    cat = next((k for k, v in good.items() if isinstance(v, str)), "channel")
    bad = [("not JSON", b"{not json"), ("JSON array", b"[1, 2, 3]"), ("no instances", b'{"rows": []}'),
           ("empty instance list", svc.encode([])), ("out of range", svc.encode([{**good, "hour_of_day": 99}])),
           ("missing feature", svc.encode([{k: v for k, v in good.items() if k != "amount"}])),
           ("string for a number", svc.encode([{**good, "amount": "twelve"}])),
           ("extra feature", svc.encode([{**good, "favourite_colour": 3}])),
           ("number for a category", svc.encode([{**good, cat: 7}])),
           ("null in a non-nullable feature", svc.encode([{**good, "hour_of_day": None}])),
           ("negative amount", svc.encode([{**good, "amount": -5.0}])),
           (f"{OVERSIZED_BODY_MB} MB body", svc.encode([good] * (OVERSIZED_BODY_MB * 2**20 // len(json.dumps(good)))))]
    for name, body in bad:
        code, _, err = svc.post(body)
        r.check(code is not None and 400 <= code < 500, f"rejects {name}", f"HTTP {code or err}")
    nullable = next((f["name"] for f in svc.fields if f.get("nullable")), "distance_from_home_km")
    odd = (("unknown category", {**good, cat: "selfcheck_unseen"}), ("null " + nullable, {**good, nullable: None}))
    for name, row in odd:
        preds, err = svc.predict([row])
        r.check(preds is not None, f"accepts {name}", "HTTP 200" if preds else err)
    status, _, err = http("GET", svc.url + svc.s["ready_path"])
    r.check(status == 200, "healthy after bad input", f"GET {svc.s['ready_path']} -> {err or status}")


def _is_kit(path: Path) -> bool:
    return (path / "samples" / "request.json").is_file() and (path / "public_traffic" / "scenarios.json").is_file()


def find_kit(given: str | None) -> Path:
    """The unpacked assignment: ``--kit``, else the first of this script's folder, the current
    folder and their parents that holds samples/ and public_traffic/."""
    if given:
        kit = Path(given).expanduser().resolve()
        if not _is_kit(kit):
            raise _refuse(f"--kit {given}: no samples/request.json and public_traffic/scenarios.json there; "
                          "pass the folder the assignment archive unpacked into")
        return kit
    cwd = Path.cwd().resolve()
    for place in (HERE, *HERE.parents, cwd, *cwd.parents):
        if _is_kit(place):
            return place
    raise _refuse("cannot find the assignment's samples/ and public_traffic/ (looked beside this script, in the "
                  "current folder and their parents); run it from the unpacked archive, or pass --kit PATH")


def resolve_kit(args: argparse.Namespace) -> Path:
    """Find the kit and fill in the paths not given on the command line (``--schema``, ``--traffic-dir``)."""
    kit = find_kit(args.kit)
    args.schema = args.schema or str(kit / "takehome.schema.json")
    args.traffic_dir = args.traffic_dir or str(kit / "public_traffic")
    return kit


def run(args: argparse.Namespace) -> int:
    """Run every self-check and print the summary; return the exit code."""
    kit = resolve_kit(args)
    s = load_settings(args)
    svc, r = Service(args.url, s), Report()
    hook = Webhook(args.webhook_listen, s["feature_label"]) if s["signal"] == "webhook" else None
    if hook:
        print(f"webhook receiver listening: start your service with "
              f"TAKEHOME_ALERT_WEBHOOK_URL=http://{args.webhook_listen}/alerts", flush=True)
    print(f"selfcheck against {svc.url} (protocol {s['protocol']}, drift signal {s['signal']})\n", flush=True)
    status, _, err = http("GET", svc.url + s["ready_path"])
    if not r.check(status == 200, "ready", f"GET {s['ready_path']} -> {err or status}"):
        return summary(r)
    sample = json.loads((kit / "samples" / "request.json").read_text())["instances"]
    preds, err = svc.predict(sample)
    r.check(preds is not None, "sample request", f"{len(sample)} probabilities: {preds}" if preds else err)
    for ref in sorted((kit / "samples").glob("response*.json")):
        want = json.loads(ref.read_text()).get("predictions")
        if preds and want:
            same = all(abs(a - b) <= 1e-4 for a, b in zip(preds, want))
            r.add("INFO", ref.name, "matches (v2 served)" if same else f"differs ({want}): fine while v1 is served")
    baseline = read_rows(Path(args.traffic_dir) / "baseline.jsonl")
    check_drift(svc, r, hook, args, baseline)
    check_inputs(svc, r, baseline[0])
    if s.get("metrics_path"):
        status, body, err = http("GET", svc.url + s["metrics_path"])
        n = sum(1 for ln in body.decode("utf-8", "replace").splitlines() if _SAMPLE.match(ln))
        r.check(status == 200 and n > 0, "metrics", f"GET {s['metrics_path']} -> {err or status}, {n} samples")
    else:
        r.check(False, "metrics", "serving.metrics_path is null")
    rid = f"selfcheck-{uuid.uuid4().hex[:12]}"
    svc.post(svc.encode([baseline[0]]), request_id=rid)
    r.add("INFO", "request id", f"sent {s['request_id_header']}: {rid}; it must appear in your service's logs")
    return summary(r)


def summary(r: Report) -> int:
    """Print the tally and the disclaimer; 0 when nothing failed."""
    failed = [n for st, n, _ in r if st == "FAIL"]
    passed = sum(1 for st, _, _ in r if st == "PASS")
    print(f"\n{passed} passed, {len(failed)} failed" + (f": {'; '.join(failed)}" if failed else ""))
    print("Public traffic only: this is NOT your grade. The grader plays hidden drift scenarios, measures "
          "latency under open-loop load and runs your rollback under traffic.")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the contract gives the defaults, flags override them."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Not your grade: hidden scenarios, latency and rollback are not checked here.")
    p.add_argument("--url", required=True, help="base URL of your running service, e.g. http://127.0.0.1:8080")
    p.add_argument("--contract", help="your takehome.yaml (its serving and drift sections are read)")
    for key in CONTRACT_KEYS:
        p.add_argument("--" + key.replace("_", "-"), dest=key, help="overrides the contract")
    p.add_argument("--drift-path", dest="http_path", help="alias of --http-path")
    p.add_argument("--kit", help="the unpacked assignment archive (default: found beside this script or in the "
                   "current folder, or a parent of either)")
    p.add_argument("--schema", help="the contract's JSON Schema (default: KIT/takehome.schema.json)")
    p.add_argument("--traffic-dir", help="the public traffic sample (default: KIT/public_traffic)")
    p.add_argument("--webhook-listen", default="127.0.0.1:9099", help="webhook receiver host:port (%(default)s)")
    p.add_argument("--poll-every", type=int, default=POLL_EVERY_ROWS, help="rows between reads (%(default)s)")
    p.add_argument("--rows-per-request", type=int, default=ROWS_PER_REQUEST, help="(%(default)s)")
    p.add_argument("--settle", type=float, default=SETTLE_S, help="seconds of reads after a file (%(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when every self-check passed, 1 otherwise."""
    args = parse_args(argv)
    try:
        return run(args)
    except Exception as exc:  # noqa: BLE001 - one line for the candidate, not a traceback
        print(f"selfcheck: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
