#!/usr/bin/env python3
"""Checks an output folder after a kill (or after the rerun) against golden uninterrupted runs. Standard library only.

  check.py units --out DIR --new GOLD_B [--old GOLD_A] --units U1,U2 [--keep K1,K2] [--final]
      Each unit (a file or a folder, relative to DIR) must be absent (only if no previous version existed), byte
      identical to its previous version GOLD_A/U (only if one existed), or byte identical to GOLD_B/U. --final:
      every unit must equal GOLD_B/U. --keep: paths that are no output of the command; they must stay as in GOLD_A.
  check.py train --out RUN_DIR --gold GOLD_RUN_DIR [--before STATE.json] [--save STATE.json] [--final]
      A training run's folder ({logs}/{name}): every checkpoint present is whole and equals the uninterrupted run's
      file of that name; epoch_latest.pt holds the contents of one of the uninterrupted run's checkpoints; every
      checkpoint that existed before the kill (--before) is still there, unchanged. --final: exactly the checkpoints
      of the uninterrupted run, byte for byte.
  check.py gallery --out GALLERY --old GOLD_A_GALLERY --new GOLD_B_GALLERY [--final]
      A gallery grown in place by `index add`: its manifest is the old or the new one, and the rows it counts are
      the old or new gallery's (rows past the count, which the next add cuts off, are allowed after a kill).

Output: first line "absent=N old=N new=N leftovers=N logical=N"; then "LEFT: path" for every hidden temporary
(`.NAME....tmp`) found and "FAIL: reason" for every failed check. Exit status 1 if anything failed.
Leftovers are failures only with --final (a kill -9 cannot clean up; the next run must).
"""
import argparse, hashlib, io, json, os, shutil, struct, subprocess, sys, tempfile, zipfile

fails, lefts = [], []
STRICT_LEFTOVERS = False
counts = {"absent": 0, "old": 0, "new": 0, "leftovers": 0, "logical": 0}


def fail(msg):
    fails.append(msg)


