"""`dpn-infer`: the command-line front door.

    dpn-infer demo [--data PATH] ...   train a small FeatureDPN, convert, serve, compare (needs torch)
    dpn-infer info model.bin           print a model file's schema and operator graph
"""
from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    from . import engine

    try:
        m = engine.load(args.model)
    except (engine.ModelFormatError, OSError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 1
    meta = m.metadata
    if args.json:
        print(json.dumps({k: v for k, v in meta.items() if k != "extra"}, indent=2))
        return 0
    print(f"{args.model}: {meta.get('model_type', '?')}, opset {meta.get('opset')}, "
          f"producer {meta.get('producer', '?')}")
    print("fields:")
    for f in m.schema:
        extra = ", ".join(f"{k}={f[k]}" for k in ("vocab", "policy", "pooling", "max_len") if k in f)
        print(f"  {f['name']:<20} {f['kind']:<10} dim={f['dim']}" + (f", {extra}" if extra else ""))
    print("graph:")
    for n in meta["graph"]["nodes"]:
        attrs = {k: v for k, v in n.get("attrs", {}).items() if k != "field"}
        src = n.get("attrs", {}).get("field") or ", ".join(n.get("inputs", []))
        print(f"  {n['output']:<12} = {n['op']}({src}) {attrs if attrs else ''}")
    print(f"output: {meta['graph']['output']}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="dpn-infer", description="dpn_infer command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train, convert and serve a small FeatureDPN (needs torch)",
                       add_help=False)
    d.add_argument("rest", nargs=argparse.REMAINDER)
    i = sub.add_parser("info", help="show a model.bin's schema and graph")
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print the metadata as JSON")
    args = ap.parse_args(argv)
    if args.cmd == "demo":
        from .demo import main as demo_main

        demo_main(args.rest)
        return 0
    return _info(args)


if __name__ == "__main__":
    sys.exit(main())
