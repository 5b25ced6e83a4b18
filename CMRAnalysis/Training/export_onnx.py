"""Export trained ``sax-fast-unet`` weights to the ONNX file the extension ships (not shipped itself).

The extension runs the fast model with ONNX Runtime: on these 2 CPU cores it segments a 128x128 slice about
2.5 times faster than PyTorch, and a cold start then needs neither torch nor MONAI. Exporting needs the ``onnx``
package, which the extension does not (``pip install onnx==1.23.2``, into the training environment only)::

    .venv/bin/python CMRAnalysis/Training/export_onnx.py /tmp/sax-fast-stage4/sax-fast-unet-1.0.0.pt \\
        --out CMRAnalysis/CMRAnalysisLib/Resources/Models/sax-fast-unet-1.0.1.onnx

It checks that ONNX Runtime and PyTorch agree on a random batch and prints the file's size and sha256 for the
registry entry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sax_data  # noqa: E402
import train_sax_fast  # noqa: E402

#: Largest difference in logits allowed between ONNX Runtime and PyTorch (float32 arithmetic in another order).
TOLERANCE = 1e-3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path, help="state dict written by train_sax_fast.py")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    from CardiacSuiteLib.inference.backends import build_network

    model = build_network(train_sax_fast.NETWORK)
    model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    model.eval()
    size = train_sax_fast.SIZE
    example = torch.zeros(2, 1, size, size)
    torch.onnx.export(
        model, (example,), str(args.out), input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    batch = np.random.default_rng(0).random((8, 1, size, size), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    session = onnxruntime.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": batch})[0]
    difference = float(np.abs(got - expected).max())
    if difference > TOLERANCE:
        print(f"ONNX Runtime and PyTorch differ by {difference:.2e} in the logits: not exported", file=sys.stderr)
        args.out.unlink()
        return 1
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {sax_data.sha256_file(args.out)};"
          f" largest logit difference from PyTorch {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
