"""The TensorBoard and MLflow copies of metrics.jsonl (logging section, potstill.tracking): read
back, they hold the same numbers at the same epochs, once each, also across kill and resume; a
failing sink costs no training."""

from __future__ import annotations

import json
import os

import pytest

from potstill import config
from potstill.cli.main import main
from potstill.engine import loop
from potstill.engine.run import RunDir
from potstill.engine.stamp import recipe_changes, recipe_stamp
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.tracking.mlflow_sink import MlflowSink, mlflow_calls
from potstill.tracking.records import flat_record, flat_settings, numbers
from potstill.tracking.tensorboard_sink import TensorBoardSink
from tests.conftest import Recorder, tiny_recipe, write_recipe

pytest.importorskip("tensorboard", reason="pip install 'potstill[tracking]'")
pytest.importorskip("mlflow", reason="pip install 'potstill[tracking]'")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tracked_recipe(**changes) -> dict:
    recipe = tiny_recipe(**{"train__epochs": 4, "logging": {"tensorboard": True, "mlflow": {}}, **changes})
    recipe["report"]["latency_repeats"] = 1
    return recipe


def run(folder, recipe_data, resume=False, reporter=None):
    recipe = config.validate(recipe_data, Recipe)
    run_dir = RunDir(folder)
    run_dir.create(resume=resume)
    if not resume:
        (folder / "recipe.yaml").write_text(config.dump_yaml(config.to_dict(recipe)))
    try:
        return Runner(recipe, run_dir, reporter or Recorder(), resume=resume).run_distill()
    finally:
        run_dir.close()


