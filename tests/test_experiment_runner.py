"""The experiment runner keeps a cross-validation's finished folds in the repository and puts them back, and keeps
each leave-source-out run's row where the model card reads it."""

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from braintriage import verdicts

ROOT = Path(__file__).resolve().parents[1]


def load_runner(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("experiment_runner", ROOT / "experiments" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    monkeypatch.setattr(runner, "KEPT_FOLDS", tmp_path / "kept")
    monkeypatch.setattr(runner, "KEPT_HOLDOUTS", tmp_path / "holdout")
    return runner


def keep_folds(folder: Path, rows: list[dict], folds: int = 2) -> Path:
    """A cross-validation's folds as experiments/run.py keeps them (experiments/cv/NAME/fold-K.json.gz), each with
    the out-of-fold rows whose "fold" is K."""
    folder.mkdir(parents=True, exist_ok=True)
    for fold in range(1, folds + 1):
        kept = {"config": {"folds": folds}, "fold": {"fold": fold},
                "oof_rows": [r for r in rows if r["fold"] == fold]}
        (folder / f"fold-{fold}.json.gz").write_bytes(gzip.compress(json.dumps(kept).encode()))
    return folder


def test_finished_folds_survive_a_fresh_machine(monkeypatch, tmp_path):
    runner = load_runner(monkeypatch, tmp_path)
    first = tmp_path / "machine-1" / "cv5-x"
    (first / "folds").mkdir(parents=True)
    record = {"fold": {"fold": 1}, "oof_rows": [{"path": "a.jpg", "p_tumor": 0.25}]}
    (first / "folds" / "fold-1.json").write_text(json.dumps(record))
    (first / "folds" / "fold-2.json.4242.tmp").write_text("half written")  # a fold being written is not kept
    runner.keep_folds("cv5-x", first)
    kept = sorted(p.name for p in (tmp_path / "kept" / "cv5-x").iterdir())
    assert kept == ["fold-1.json.gz"]
    fresh = tmp_path / "machine-2" / "cv5-x"
    assert runner.restore_folds("cv5-x", fresh) == 1
    assert json.loads((fresh / "folds" / "fold-1.json").read_text()) == record
    assert runner.restore_folds("cv5-x", fresh) == 0  # already there: left alone
    assert runner.restore_folds("other", fresh) == 0


def test_a_kept_fold_carries_no_timestamp(monkeypatch, tmp_path):
    """Kept again on another day, the same fold gives the same bytes, so git sees no change."""
    runner = load_runner(monkeypatch, tmp_path)
    run_dir = tmp_path / "runs" / "cv"
    (run_dir / "folds").mkdir(parents=True)
    (run_dir / "folds" / "fold-1.json").write_text('{"fold": 1}')
    runner.keep_folds("cv", run_dir)
    kept = (tmp_path / "kept" / "cv" / "fold-1.json.gz").read_bytes()
    assert kept[:2] == b"\x1f\x8b" and kept[4:8] == b"\0\0\0\0"  # gzip header: MTIME is zero


def test_a_kept_holdout_row_names_its_run_in_the_model_card(monkeypatch, tmp_path):
    from braintriage.model_card import leave_source_out_rows

    runner = load_runner(monkeypatch, tmp_path)
    run_dir = tmp_path / "runs" / "lso-br35h-x-s1"
    run_dir.mkdir(parents=True)
    row = {"held_out_source": "br35h", "images": 653, "tumors": 530, "seed": 1,
           "sensitivity": {"value": 0.9, "ci95": [0.87, 0.93]}}
    (run_dir / "holdout.json").write_text(json.dumps(row))
    kept = runner.keep_holdout("lso-br35h-x-s1", run_dir)
    assert kept == tmp_path / "holdout" / "lso-br35h-x-s1" / "holdout.json"
    assert leave_source_out_rows([kept]) == [{"run": "lso-br35h-x-s1", **row}]


def test_kept_held_out_scores_give_the_apps_verdicts_under_other_rules_without_the_model(monkeypatch, tmp_path):
    runner = load_runner(monkeypatch, tmp_path)
    spec = importlib.util.spec_from_file_location("held_out_verdicts", ROOT / "experiments" / "held_out_verdicts.py")
    verdicts_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdicts_script)
    run_dir = tmp_path / "runs" / "lso-x-s0"
    (run_dir / "holdout-evaluation").mkdir(parents=True)
    (run_dir / "holdout.json").write_text("{}")
    predictions = [  # as evaluate.py writes them; the last from before guard_flagged was recorded
        {"path": "yes/a.jpg", "tumor": 1, "tumor_probability": 0.9, "verdict": "tumor_suspected",
         "guard_flagged": False, "guard_ratio": 0.25},
        {"path": "yes/b.jpg", "tumor": 1, "tumor_probability": 0.1, "verdict": "uncertain", "guard_flagged": False,
         "guard_ratio": None},
        {"path": "no/c.jpg", "tumor": 0, "tumor_probability": 0.5, "verdict": "uncertain", "guard_flagged": False},
        {"path": "yes/d.jpg", "tumor": 1, "tumor_probability": 0.95, "verdict": "cannot_assess", "guard_flagged": True},
        {"path": "no/e.jpg", "tumor": 0, "tumor_probability": 0.2, "verdict": "cannot_assess"},
    ]
    (run_dir / "holdout-evaluation" / "metrics.json").write_text(json.dumps({"predictions": predictions}))
    runner.keep_holdout("lso-x-s0", run_dir)
    scores = tmp_path / "holdout" / "lso-x-s0" / "scores.csv.gz"
    rules = {"threshold": 0.6, "uncertain_band": {"low": 0.3, "high": 0.8}}
    outcomes, p, tumor = verdicts_script.verdicts_from_scores(scores, rules)
    assert outcomes.tolist() == ["tumor_suspected", "no_tumor_detected", "uncertain", "cannot_assess",
                                 "cannot_assess"]
    assert p.tolist() == [0.9, 0.1, 0.5, 0.95, 0.2] and tumor.tolist() == [True, True, False, True, False]
    # The guard's score travels with the kept scores where it was recorded (blank, read as NaN, where not).
    from braintriage.evaluate import read_held_out_scores

    ratios = read_held_out_scores(scores)["guard_ratio"]
    assert ratios[0] == 0.25 and np.isnan(ratios[1:]).all()
    # Compared at equal normals: the edge that leaves one normal green is c's score (e, flagged, is shown no
    # verdict), and the tumor b is green under it.
    assert verdicts_script.green_at_equal_normals(outcomes, p, tumor, 1) == (0.5, 1, 1)
    with pytest.raises(SystemExit):
        verdicts_script.green_at_equal_normals(outcomes, p, tumor, 2)
    # Of the tumors another run misses (a second kept run that scores a and b under 0.6, d above it), how many
    # this one finds: a (b it misses too); of those both miss, b, none.
    other_dir = tmp_path / "runs" / "lso-x-s1"
    (other_dir / "holdout-evaluation").mkdir(parents=True)
    (other_dir / "holdout.json").write_text("{}")
    others = [dict(r, tumor_probability=q) for r, q in zip(predictions, (0.1, 0.1, 0.5, 0.9, 0.2))]
    (other_dir / "holdout-evaluation" / "metrics.json").write_text(json.dumps({"predictions": others}))
    runner.keep_holdout("lso-x-s1", other_dir)
    other_scores = tmp_path / "holdout" / "lso-x-s1" / "scores.csv.gz"
    assert verdicts_script.found_of_missed_by_all(scores, [other_scores], 0.6) == (2, 1)
    assert verdicts_script.found_of_missed_by_all(scores, [other_scores, scores], 0.6) == (1, 0)


def test_the_model_card_shows_what_the_app_would_say_for_a_held_out_source_from_its_kept_scores(monkeypatch,
                                                                                                  tmp_path):
    from collections import Counter

    from braintriage.model_card import _held_out_verdict_lines, _unseen_source_lines, held_out_verdicts
    from braintriage.model_card import leave_source_out_rows

    runner = load_runner(monkeypatch, tmp_path)
    run_dir = tmp_path / "runs" / "lso-br35h-x-s0"
    (run_dir / "holdout-evaluation").mkdir(parents=True)
    (run_dir / "holdout.json").write_text(json.dumps({"held_out_source": "br35h", "images": 5, "tumors": 3,
                                                      "guard_validation_normal_ratios": {"90": 0.4, "95": 0.5}}))
    predictions = [
        {"path": "yes/a.jpg", "tumor": 1, "tumor_probability": 0.1, "guard_flagged": False, "guard_ratio": 0.45},
        {"path": "yes/b.jpg", "tumor": 1, "tumor_probability": 0.5, "guard_flagged": False},
        {"path": "yes/c.jpg", "tumor": 1, "tumor_probability": 0.95, "guard_flagged": True},
        {"path": "no/d.jpg", "tumor": 0, "tumor_probability": 0.05, "guard_flagged": False, "guard_ratio": 0.3},
        {"path": "no/e.jpg", "tumor": 0, "tumor_probability": 0.9, "guard_flagged": False},
    ]
    (run_dir / "holdout-evaluation" / "metrics.json").write_text(json.dumps({"predictions": predictions}))
    rows = leave_source_out_rows([runner.keep_holdout("lso-br35h-x-s0", run_dir)])
    classes = ["no_tumor", "glioma", "meningioma", "pituitary"]
    shipped = {"threshold": 0.6, "uncertain_band": {"low": 0.3, "high": 0.8}, "class_names": classes}
    [counted] = held_out_verdicts(rows, shipped)
    assert counted["images"] == {"tumors": 3, "normals": 2}
    assert counted["verdicts"]["tumors"] == Counter(no_tumor_detected=1, uncertain=1, cannot_assess=1)
    assert counted["verdicts"]["normals"] == Counter(no_tumor_detected=1, tumor_suspected=1)
    table = "\n".join(_held_out_verdict_lines([counted]))
    assert ("| `br35h` | lso-br35h-x-s0 | 1 of 3 (33.3%) | 1 of 3 (33.3%) | 0 of 3 (0.0%) | 1 of 3 (33.3%) "
            "| 1 of 2 (50.0%) |") in table
    assert "`br35h` 33.3%" in _unseen_source_lines([counted])[0]
    # Read with a lower edge, the same scores send that tumor to "uncertain": the counts follow the model's rules.
    stricter = {**shipped, "uncertain_band": {"low": 0.05, "high": 0.8}}
    assert "`br35h` 0.0%" in _unseen_source_lines(held_out_verdicts(rows, stricter))[0]
    # A model that reads with the familiarity rule: each run at its own validation normals' score of the same
    # percentile. At 90% (0.4) the tumor scored 0.1 is too unfamiliar (0.45) to be shown clear; at 95% (0.5) not.
    def familiar(percentile):
        return {**shipped, "ood": {"familiar_below": 0.1, "familiar_percentile": percentile}}
    assert "`br35h` 0.0%" in _unseen_source_lines(held_out_verdicts(rows, familiar(90)))[0]
    assert "`br35h` 33.3%" in _unseen_source_lines(held_out_verdicts(rows, familiar(95)))[0]
    assert held_out_verdicts(rows, familiar(90))[0]["verdicts"]["normals"][verdicts.NO_TUMOR_DETECTED] == 1
    without_scores = [{key: value for key, value in rows[0].items() if key != "scores"}]
    assert held_out_verdicts(without_scores, shipped) == []
    assert _held_out_verdict_lines([]) == [] == _unseen_source_lines([])


def test_a_distilled_recipe_learns_from_the_teacher_run_of_its_own_seed_and_a_cv_runs_fold_by_fold(
        monkeypatch, tmp_path):
    runner = load_runner(monkeypatch, tmp_path)
    config = {"name": "lso-student", "sources": ["a"], "holdout_source": "br35h", "seeds": [0, 1],
              "train": {"image_size": 160, "teacher": "runs/lso-teacher-s{seed}/model.safetensors"}}
    runs = runner.runs_of(config)
    assert [(name, c["train"]["teacher"]) for name, c in runs] == [
        ("lso-student-s0", "runs/lso-teacher-s0/model.safetensors"),
        ("lso-student-s1", "runs/lso-teacher-s1/model.safetensors")]
    assert config["train"]["teacher"].endswith("-s{seed}/model.safetensors")  # the config itself unchanged
    cv = {"name": "cv5-student", "sources": ["a"], "folds": 5, "train": {"teacher": "runs/cv5-teacher/folds"}}
    cmd = runner.command(cv, tmp_path / "run", only_fold=2)
    assert cmd[cmd.index("--only-fold") + 1] == "2" and "--resume" not in cmd
    assert "--only-fold" not in runner.command(runs[0][1], tmp_path / "run", only_fold=2)  # not a CV: whole run


def test_a_false_setting_reaches_train_as_its_no_flag(monkeypatch, tmp_path):
    """A config's false setting is passed as --no-FLAG, which every on/off option of `train` accepts: left out,
    a setting whose default is true (--distill-painted) would silently stay on."""
    from click.testing import CliRunner

    from braintriage.cli import app

    runner = load_runner(monkeypatch, tmp_path)
    config = {"name": "x", "sources": ["a"], "train": {"distill_painted": False, "lesion_copies": True,
                                                      "pretrained": False}}
    cmd = runner.command(config, tmp_path / "run")
    assert "--no-distill-painted" in cmd and "--lesion-copies" in cmd and "--no-pretrained" in cmd
    train_help = CliRunner().invoke(app, ["train", "--help"]).output
    for key in ("distill_painted", "lesion_copies", "pretrained", "keep_fold_models", "crop_to_head", "equalize"):
        assert f"--no-{key.replace('_', '-')}" in train_help


def test_a_cvs_kept_folds_give_the_verdicts_of_its_out_of_fold_scores_per_source(tmp_path):
    spec = importlib.util.spec_from_file_location("held_out_verdicts", ROOT / "experiments" / "held_out_verdicts.py")
    verdicts_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdicts_script)
    rows = [{"path": "seed/t1.jpg", "fold": 1, "tumor": 1, "p_tumor": 0.95},
            {"path": "seed/t2.jpg", "fold": 1, "tumor": 1, "p_tumor": 0.1},
            {"path": "br35h/n1.jpg", "fold": 2, "tumor": 0, "p_tumor": 0.5},
            {"path": "br35h/t3.jpg", "fold": 2, "tumor": 1, "p_tumor": 0.2}]
    keep_folds(tmp_path, rows)
    rules = {"threshold": 0.6, "uncertain_band": {"low": 0.15, "high": 0.9}}
    outcomes, tumor, sources = verdicts_script.out_of_fold_verdicts(tmp_path, rules)
    assert outcomes.tolist() == ["tumor_suspected", "no_tumor_detected", "uncertain", "uncertain"]
    assert tumor.tolist() == [True, True, False, True] and sources.tolist() == ["seed", "seed", "br35h", "br35h"]


