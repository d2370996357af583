"""A Triton Python-backend model that serves Banyan's exported TorchScript on the CPU.

pytriton's tritonserver has only the Python backend, so this model starts
`banyan __torchscript <model.pt>` (the file `banyan export-triton` wrote, beside this one) and
forwards every batch to it through a pipe: the server runs the very TorchScript a GPU server's
PyTorch backend would load. The model's configuration names the binary in its parameters
(`banyan`). Requests that arrive together are evaluated as one batch.
"""

import json
import os
import struct
import subprocess

import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUT_SIZE = 1861


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        binary = config["parameters"]["banyan"]["string_value"]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.process = subprocess.Popen(
            [binary, "__torchscript", os.path.join(version_dir, "model.pt")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def execute(self, requests):
        masks, rule50, rows = [], [], []
        for request in requests:
            m = pb_utils.get_input_tensor_by_name(request, "INPUT__0").as_numpy()
            r = pb_utils.get_input_tensor_by_name(request, "INPUT__1").as_numpy()
            masks.append(np.ascontiguousarray(m, dtype="<i8"))
            rule50.append(np.ascontiguousarray(r, dtype="<f4"))
            rows.append(m.shape[0])
        total = sum(rows)
        frame = struct.pack("<I", total) + b"".join(m.tobytes() for m in masks)
        frame += b"".join(r.tobytes() for r in rule50)
        self.process.stdin.write(frame)
        self.process.stdin.flush()
        size = total * OUTPUT_SIZE * 4
        data = self.process.stdout.read(size)
        if len(data) != size:
            raise pb_utils.TritonModelException("banyan __torchscript ended")
        out = np.frombuffer(data, dtype="<f4").reshape(total, OUTPUT_SIZE)
        responses, start = [], 0
        for n in rows:
            tensor = pb_utils.Tensor("OUTPUT__0", out[start : start + n].copy())
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += n
        return responses

    def finalize(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)