def is_leftover(name):
    return name.startswith(".") and name.endswith(".tmp")


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(root):
    """relative path -> sha256 for files, None for folders; hidden temporaries are reported and skipped."""
    out = {}
    if os.path.isfile(root):
        return {"": sha(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in list(dirnames):
            if is_leftover(d):
                lefts.append(os.path.join(dirpath, d))
                dirnames.remove(d)
            else:
                out[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            full = os.path.join(dirpath, f)
            if is_leftover(f):
                lefts.append(full)
            elif os.path.islink(full) or not os.path.isfile(full):
                out[os.path.normpath(os.path.join(rel, f))] = "not a regular file"
            else:
                out[os.path.normpath(os.path.join(rel, f))] = sha(full)
    return out


def same(path, gold):
    """True when `path` (file or folder) has exactly the contents of `gold`."""
    if os.path.isdir(path) != os.path.isdir(gold):
        return False
    return tree(path) == tree(gold)


def report(final):
    counts["leftovers"] = len(lefts)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    for l in lefts:
        print("LEFT: " + l)
        if final:
            fail(f"hidden temporary still there after the rerun: {l}")
        elif STRICT_LEFTOVERS:
            fail(f"hidden temporary left by a run that was not killed: {l}")
    for f in fails:
        print("FAIL: " + f)
    sys.exit(1 if fails else 0)


def check_units(a):
    units = [u for u in a.units.split(",") if u]
    keeps = [k for k in (a.keep or "").split(",") if k]
    for u in units:
        p, new = os.path.join(a.out, u), os.path.join(a.new, u)
        old = os.path.join(a.old, u) if a.old else None
        had_old = old is not None and os.path.exists(old)
        if not os.path.exists(p):
            if a.final:
                fail(f"{u}: absent after the rerun")
            elif had_old:
                fail(f"{u}: the previous version disappeared")
            else:
                counts["absent"] += 1
        elif same(p, new):
            counts["new"] += 1
        elif had_old and same(p, old) and not a.final:
            counts["old"] += 1
        else:
            fail(f"{u}: neither absent nor a complete version (differs from the uninterrupted run's" + (" and from the previous one)" if had_old else ")"))
    for k in keeps:
        p, old = os.path.join(a.out, k), os.path.join(a.old, k)
        if not os.path.exists(p) or not same(p, old):
            fail(f"{k}: an unrelated earlier output was changed or removed")
    # Anything else under OUT is a stray file (partial output under another name, debris).
    covered = units + keeps + [i for i in (a.ignore or "").split(",") if i]
    for rel in tree(a.out):
        if rel == "." or any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        if any(c.startswith(rel + "/") for c in covered):
            continue  # a folder holding outputs
        fail(f"unexpected file left: {rel}")
    lefts[:] = sorted(set(lefts))  # the walks above may each have met the same temporary
    report(a.final)


def checkpoint_digest(path):
    """sha256 over a torch.save zip's entries, names without their top folder (which is the file's own name)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename.split("/", 1)[-1]):
            h.update(info.filename.split("/", 1)[-1].encode() + b"\0")
            h.update(z.read(info))  # checks the CRC
    return h.hexdigest()


def crc32c_masked(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_event_files(folder):
    """TensorBoard event files are appended a step at a time: every record whole and its CRCs right, except that a
    killed run may leave its last record torn (TensorBoard's reader stops there)."""
    for n in os.listdir(folder):
        full = os.path.join(folder, n)
        if not n.startswith("events.out.tfevents."):
            fail(f"unexpected file in the TensorBoard folder: {full}")
            continue
        data, at = open(full, "rb").read(), 0
        while at + 12 <= len(data):
            head = data[at:at + 8]
            (length,) = struct.unpack("<Q", head)
            if struct.unpack("<I", data[at + 8:at + 12])[0] != crc32c_masked(head):
                fail(f"{full}: record at byte {at}: bad length checksum")
                break
            if at + 12 + length + 4 > len(data):
                break  # the torn last record of a killed run
            body = data[at + 12:at + 12 + length]
            if struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] != crc32c_masked(body):
                fail(f"{full}: record at byte {at}: bad data checksum")
                break
            at += 16 + length


def check_train(a):
    ckdir, gold_ck = os.path.join(a.out, "checkpoints"), os.path.join(a.gold, "checkpoints")
    gold = {n: sha(os.path.join(gold_ck, n)) for n in os.listdir(gold_ck)}
    gold_digests = {checkpoint_digest(os.path.join(gold_ck, n)) for n in gold if n != "epoch_latest.pt"}
    before = json.load(open(a.before)) if a.before and os.path.exists(a.before) else {}
    state = {}
    if os.path.isdir(a.out):
        for n in os.listdir(a.out):
            full = os.path.join(a.out, n)
            if is_leftover(n):
                lefts.append(full)
            elif n == "checkpoints" and os.path.isdir(full):
                pass
            elif n == "tensorboard" and os.path.isdir(full):
                check_event_files(full)
            elif not ((n.startswith("out_") and n.endswith(".log")) or (n.startswith("params_") and n.endswith(".txt"))):
                fail(f"unexpected file in the run folder: {full}")
    if os.path.isdir(ckdir):
        for n in sorted(os.listdir(ckdir)):
            full = os.path.join(ckdir, n)
            if is_leftover(n):
                lefts.append(full)
                continue
            if n not in gold:
                fail(f"unexpected file among the checkpoints: {full}")
                continue
            state[n] = sha(full)
            if state[n] == gold[n]:
                counts["new"] += 1
            elif n == "epoch_latest.pt" and not a.final:
                try:
                    ok = checkpoint_digest(full) in gold_digests
                except Exception as e:  # not a readable zip: a torn file
                    fail(f"{full}: unreadable checkpoint ({e})")
                    continue
                if ok:
                    counts["old"] += 1  # an earlier epoch_latest.pt, whole
                else:
                    fail(f"{full}: not the contents of any checkpoint of the uninterrupted run")
            else:
                fail(f"{full}: differs from the uninterrupted run's {n}" + (" (it must be whole and final)" if not a.final else ""))
    for n, digest in before.items():
        if n not in state:
            fail(f"checkpoint {n}, present before the kill, disappeared")
        elif n != "epoch_latest.pt" and state[n] != digest:
            fail(f"checkpoint {n} changed after the kill")
    counts["absent"] = len([n for n in gold if n not in state])
    if a.final and set(state) != set(gold):
        fail(f"after the rerun the checkpoints are {sorted(state)}, not the uninterrupted run's {sorted(gold)}")
    if a.save:
        json.dump(state, open(a.save, "w"))
    report(a.final)


def lmdb_items(path):
    """key -> value of an LMDB folder, read with mdb_dump from a copy (opening an LMDB rewrites its lock file)."""
    if not shutil.which("mdb_dump"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "db")
        shutil.copytree(path, copy)
        text = subprocess.run(["mdb_dump", copy], check=True, capture_output=True, text=True).stdout
    lines = text.split("\n")
    body = lines[lines.index("HEADER=END") + 1:]
    items, i = {}, 0
    while i + 1 < len(body) and body[i] != "DATA=END":
        items[body[i].strip()] = body[i + 1].strip()
        i += 2
    return items


def check_gallery(a):
    manifest = os.path.join(a.out, "index.json")
    if not os.path.isfile(manifest):
        fail("the gallery's index.json disappeared")
        return report(a.final)
    for n in os.listdir(a.out):
        if is_leftover(n):
            lefts.append(os.path.join(a.out, n))
    if a.final or not os.path.exists(os.path.join(a.old, "index.json")):
        choices = [("new", a.new)]
    else:
        choices = [("new", a.new), ("old", a.old)]
    with open(manifest, "rb") as f:
        m = f.read()
    match = [(k, g) for k, g in choices if open(os.path.join(g, "index.json"), "rb").read() == m]
    if not match:
        fail("index.json is neither the old nor the new manifest")
        return report(a.final)
    kind, gold = match[0]
    counts[kind] += 1
    man = json.loads(m)
    n, c, dim = man["count"], man["captions"], man["dim"]

    def prefix(name, size):
        mine, theirs = os.path.join(a.out, name), os.path.join(gold, name)
        if not os.path.exists(mine):
            return fail(f"{name} is missing")
        data, ref = open(mine, "rb").read(), open(theirs, "rb").read()
        if a.final and data != ref:
            return fail(f"{name} differs from the uninterrupted run's")
        if data[:size] != ref[:size] or len(ref) != size:
            fail(f"{name}: the {size} bytes the manifest counts differ from the {kind} gallery's")

    def line_prefix(name, lines):
        ref = open(os.path.join(gold, name), "rb").read()
        cut = sum(len(l) for l in ref.splitlines(keepends=True)[:lines])
        prefix(name, cut)

    line_prefix("image_ids.jsonl", n)
    prefix("image_features.f32", n * dim * 4)
    line_prefix("captions.jsonl", c)
    prefix("caption_features.f32", c * dim * 4)
    thumbs, gold_thumbs = os.path.join(a.out, "thumbnails"), os.path.join(gold, "thumbnails")
    if not os.path.isdir(thumbs):
        fail("thumbnails/ is missing")
    elif not (a.final and same(thumbs, gold_thumbs)):
        mine, ref = lmdb_items(thumbs), lmdb_items(gold_thumbs)
        if mine is None:
            print("NOTE: mdb_dump not installed: thumbnails compared by bytes only")
            if a.final:
                fail("thumbnails/ differs from the uninterrupted run's (bytes; mdb_dump missing for a logical check)")
        else:
            from binascii import hexlify
            keys = {hexlify(str(r).encode()).decode() for r in range(n)}
            if any(mine.get(k) != ref.get(k) for k in keys) or not keys <= set(ref):
                fail(f"thumbnails: the {n} rows the manifest counts differ from the {kind} gallery's")
            elif a.final:
                if mine != ref:
                    fail("thumbnails/ holds other entries than the uninterrupted run's")
                else:
                    counts["logical"] += 1  # same entries, other page layout
    expected = {"index.json", "image_ids.jsonl", "image_features.f32", "captions.jsonl", "caption_features.f32",
                "thumbnails", "approximate.faiss"}
    for name in os.listdir(a.out):
        if name not in expected and not is_leftover(name):
            fail(f"unexpected file in the gallery: {name}")
    report(a.final)


def protobuf_fields(data, path):
    """Walks a protobuf message's top-level fields to its last byte (a torn ONNX file ends inside one); raises on a
    malformed field, which `validate` reports as unreadable."""
    at, count = 0, 0

    def varint():
        nonlocal at
        value, shift = 0, 0
        while True:
            if at >= len(data):
                raise ValueError(f"truncated varint at byte {at}")
            b = data[at]
            at += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    while at < len(data):
        key = varint()
        wire = key & 7
        if wire == 0:
            varint()
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        elif wire == 2:
            length = varint()  # not `at += varint()`: that adds to the value `at` had before the varint was read
            at += length
        else:
            raise ValueError(f"wire type {wire} at byte {at}")
        count += 1
    if at != len(data) or count == 0:
        fail(f"{path}: a field runs past the end of the file")


def validate(a):
    """Reads back every file of a golden output by its format, so byte equality with it means a valid output."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(a.out):
        if os.path.basename(dirpath) in ("imgs", "pairs", "thumbnails") and "data.mdb" in filenames:
            if shutil.which("mdb_dump") and not lmdb_items(dirpath):
                fail(f"{dirpath}: empty or unreadable LMDB")
            n += 1
            continue
        for f in filenames:
            full, n = os.path.join(dirpath, f), n + 1
            try:
                if f.endswith(".jsonl"):
                    for line in open(full, encoding="utf-8"):
                        json.loads(line)
                elif f.endswith(".json"):
                    json.load(open(full, encoding="utf-8"))
                elif f.endswith(".tsv"):
                    import base64
                    for line in open(full, encoding="utf-8"):
                        key, b64 = line.rstrip("\n").split("\t")
                        base64.b64decode(b64 + "=" * (-len(b64) % 4), altchars=b"-_" if "-" in b64 or "_" in b64 else None, validate=True)
                elif f.endswith(".pt"):
                    with zipfile.ZipFile(full) as z:
                        bad = z.testzip()
                        if bad:
                            fail(f"{full}: bad CRC in {bad}")
                elif f.endswith(".safetensors"):
                    with open(full, "rb") as fh:
                        size = int.from_bytes(fh.read(8), "little")
                        header = json.loads(fh.read(size))
                        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
                        if os.path.getsize(full) != 8 + size + end:
                            fail(f"{full}: size does not match its header")
                elif f.endswith(".onnx"):
                    protobuf_fields(open(full, "rb").read(), full)
                elif f.endswith(".f32"):
                    if os.path.getsize(full) % 4:
                        fail(f"{full}: not a whole number of floats")
            except Exception as e:
                fail(f"{full}: unreadable ({type(e).__name__}: {e})")
    counts["new"] = n
    report(False)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["units", "train", "gallery", "validate"])
    p.add_argument("--out", required=True)
    p.add_argument("--new")
    p.add_argument("--old")
    p.add_argument("--gold")
    p.add_argument("--units", default="")
    p.add_argument("--keep")
    p.add_argument("--before")
    p.add_argument("--save")
    p.add_argument("--ignore")
    p.add_argument("--final", action="store_true")
    p.add_argument("--strict-leftovers", action="store_true")
    a = p.parse_args()
    global STRICT_LEFTOVERS
    STRICT_LEFTOVERS = a.strict_leftovers
    {"units": check_units, "train": check_train, "gallery": check_gallery, "validate": validate}[a.mode](a)


if __name__ == "__main__":
    main()