def test_compare_cv_reads_cvs_part_way_on_the_folds_all_of_them_kept(tmp_path, capsys):
    """`compare_cv.py --kept`: two CVs, one with a fold the other lacks, are read on their common folds only, each
    at the threshold that keeps specificity 0.95 over those folds' normals (here: above the highest normal)."""
    spec = importlib.util.spec_from_file_location("compare_cv", ROOT / "experiments" / "compare_cv.py")
    compare_cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_cv)

    def keep(name: str, scored: list[tuple[int, str, int, float]], folds: int) -> None:
        keep_folds(tmp_path / name, [{"fold": k, "path": p, "tumor": t, "p_tumor": s} for k, p, t, s in scored], folds)

    keep("a", [(1, "seed/n1.jpg", 0, 0.30), (1, "seed/t1.jpg", 1, 0.90),
               (2, "br35h/n2.jpg", 0, 0.10), (2, "br35h/t2.jpg", 1, 0.20)], folds=2)
    keep("b", [(1, "seed/n1.jpg", 0, 0.60), (1, "seed/t1.jpg", 1, 0.95),
               (2, "br35h/n2.jpg", 0, 0.05), (2, "br35h/t2.jpg", 1, 0.70),
               (3, "seed/n3.jpg", 0, 0.99)], folds=3)  # fold 3: only b has it, so it is not read
    compare_cv.part_way(["a", "b"], kept_cvs=tmp_path)
    out = capsys.readouterr().out
    assert out.startswith("folds 1, 2 of each; the same images in each")
    lines = out.splitlines()
    a_line = next(line for line in lines if line.startswith("a ("))
    b_line = next(line for line in lines if line.startswith("b ("))
    assert "pooled sensitivity 0.500 of 2 tumors, specificity 1.000 of 2 normals" in a_line  # t2 (0.20) under 0.30
    assert "pooled sensitivity 1.000 of 2 tumors, specificity 1.000 of 2 normals" in b_line  # n3's 0.99 not read


