"""What the user reads: counts with the right plural, progress bars in logs, and paths not found (the close one named)."""

from pathlib import Path

import numpy as np
import pytest

from dfine.text import counted


def test_counted_is_singular_only_for_one():
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1, "box", "boxes") == "1 box" and counted(3, "box", "boxes") == "3 boxes"
    assert counted(1, "category", "categories") == "1 category" and counted(0, "class", "classes") == "0 classes"


@pytest.mark.parametrize("leave", [True, False])
def test_a_progress_bar_into_a_log_ends_its_line_once(leave):
    """Into a file or pipe a bar ends as one line with its final count: a bar a terminal erases
    (``leave=False``, the evaluation's) left '\\r' and a line of spaces in a training log (a walk)."""
    import io

    from dfine.text import progress_bar
    log = io.StringIO()
    for _ in progress_bar(iterable=range(3), desc="eval", leave=leave, file=log, mininterval=0):
        pass
    print("next line", file=log)
    text = log.getvalue()
    assert text.count("3/3") == 1, repr(text)
    last = text.split("\n")[-3].split("\r")[-1]
    assert last.startswith("eval: 100%") and "3/3" in last and text.endswith("\nnext line\n"), repr(text)
    assert "   \r" not in text and not last.endswith(" "), repr(text)


def test_a_progress_bar_into_a_log_draws_few_frames():
    """Into a pipe, tqdm drew a frame every 0.1 s: a walk's log of predict on 171 images held one line of
    43 frames. A log gets its first frame, one per half minute at most, and the last."""
    import io
    import time

    from dfine.text import progress_bar
    log = io.StringIO()
    for _ in progress_bar(iterable=range(20), desc="predict", file=log):
        time.sleep(0.02)
    frames = log.getvalue().split("\n")[0].split("\r")
    assert len([f for f in frames if f]) <= 3 and "20/20" in frames[-1], frames


def test_a_missing_best_stg2_names_the_weights_beside_it(tmp_path, capsys):
    """A walk copied the README's ``best_stg2.pth`` after a short run that wrote only best_stg1.pth:
    the error names what the run folder holds and why best_stg2 can be missing."""
    from dfine.cli import main
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pth", "best_stg1.pth", "best_stg1.onnx", "log.jsonl"):
        (run / name).write_bytes(b"x")
    assert main(["export", "-r", str(run / "best_stg2.pth"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: checkpoint {run / 'best_stg2.pth'} not found; {run} holds best_stg1.onnx, best_stg1.pth, "
                   f"last.pth (a run writes best_stg2 only when an evaluation after its stage 1 beats stage 1's best "
                   f"AP; the run's last lines name its best weights)")
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["predict", str(tmp_path / "a.jpg"), "-m", str(run / "model.onnx"), "-o", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: model file {run / 'model.onnx'} not found; {run} holds best_stg1.onnx, best_stg1.pth, last.pth"
    (run / "best_stg2.pth").write_bytes(b"x")  # its weights there, the export not made (a walk)
    assert main(["predict", str(tmp_path / "a.jpg"), "-m", str(run / "best_stg2.xml"), "-o", str(tmp_path / "p")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"best_stg2.pth, last.pth: export it first (dfine export -r {run / 'best_stg2.pth'} --format openvino)")
    assert main(["export", "-r", str(tmp_path / "nowhere" / "m.pth")]) == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint {tmp_path / 'nowhere' / 'm.pth'} not found"


def test_a_path_not_found_names_the_close_one(tmp_path, capsys, monkeypatch):
    """``dfine data check dino_fixd`` said "annotation file dino_fixd not found; set ann_file to a
    COCO-format JSON file" (a walk: config words for a mistyped folder); now the folder meant, when one
    is close, as for --data, predict's source and data.yml for data.yaml."""
    from dfine.cli import main
    (tmp_path / "dino_fixed").mkdir()
    (tmp_path / "dino_fixed" / "data.yaml").write_text("names: [a]\n")
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rbc").mkdir()
    cases = [(["data", "check", "dino_fixd"], "error: dataset dino_fixd not found; did you mean dino_fixed?"),
             (["data", "check", "dino_fixed/data.yml"],
              f"error: dataset dino_fixed/data.yml not found; did you mean {Path('dino_fixed/data.yaml')}?"),
             (["data", "check", "rcb"], "error: dataset rcb not found; did you mean rbc?"),  # a walk's transposition
             (["train", "--data", "dino_fixd", "--model", "dfine_n"],
              "error: --data dino_fixd not found; did you mean dino_fixed?"),
             (["predict", "photo", "-m", "m.onnx"], "error: source photo not found; did you mean photos?"),
             (["data", "check", "elsewhere"], "error: dataset elsewhere not found")]
    for argv, said in cases:
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == said


def test_eval_of_a_missing_data_folder_is_said_before_the_checkpoint_is_read(tmp_path, capsys, monkeypatch):
    """``dfine eval -r best.pth --data nosuchdir`` loaded the checkpoint first (its model line printed,
    3.6 s) and then said the folder was missing (a walk)."""
    import dfine.checkpoint
    from dfine.cli import main
    read = []
    monkeypatch.setattr(dfine.checkpoint, "read_checkpoint", lambda *a, **k: read.append(a) or {})
    (tmp_path / "best.pth").write_bytes(b"x")
    (tmp_path / "fruits").mkdir()
    assert main(["eval", "-r", str(tmp_path / "best.pth"), "--data", str(tmp_path / "fruit")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --data {tmp_path / 'fruit'} not found; did you mean "
                                               f"{tmp_path / 'fruits'}?")
    assert read == []


def test_a_best_score_left_out_never_reads_as_the_threshold_it_missed():
    """A walk's Detector(conf=0.15) printed 'no detection above conf 0.15 (the best score 0.15)': 0.1496 at two
    decimals. Digits are added until the score reads below the threshold."""
    from dfine.commands.predict import nothing_found_note
    from dfine.inference import Detections
    from dfine.text import score_below
    assert [score_below(s, 0.15) for s in (0.12, 0.1496, 0.14999, 0.15)] == ["0.12", "0.1496", "0.14999", "0.15000"]
    none = Detections(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int64),
                      names=[], category_ids=np.zeros(0, np.int64), image_size=(64, 48), conf=0.15, top_below=0.1496)
    assert none.none_found() == "no detection above conf 0.15 (the best score 0.1496)"
    assert nothing_found_note(0.5, 0.4996, "1 image") == ("note: no detection scored above --conf 0.5 in 1 image "
                                                          "(highest score 0.4996); try --conf 0.49 to see it")