def records(folder) -> list[dict]:
    return RunDir(folder).records()


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] of the event files in one folder."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_run(folder):
    state = json.loads((folder / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    return client, client.get_run(state["run_id"])


def history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def assert_tensorboard_equals_log(folder) -> None:
    """Every stage's folder: each number of each record at its epoch, once; nothing else."""
    by_stage: dict[str, list[dict]] = {}
    for record in records(folder):
        by_stage.setdefault(record["stage"], []).append(record)
    for stage, stage_records in by_stage.items():
        found = scalars(folder / "tensorboard" / stage)
        expected: dict[str, list[tuple[int, float]]] = {}
        for record in stage_records:
            for tag, value in numbers(flat_record(record)).items():
                expected.setdefault(tag, []).append((record["epoch"], value))
        assert found.keys() == expected.keys(), stage
        for tag, points in expected.items():
            assert [step for step, _ in found[tag]] == [step for step, _ in points], (stage, tag)
            assert [value for _, value in found[tag]] == pytest.approx([value for _, value in points], rel=1e-6), (stage, tag)


def assert_mlflow_equals_log(folder) -> None:
    client, mlflow = mlflow_run(folder)
    for record in records(folder):
        for name, value in numbers(flat_record(record)).items():
            points = [point for point in history(client, mlflow.info.run_id, f"{record['stage']}/{name}") if point[0] == record["epoch"]]
            assert points == [(record["epoch"], value)], (record["stage"], record["epoch"], name)


def test_tensorboard_holds_the_numbers_of_metrics_jsonl(tmp_path):
    summary = run(tmp_path / "run", tracked_recipe())
    assert_tensorboard_equals_log(tmp_path / "run")
    student = scalars(tmp_path / "run" / "tensorboard" / "student")
    last = records(tmp_path / "run")[-1]
    assert last["stage"] == "student" and last["epoch"] == 4
    # the names, spelled out once: weighted terms as recorded, their weights, the unweighted loss
    assert student["loss"][-1] == (4, pytest.approx(last["loss"], rel=1e-6))
    assert student["weighted/kd"][-1][1] == pytest.approx(last["terms"]["kd"], rel=1e-6)
    assert student["weight/kd"][-1][1] == pytest.approx(last["weights"]["kd"], rel=1e-6)
    assert student["term/kd"][-1][1] == pytest.approx(last["terms"]["kd"] / last["weights"]["kd"], rel=1e-6)
    assert student["test_acc"][-1][1] == pytest.approx(last["test_acc"], rel=1e-6)
    root = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    root.Reload()
    assert "recipe/text_summary" in root.Tags()["tensors"]
    final = scalars(tmp_path / "run" / "tensorboard")
    for row in summary["models"]:
        assert final[f"final/{row['role']}/test_acc"] == [(0, pytest.approx(row["test_acc"], rel=1e-6))]
        assert final[f"final/{row['role']}/params"] == [(0, row["params"])]


def test_mlflow_run_holds_the_numbers_params_and_results(tmp_path):
    summary = run(tmp_path / "run", tracked_recipe())
    assert_mlflow_equals_log(tmp_path / "run")
    client, mlflow = mlflow_run(tmp_path / "run")
    assert mlflow.info.status == "FINISHED" and mlflow.info.run_name == "run"
    assert client.get_experiment(mlflow.info.experiment_id).name == "tiny"  # the recipe's name
    assert mlflow.data.params["distill.temperature"] == "4.0" and mlflow.data.params["train.epochs"] == "4"
    assert mlflow.data.metrics["final/student/test_acc"] == summary["models"][2]["test_acc"]
    assert mlflow.data.metrics["final/distillation_gain_points"] == summary["distillation_gain_points"]
    assert not (tmp_path / "mlruns").exists()  # nothing outside the run folder


def test_mlflow_goes_to_the_named_store_and_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    run(tmp_path / "run", tracked_recipe(logging={"mlflow": {"tracking_uri": uri, "experiment": "kd-study"}}))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("kd-study")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == json.loads((tmp_path / "run" / "mlflow.json").read_text())["run_id"]
    assert not (tmp_path / "run" / "mlflow.db").exists() and not (tmp_path / "run" / "tensorboard").exists()


def interrupt_when(monkeypatch, target, name, stage, epoch):
    """Patch `target.name` to raise KeyboardInterrupt on `stage` epoch `epoch` (once)."""
    original = getattr(target, name)

    def patched(*args, **kwargs):
        record = args[-1] if name == "add" else kwargs.get("header", args[-1])
        if record.get("stage") == stage and record.get("epoch", record.get("epochs_done")) == epoch:
            monkeypatch.setattr(target, name, original)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, patched)


def test_killed_after_the_checkpoint_before_the_copy_then_resumed(tmp_path, monkeypatch):
    """Epoch 2 is checkpointed but reaches neither sink: the resumed run adds it, and each epoch is there once."""
    interrupt_when(monkeypatch, TensorBoardSink, "add", "student", 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", tracked_recipe())
    client, mlflow = mlflow_run(tmp_path / "run")
    assert mlflow.info.status == "KILLED"
    assert [step for step, _ in history(client, mlflow.info.run_id, "student/loss")] == [1]
    run(tmp_path / "run", tracked_recipe(), resume=True)
    assert [r["epoch"] for r in records(tmp_path / "run") if r["stage"] == "student"] == [1, 2, 3, 4]
    assert_tensorboard_equals_log(tmp_path / "run")
    assert_mlflow_equals_log(tmp_path / "run")
    client, resumed = mlflow_run(tmp_path / "run")
    assert resumed.info.run_id == mlflow.info.run_id and resumed.info.status == "FINISHED"
    assert [step for step, _ in history(client, mlflow.info.run_id, "student/loss")] == [1, 2, 3, 4]
    assert len(list((tmp_path / "run" / "tensorboard" / "student").glob("events.out.tfevents.*"))) == 1


def test_killed_before_the_checkpoint_the_redone_epoch_is_there_once(tmp_path, monkeypatch):
    """Epoch 3 is in metrics.jsonl but not checkpointed, so the resumed run redoes it: no sink saw the first try."""
    interrupt_when(monkeypatch, loop, "save_training_state", "student", 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", tracked_recipe())
    assert [r["epoch"] for r in records(tmp_path / "run") if r["stage"] == "student"] == [1, 2, 3]
    assert [step for step, _ in scalars(tmp_path / "run" / "tensorboard" / "student")["loss"]] == [1, 2]
    run(tmp_path / "run", tracked_recipe(), resume=True)
    assert_tensorboard_equals_log(tmp_path / "run")
    assert_mlflow_equals_log(tmp_path / "run")
    client, mlflow = mlflow_run(tmp_path / "run")
    assert [step for step, _ in history(client, mlflow.info.run_id, "student/loss")] == [1, 2, 3, 4]


def test_a_failing_mlflow_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    calls = []

    def server_gone(self, record):
        calls.append(record["epoch"])
        raise ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch")

    monkeypatch.setattr(MlflowSink, "add", server_gone)
    reporter = Recorder()
    summary = run(tmp_path / "run", tracked_recipe(), reporter=reporter)
    warnings = [line for line in reporter.lines if line.startswith("warning: mlflow")]
    assert len(warnings) == 1 and "Max retries exceeded" in warnings[0] and "metrics.jsonl" in warnings[0]
    assert calls == [1]  # dropped after the first failure: no retry each epoch
    assert summary["models"][2]["role"] == "student" and (tmp_path / "run" / "summary.json").is_file()
    assert len(records(tmp_path / "run")) == 2 + 4 + 4  # teacher, baseline, student: every epoch logged
    assert_tensorboard_equals_log(tmp_path / "run")  # the other sink is unaffected
    _, mlflow = mlflow_run(tmp_path / "run")
    assert mlflow.info.status == "FAILED"


def test_without_a_logging_section_nothing_but_metrics_jsonl(tmp_path):
    run(tmp_path / "run", tiny_recipe(train__epochs=1))
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "mlflow.json").exists()


def test_runs_made_before_the_logging_section_still_resume():
    """check_resume compares stamps: an old stamp lacks `logging`, which must read as the default."""
    current = recipe_stamp(config.validate(tiny_recipe(), Recipe))["recipe"]
    old = {key: value for key, value in current.items() if key != "logging"}
    assert recipe_changes(old, current) == []


def test_records_flatten_to_the_shared_names():
    record = {"stage": "student", "epoch": 3, "loss": 1.5, "terms": {"ce": 0.5, "kd": 1.0, "fitnet": 0.0},
              "weights": {"ce": 0.5, "kd": 0.25, "fitnet": 0.0}, "lr": 0.01, "train_acc": None, "warnings": ["a", "b"]}
    flat = flat_record(record)
    assert flat == {"stage": "student", "epoch": 3, "loss": 1.5, "weighted/ce": 0.5, "weighted/kd": 1.0, "weighted/fitnet": 0.0,
                    "term/ce": 1.0, "term/kd": 4.0, "weight/ce": 0.5, "weight/kd": 0.25, "weight/fitnet": 0.0,
                    "lr": 0.01, "train_acc": None, "warnings": "a; b"}
    assert "train_acc" not in numbers(flat) and "stage" not in numbers(flat) and numbers(flat)["term/kd"] == 4.0
    assert flat_settings({"a": {"b": [1, {"c": None}], "d": {}}, "e": "x", "f": True}) == {
        "a.b.0": "1", "a.b.1.c": "null", "a.d": "{}", "e": "x", "f": "true"}


def test_train_alone_is_tracked_too(tmp_path):
    recipe = write_recipe(tmp_path, tiny_recipe())
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet", "--set", "logging.tensorboard=true"]) == 0
    assert [path.name for path in (tmp_path / "run" / "tensorboard").iterdir() if path.is_dir()] == ["teacher"]
    assert_tensorboard_equals_log(tmp_path / "run")


def test_mlflow_gives_up_on_a_silent_server_in_about_a_minute_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # the user's choice
    with mlflow_calls(retries=3, timeout_s=30):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