def test_every_committed_config_still_parses_as_train_arguments(monkeypatch, tmp_path):
    """Each config in experiments/configs is a record that must rerun: its `train` flags (as the runner passes
    them) are ones `train` still takes, with values of the right type, and its file is named for it. A renamed
    or retyped option of `train` breaks an old config here, not hours into a rerun. The teacher and starting
    model paths name other runs' outputs, absent here; they are replaced with existing stand-ins."""
    from braintriage.cli import train

    runner = load_runner(monkeypatch, tmp_path)
    stand_in_file = tmp_path / "model.safetensors"
    stand_in_file.write_bytes(b"")
    configs = sorted((ROOT / "experiments" / "configs").glob("*.json"))
    assert configs
    for path in configs:
        config = json.loads(path.read_text())
        assert config["name"] == path.stem, path.name
        assert config["sources"] and config["adopt_if"], path.name
        for name, run_config in runner.runs_of(config):
            settings = dict(run_config["train"])
            for key in ("teacher", "init_from"):
                if settings.get(key):
                    settings[key] = str(stand_in_file if settings[key].endswith(".safetensors") else tmp_path)
            args = runner.command({**run_config, "train": settings}, tmp_path / name)[4:]  # after "-m braintriage train"
            train.make_context("train", args)  # raises click's UsageError / BadParameter


