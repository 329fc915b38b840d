"""dpn-convert: a dpn_infer.nn checkpoint -> model.bin.

    dpn-convert CHECKPOINT -o model.bin [--precision fp32|bf16] [--embeddings fp32|fp16|bf16]

CHECKPOINT is a file written by ``dpn_infer.nn.save_checkpoint(model, path)``.
"""
from __future__ import annotations

import argparse
import sys

from dpn_infer import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dpn-convert",
        description="Convert a dpn_infer.nn checkpoint (written by dpn_infer.nn.save_checkpoint) "
                    "into a model.bin file for the dpn_infer engine.")
    p.add_argument("checkpoint", help="checkpoint file: torch.save of {class, config, state_dict}")
    p.add_argument("-o", "--output", default="model.bin", help="output path (default: model.bin)")
    p.add_argument("--precision", default="fp32",
                   help="dense weight matrices: fp32 (default) or bf16 (rounded to nearest even)")
    p.add_argument("--embeddings", default="fp32",
                   help="embedding tables: fp32 (default), fp16 or bf16 (rounded to nearest even)")
    p.add_argument("--version", action="version", version=f"dpn_infer {__version__}")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from dpn_infer.nn import load_checkpoint
        from .torch_export import export
        from .format import encode, write_bytes
        from .precision import apply, check
    except ImportError as e:     # torch missing
        print(f"dpn-convert: needs torch (pip install 'dpn_infer[torch]'): {e}", file=sys.stderr)
        return 2
    try:
        check(args.precision, args.embeddings)
    except ValueError as e:
        print(f"dpn-convert: {e}", file=sys.stderr)
        return 2
    try:
        model = load_checkpoint(args.checkpoint)
        metadata, tensors = apply(*export(model), args.precision, args.embeddings)
        data = encode(metadata, tensors)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        print(f"dpn-convert: {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    out = args.output
    write_bytes(out, data)  # atomic: a temporary file beside it, then a rename
    print(f"wrote {out}: {metadata['model_type']}, {len(metadata['schema']['fields'])} fields, "
          f"{len(metadata['graph']['nodes'])} nodes, {len(tensors)} tensors, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
