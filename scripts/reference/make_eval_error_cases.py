"""Writes Tests/Fixtures/eval-errors/cases.json: what the reference evaluation scripts write for malformed inputs.

Run with the reference environment: `python make_eval_error_cases.py OUT_DIR`. Each case runs
`cn_clip.eval.evaluation` or `evaluation_tr` on a small ground truth and prediction file and keeps the bytes
of the output JSON and the printed lines, so the Swift port can be checked against them byte for byte.
"""
import contextlib, io, json, os, random, runpy, sys, tempfile

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
rng = random.Random(7)
work = tempfile.mkdtemp()

def line(obj):
    return json.dumps(obj) + "\n"

def run(script, gt, pred):
    gt_path = os.path.join(work, "gt.jsonl"); pred_path = os.path.join(work, "pred.jsonl"); out = os.path.join(work, "out.json")
    for p in (gt_path, pred_path, out):
        if os.path.exists(p): os.remove(p)
    if gt is not None: open(gt_path, "wb").write(gt.encode("utf-8") if isinstance(gt, str) else gt)
    if pred is not None: open(pred_path, "wb").write(pred.encode("utf-8") if isinstance(pred, str) else pred)
    sys.argv = [script, gt_path, pred_path, out]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_module("cn_clip.eval." + script, run_name="__main__")
    stdout = buf.getvalue().replace(gt_path, "GT").replace(pred_path, "PRED")
    return open(out, "rb").read().decode("utf-8"), stdout

def gt_t2i(ids, n_img=3):
    return "".join(line({"text_id": t, "text": "查询", "image_ids": [100 + (t * 7) % 50 + j for j in range(n_img)]}) for t in ids)

def gt_i2t(ids):
    return "".join(line({"image_id": i, "text_ids": [1000 + (i * 3) % 40 + j for j in range(2)]}) for i in ids)

def preds(ids, key_q, key_p, n=10, first=100):
    return "".join(line({key_q: q, key_p: list(range(first, first + n))}) for q in ids)

cases = []
def case(name, script, gt, pred):
    output, stdout = run(script, gt, pred)
    cases.append({"name": name, "script": script, "gt": gt if isinstance(gt, str) or gt is None else gt.decode("latin-1"),
                  "gt_bytes_latin1": isinstance(gt, bytes), "pred": pred if isinstance(pred, str) or pred is None else pred.decode("latin-1"),
                  "pred_bytes_latin1": isinstance(pred, bytes), "output": output, "stdout": stdout})