def test_the_model_card_reads_a_held_out_source_at_the_threshold_chosen_without_it(monkeypatch, tmp_path):
    """Issue 21's reading: a leave-source-out run's kept scores at the threshold the shipping rule takes from a CV
    over the other sources. The CV here (kept folds, as experiments/run.py keeps them) has 20 normals scored
    0.00-0.95, so specificity 0.95 puts the threshold just above the 19th; a CV that held the source is refused."""
    from braintriage.model_card import (_unseen_sensitivity_lines, _without_the_source_lines,
                                        leave_source_out_rows, readings_without_the_source)
    from braintriage.modelfile import ModelFileError

    runner = load_runner(monkeypatch, tmp_path)
    run_dir = tmp_path / "runs" / "lso-br35h-x-s0"
    (run_dir / "holdout-evaluation").mkdir(parents=True)
    (run_dir / "holdout.json").write_text(json.dumps({"held_out_source": "br35h", "images": 6, "tumors": 4}))
    scores = [(1, 0.97), (1, 0.93), (1, 0.85), (1, 0.2), (0, 0.95), (0, 0.1)]
    predictions = [{"path": f"{'yes' if t else 'no'}/{k}.jpg", "tumor": t, "tumor_probability": p,
                    "guard_flagged": False} for k, (t, p) in enumerate(scores)]
    (run_dir / "holdout-evaluation" / "metrics.json").write_text(json.dumps({"predictions": predictions}))
    rows = leave_source_out_rows([runner.keep_holdout("lso-br35h-x-s0", run_dir)])

    def kept_cv(name: str, sources: list[str], shift: float = 0.0) -> Path:  # normals at k / 20 - shift
        oof = [{"path": f"{sources[k % len(sources)]}/n{k}.jpg", "fold": 1 + k % 2, "tumor": 0,
                "p_tumor": k / 20 - shift} for k in range(20)]
        oof += [{"path": f"{sources[0]}/t{k}.jpg", "fold": 1 + k % 2, "tumor": 1, "p_tumor": 0.99} for k in range(10)]
        return keep_folds(tmp_path / name, oof)

    [reading] = readings_without_the_source(rows, [kept_cv("cv-without", ["seed", "figshare"])])
    assert 0.90 < reading["threshold"] <= 0.95
    assert (reading["tumors_found"], reading["tumors"]) == (2, 4)  # 0.97 and 0.93; 0.85 and 0.2 missed
    assert (reading["normals_cleared"], reading["normals"]) == (1, 2)  # the normal at 0.95 is flagged
    table = "\n".join(_without_the_source_lines([reading]))
    assert "| `br35h` | lso-br35h-x-s0 |" in table and "| 2 of 4 (0.500) | 1 of 2 (0.500) |" in table
    assert "`br35h`: `cv-without`" in table
    assert "`br35h` 0.500" in _unseen_sensitivity_lines([reading])[0]
    # A second CV of the recipe (another set-up) chooses its own threshold: read and pooled apart, never mixed.
    first, second = readings_without_the_source(rows, [kept_cv("cv-without", ["seed", "figshare"]),
                                                       kept_cv("cv-lower", ["seed"], shift=0.1)])
    assert second["threshold"] < 0.85 and (second["tumors_found"], second["cv"]) == (3, "cv-lower")
    both = "\n".join(_without_the_source_lines([first, second]))
    assert "| `br35h`, 1 runs pooled | | {:.3f} | 2 of 4 (0.500) |".format(first["threshold"]) in both
    assert "| `br35h`, 1 runs pooled | | {:.3f} | 3 of 4 (0.750) |".format(second["threshold"]) in both
    sentence = _unseen_sensitivity_lines([first, second])[0]
    assert f"`br35h` 0.500 at {first['threshold']:.3f}; `br35h` 0.750 at {second['threshold']:.3f}" in sentence
    assert "at 0." not in _unseen_sensitivity_lines([reading])[0]  # one CV: no threshold to tell apart
    with pytest.raises(ModelFileError, match="every held-out source"):
        readings_without_the_source(rows, [kept_cv("cv-with", ["seed", "br35h"])])
    assert readings_without_the_source(rows, []) == [] and _without_the_source_lines([]) == []


