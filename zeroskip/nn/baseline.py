"""The CPU baseline: onnxruntime on this machine, measured in the same run.

onnxruntime runs the network dense in float32 (zeros are multiplied like any
other weight: it does not skip them), with one intra-op thread and with all
of them. Times are wall-clock, the best of several repetitions of the whole
batch, divided by the batch size.
"""

from __future__ import annotations

import os
import time

import numpy as np

from zeroskip.nn.onnx_io import to_onnx

__all__ = ["onnxruntime_times"]


def _session(model_bytes, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=options,
                                providers=["CPUExecutionProvider"])


def onnxruntime_times(network, inputs, *, repeats=5, min_seconds=0.2):
    """Seconds per inference of ``network`` on ``inputs`` (float32).

    Returns
    -------
    dict
        ``{"1_thread": s, "all_threads": s, "threads": n, "outputs": array}``.
    """
    model_bytes = to_onnx(network).SerializeToString()
    x = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
    cores = os.cpu_count() or 1
    result = {"threads": cores, "images": len(x)}
    for label, threads in (("1_thread", 1), ("all_threads", cores)):
        session = _session(model_bytes, threads)
        feed = {network.input_name: x}
        outputs = session.run(None, feed)[0]
        best = float("inf")
        start = time.perf_counter()
        runs = 0
        while runs < repeats or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            session.run(None, feed)
            best = min(best, time.perf_counter() - t0)
            runs += 1
            if runs >= 50:
                break
        result[label] = best / len(x)
        result["outputs"] = outputs
    return result
