"""dpn-convert: a dpn_infer.nn checkpoint -> model.bin and/or an ONNX graph (docs/onnx.md).

    dpn-convert CHECKPOINT [-o model.bin] [--onnx model.onnx] [--precision fp32|bf16|int8]
                [--embeddings fp32|fp16|bf16|int8]

CHECKPOINT is a file written by ``dpn_infer.nn.save_checkpoint(model, path)``. Without -o or --onnx it
writes model.bin; with --onnx alone, only the ONNX graph.
"""
from __future__ import annotations

import argparse
import sys

from dpn_infer import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dpn-convert",
        description="Convert a dpn_infer.nn checkpoint (written by dpn_infer.nn.save_checkpoint) "
                    "into a model.bin file for the dpn_infer engine and/or an ONNX graph (docs/onnx.md).")
    p.add_argument("checkpoint", help="checkpoint file: torch.save of {class, config, state_dict}")
    p.add_argument("-o", "--output", help="model.bin output path (default: model.bin, unless --onnx "
                                          "alone is given)")
    p.add_argument("--onnx", metavar="PATH",
                   help="also (or, without -o, only) write an ONNX graph in Kronecker form for ONNX "
                        "Runtime: one input per field, output 'logit' = logits [batch]")
    p.add_argument("--precision", default="fp32",
                   help="model.bin's dense weight matrices: fp32 (default), bf16 (rounded to nearest "
                        "even) or int8 (symmetric, one float32 scale per output; no calibration data)")
    p.add_argument("--embeddings", default="fp32",
                   help="model.bin's embedding tables: fp32 (default), fp16, bf16 (rounded to nearest "
                        "even) or int8 (symmetric, one float32 scale per row)")
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
    out = args.output if args.output or args.onnx else "model.bin"
    try:
        check(args.precision, args.embeddings)
    except ValueError as e:
        print(f"dpn-convert: {e}", file=sys.stderr)
        return 2
    try:
        model = load_checkpoint(args.checkpoint)
        if out:
            metadata, tensors = apply(*export(model), args.precision, args.embeddings)
            data = encode(metadata, tensors)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        print(f"dpn-convert: {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    if out:
        write_bytes(out, data)  # atomic: a temporary file beside it, then a rename
        print(f"wrote {out}: {metadata['model_type']}, {len(metadata['schema']['fields'])} fields, "
              f"{len(metadata['graph']['nodes'])} nodes, {len(tensors)} tensors, {len(data)} bytes")
    if args.onnx:
        return _write_onnx(model, args)
    return 0


def _write_onnx(model, args) -> int:
    try:
        from .onnx_export import export_onnx
        axes = export_onnx(model, args.onnx)
    except ImportError as e:     # onnx / onnxscript missing
        print(f"dpn-convert: --onnx needs onnx and onnxscript (pip install 'dpn_infer[onnx]'): {e}",
              file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"dpn-convert: {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    inputs = ", ".join(f"{f.name} {'float32' if f.kind == 'dense' else 'int64'} "
                       f"[{', '.join(map(str, axes[f.name]))}]" for f in model.schema
                       if f.name in axes)      # a DyJoint's graph takes no timestamps
    print(f"wrote {args.onnx}: ONNX, Kronecker form; inputs {inputs}; output logit float32 [batch]: "
          f"logits (apply a sigmoid for click probabilities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