Q = [1, 2, 3]
good = preds(Q, "text_id", "image_ids")
T, I = "evaluation", "evaluation_tr"
case("success", T, gt_t2i(Q), good)
case("bad_json", T, gt_t2i(Q), good + '{"text_id": 4, "image_ids": [1,\n')
case("empty_line", T, gt_t2i(Q), preds([1], "text_id", "image_ids") + "\n" + preds([2, 3], "text_id", "image_ids"))
case("bad_json_non_ascii", T, gt_t2i(Q), '{"text_id": "查询\u00e9\U0001F600\t" ,,}\n')
case("missing_text_id", T, gt_t2i(Q), line({"image_ids": list(range(10))}))
case("text_id_string_first_line", T, gt_t2i(Q), line({"text_id": "1", "image_ids": list(range(10))}))
case("text_id_string_later_line", T, gt_t2i(Q), preds([2], "text_id", "image_ids") + line({"text_id": "1", "image_ids": list(range(10))}))
case("text_id_float_later_line", T, gt_t2i(Q), preds([3], "text_id", "image_ids") + line({"text_id": 1.0, "image_ids": list(range(10))}))
case("missing_image_ids", T, gt_t2i(Q), line({"text_id": 1, "images": []}))
case("image_ids_not_list", T, gt_t2i(Q), line({"text_id": 1, "image_ids": "1,2,3"}))
case("too_few", T, gt_t2i(Q), line({"text_id": 2, "image_ids": list(range(9))}))
case("too_many", T, gt_t2i(Q), line({"text_id": 2, "image_ids": list(range(11))}))
case("string_prediction", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [1, 2, "3", 4, 5, 6, 7, 8, 9, 10]}))
case("float_prediction", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [1, 2, 3, 4, 5.0, 6, 7, 8, 9, 10]}))
case("null_prediction", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, None]}))
case("list_prediction", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [[1, "a"], 2, 3, 4, 5, 6, 7, 8, 9, 10]}))
case("duplicate_prediction", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1]}))
case("missing_queries", T, gt_t2i(Q), preds([2], "text_id", "image_ids"))
case("unknown_and_repeated_queries_are_ignored", T, gt_t2i(Q), good + preds([99, 2], "text_id", "image_ids", first=101))
case("json_array_line", T, gt_t2i(Q), "[1, 2]\n")
case("json_number_line", T, gt_t2i(Q), "5\n")
case("json_null_line", T, gt_t2i(Q), "null\n")
case("json_string_line", T, gt_t2i(Q), '"abc"\n')
case("crlf_and_spaces", T, gt_t2i(Q), good.replace("\n", "  \r\n"))
case("invalid_utf8", T, gt_t2i(Q), good.encode() + b'{"text_id": 9, "x": "\xff"}\n')
case("prediction_file_missing", T, gt_t2i(Q), None)
case("gt_file_missing", T, None, good)
case("nan_and_infinity_are_json", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, float("nan")]}))
case("bool_is_an_int", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [True, 2, 3, 4, 5, 6, 7, 8, 9, 10]}) + preds([1, 3], "text_id", "image_ids"))
case("bool_duplicates_one", T, gt_t2i(Q), line({"text_id": 2, "image_ids": [True, 1, 3, 4, 5, 6, 7, 8, 9, 10]}))
# which ids are missing, in the order a Python set lists them
for n_ref, n_pred, spread in ((40, 30, 1), (500, 100, 1), (500, 480, 1), (300, 10, 1), (2000, 1700, 1), (200, 150, 1_000_003), (60, 20, -7)):
    ids = [200000 + spread * k for k in range(n_ref)] if spread != -7 else [rng.randint(-10**12, 10**12) for _ in range(n_ref)]
    rng.shuffle(ids)
    have = rng.sample(ids, n_pred)
    case(f"missing_{n_ref}_{n_pred}_{spread}", T, gt_t2i(ids, 1), preds(have, "text_id", "image_ids"))

Qi = [5, 6, 7]
good_i = preds(Qi, "image_id", "text_ids", first=1000)
case("tr_success", I, gt_i2t(Qi), good_i)
case("tr_bad_json", I, gt_i2t(Qi), "{oops}\n")
case("tr_missing_image_id", I, gt_i2t(Qi), line({"text_ids": list(range(10))}))
case("tr_image_id_string_first_line", I, gt_i2t(Qi), line({"image_id": "5", "text_ids": list(range(10))}))
case("tr_image_id_dict", I, gt_i2t(Qi), line({"image_id": {"a": [1, "b'\"c"]}, "text_ids": list(range(10))}))
case("tr_missing_text_ids", I, gt_i2t(Qi), line({"image_id": 5}))
case("tr_text_ids_not_list", I, gt_i2t(Qi), line({"image_id": 5, "text_ids": {"a": 1}}))
case("tr_wrong_count", I, gt_i2t(Qi), line({"image_id": 6, "text_ids": [1, 2, 3]}))
case("tr_string_prediction", I, gt_i2t(Qi), line({"image_id": 6, "text_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, "十"]}))
case("tr_duplicate_prediction", I, gt_i2t(Qi), line({"image_id": 6, "text_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 9]}))
case("tr_missing_images", I, gt_i2t(list(range(50))), preds(list(range(0, 50, 3)), "image_id", "text_ids"))
# A null id is hashable in Python: the ground truth accepts it, the prediction check then rejects it.
null_gt = line({"text_id": None, "text": "查询", "image_ids": [100]}) + gt_t2i([2])
case("gt_null_text_id_first_prediction", T, null_gt, line({"text_id": None, "image_ids": list(range(10))}) + preds([2], "text_id", "image_ids"))
case("gt_null_text_id_later_prediction", T, null_gt, preds([2], "text_id", "image_ids") + line({"text_id": None, "image_ids": list(range(10))}))
case("tr_gt_null_image_id", I, line({"image_id": None, "text_ids": [1000, 1001]}) + gt_i2t([2]), preds([2, None], "image_id", "text_ids"))
json.dump(cases, open(os.path.join(out_dir, "cases.json"), "w"), ensure_ascii=False, indent=1)
print(len(cases), "cases written to", out_dir)
