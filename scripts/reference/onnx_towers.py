"""The two towers of a cn-clip model as ONNX Runtime sees them, shared by bench_ort_encode.py and int8_accuracy.py:
exported with a dynamic batch (opset 17, TorchScript exporter, as ../shared/reference/bench_ort.py does), and their
dynamic int8 versions (`quantize_dynamic`, per-channel QInt8 weights)."""
import torch
from onnxruntime.quantization import quantize_dynamic, QuantType


class _Image(torch.nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m.encode_image(x)


class _Text(torch.nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, t): return self.m.encode_text(t)


def export(m, pixels, tokens, directory):
    """Writes DIR/img.onnx (input "image") and DIR/txt.onnx (input "text"), batch dimension dynamic."""
    torch.onnx.export(_Image(m), (pixels,), f"{directory}/img.onnx", input_names=["image"], output_names=["f"],
                      dynamic_axes={"image": {0: "b"}}, opset_version=17, dynamo=False)
    torch.onnx.export(_Text(m), (tokens,), f"{directory}/txt.onnx", input_names=["text"], output_names=["f"],
                      dynamic_axes={"text": {0: "b"}}, opset_version=17, dynamo=False)
    m.eval()  # torch.onnx.export leaves BERT in training mode


def quantize(directory):
    """Writes DIR/img8.onnx and DIR/txt8.onnx; returns what was quantized in each ("default" or the fallback)."""
    done = {}
    for name in ("img", "txt"):
        try:
            quantize_dynamic(f"{directory}/{name}.onnx", f"{directory}/{name}8.onnx", weight_type=QuantType.QInt8, per_channel=True)
            done[name] = "default"
        except ValueError as e:
            # RN50's exported convolutions take their weights from computed nodes, which quantize_dynamic refuses
            # ("Expected ... to be an initializer"): ONNX Runtime then quantizes the matrix products only.
            quantize_dynamic(f"{directory}/{name}.onnx", f"{directory}/{name}8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"])
            done[name] = f"MatMul/Gemm only ({e})"
    return done
