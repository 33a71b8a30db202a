"""TensorBoard's own reader against a `cnclip train` run: every scalar the run's out_*.log prints is in its
tensorboard/ event files at the same step, equal to the log's value within the log's rounding.

usage (reference environment: ../shared/reference/setup_ref_env.sh):
    python scripts/reference/check_tensorboard_events.py LOGS/NAME
Prints one line per tag (events read, lines compared) and exits 1 on any mismatch.
"""
import glob
import os
import re
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = sys.argv[1]
acc = EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={"scalars": 0})
acc.Reload()
tags = acc.Tags()["scalars"]
scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags}

# (tag, regex of the value in the line, decimals printed, factor from the event's value to the line's)
train = [
    ("train/loss", r"\| Loss: ([0-9.e+-]+) \|", 6),
    ("train/image_to_text_acc", r"Image2Text Acc: ([0-9.]+)", 2),
    ("train/text_to_image_acc", r"Text2Image Acc: ([0-9.]+)", 2),
    ("train/lr", r"LR: ([0-9.e+-]+) \|", 6),
    ("train/logit_scale", r"logit_scale: ([0-9.]+)", 3),
]
valid = [
    ("val/loss", r"Valid Loss: ([0-9.]+)", 6),
    ("val/image_to_text_acc", r"Image2Text Acc: ([0-9.]+)", 2),
    ("val/text_to_image_acc", r"Text2Image Acc: ([0-9.]+)", 2),
]
compared = {t: 0 for t, _, _ in train + valid}
failures = 0
for log in sorted(glob.glob(os.path.join(run, "out_*.log"))):
    for line in open(log, encoding="utf-8"):
        if "Global Steps: " in line:
            step, fields = int(re.search(r"Global Steps: (\d+)/", line).group(1)), train
        elif "Validation Result" in line:
            step, fields = int(re.search(r"@ (\d+) steps", line).group(1)), valid
        else:
            continue
        for tag, pattern, decimals in fields:
            m = re.search(pattern, line)
            if not m:
                continue
            if step not in scalars.get(tag, {}):
                print(f"FAIL {tag}: no event at step {step} ({log})")
                failures += 1
                continue
            logged, event = float(m.group(1)), scalars[tag][step]
            if abs(round(event, decimals) - logged) > 1.01 * 10 ** -decimals / 2 + 1e-12:
                print(f"FAIL {tag} at step {step}: event {event!r}, log {m.group(1)}")
                failures += 1
            compared[tag] += 1
for tag in sorted(set(tags) | set(compared)):
    print(f"{tag}: {len(scalars.get(tag, {}))} events, {compared.get(tag, 0)} log values compared")
if failures or not all(compared[t] for t, _, _ in train[:1] + valid[:1]):
    print(f"tensorboard: {failures} mismatches" if failures else "tensorboard: nothing compared")
    sys.exit(1)
print("tensorboard: every logged value found in the event files")
