"""Golden TensorBoard event files written by TensorBoard's own code, for TensorBoardWriterTests.

Writes Tests/Fixtures/tensorboard/events.golden: the records TensorBoard's RecordWriter frames (length, masked
CRC-32C of the length, data, masked CRC-32C of the data) around Event protos built with its own classes — the file
version event first, then scalars as torch.utils.tensorboard's add_scalar writes them (Summary.Value.simple_value) —
at fixed wall times, so that the bytes are reproducible. A value of 0 is written (simple_value is in a oneof, so it
has presence); a step of 0 is not (proto3 leaves a plain scalar at its default out). Also events.json: what each record holds.

usage (reference environment, scripts/reference/.. setup_ref_env.sh):
    python scripts/reference/make_tensorboard_fixtures.py Tests/Fixtures/tensorboard
"""
import json
import os
import sys

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import scalar

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
records = [{"wall_time": 1765000000.25, "step": 0, "file_version": "brain.Event:2"}]
scalars = [
    ("train/loss", 2.302585, 1, 1765000001.5),
    ("train/lr", 5e-05, 1, 1765000001.5),
    ("train/logit_scale", 100.0, 1, 1765000001.5),
    ("val/image_to_text_acc", 0.375, 20, 1765000042.125),
    ("train/loss", -0.0, 123456789012, 1765000099.0),
    ("train/image_to_text_acc", 0.0, 0, 1765000099.5),
    ("训练/损失", 1e-38, 3, 1765000100.0),
]
for tag, value, step, wall in scalars:
    records.append({"wall_time": wall, "step": step, "tag": tag, "value": value})

with open(os.path.join(out, "events.golden"), "wb") as f:
    writer = RecordWriter(f)
    for r in records:
        if "file_version" in r:
            event = Event(wall_time=r["wall_time"], step=r["step"], file_version=r["file_version"])
        else:
            event = Event(wall_time=r["wall_time"], step=r["step"], summary=scalar(r["tag"], r["value"]))
        writer.write(event.SerializeToString())
    writer.flush()
with open(os.path.join(out, "events.json"), "w") as f:
    json.dump(records, f, ensure_ascii=False, indent=1)
print("wrote", out)