def test_recipes_averaged_are_read_at_the_threshold_of_their_averaged_out_of_fold_scores(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ensemble_holdout", ROOT / "experiments" / "ensemble_holdout.py")
    mean_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mean_script)
    for name, scores, folds in (("a", (0.9, 0.2, 0.4), (1, 1, 2)), ("b", (0.5, 0.6, 0.0), (2, 1, 1))):
        rows = [{"path": f"seed/{i}.jpg", "fold": f, "tumor": int(i != 2), "p_tumor": s}
                for i, (s, f) in enumerate(zip(scores, folds))]
        keep_folds(tmp_path / name, rows)  # the CVs need not share folds: each averaged score is out of fold
    paths, y, p = mean_script.mean_out_of_fold([mean_script.scored_out_of_fold(tmp_path / n) for n in "ab"])
    assert paths.tolist() == ["seed/0.jpg", "seed/1.jpg", "seed/2.jpg"]
    assert y.tolist() == [1, 1, 0] and p == pytest.approx([0.7, 0.4, 0.2])
    mean_script.out_of_fold([tmp_path / "a", tmp_path / "b"])  # the in-distribution reading, per source
    printed = capsys.readouterr().out
    assert "out of fold, a: threshold 0.400\nout of fold, b: threshold 0.000\n" in printed  # each member alone
    assert "out of fold, mean of the two: threshold 0.200, specificity 1.000, sensitivity 1.000" in printed
    assert "  seed: sensitivity 1.000" in printed

    def held_out(name, lines):
        path = tmp_path / f"{name}.csv.gz"
        path.write_bytes(gzip.compress(("path,tumor,p_tumor,guard_flagged,guard_ratio\n" + lines).encode()))
        return path

    first = held_out("s0-a", "yes/y1.jpg,1,0.8,0,0.5\nno/n1.jpg,0,0.1,0,0.5\nyes/y2.jpg,1,0.2,0,\n")
    second = held_out("s0-b", "no/n1.jpg,0,0.5,0,0.5\nyes/y2.jpg,1,0.6,0,0.5\nyes/y1.jpg,1,0.4,0,0.5\n")
    tumor, mean = mean_script.mean_held_out([first, second])  # matched by path, not by row
    assert tumor.tolist() == [False, True, True] and mean == pytest.approx([0.3, 0.6, 0.4])
    assert mean_script.reading(tumor, mean, 0.5, 0.35) == {
        "found": 1, "tumors": 2, "cleared": 1, "normals": 1, "tumors_under": 0, "normals_under": 1}
    with pytest.raises(SystemExit):
        mean_script.mean_held_out([first, held_out("other", "yes/y1.jpg,1,0.8,0,0.5\n")])
