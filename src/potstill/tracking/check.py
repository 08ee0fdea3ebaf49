"""Checks made before a run folder is written: the packages a recipe's `logging` section needs,
and (from the CLI, for a new run) that its MLflow tracking server answers."""

from __future__ import annotations

import importlib

from potstill.errors import PotstillError
from potstill.recipe_logging import LoggingSpec

INSTALL = "pip install 'potstill[tracking]'"


def require(spec: LoggingSpec | None) -> None:
    """One line naming the install when a requested sink's package is missing."""
    if spec is None:
        return
    needed = [("logging.tensorboard", "tensorboard")] if spec.tensorboard else []
    if spec.mlflow is not None:
        needed.append(("logging.mlflow", "mlflow"))
        if spec.mlflow.tracking_uri is None or spec.mlflow.tracking_uri.startswith("sqlite:"):
            needed += [("logging.mlflow", "sqlalchemy"), ("logging.mlflow", "alembic")]  # MLflow's SQL store
    for key, module in needed:
        try:
            importlib.import_module(module)
        except ImportError as error:
            off = "false" if key == "logging.tensorboard" else "null"
            raise PotstillError(f"{key} needs the {module} package, which is not installed ({error}); "
                                f"{INSTALL} (or, for a new run, set {key}: {off})") from None


def check_tracking(spec: LoggingSpec | None, recipe_name: str, reach: bool) -> None:
    """`require`, and with `reach` (a new run) that a tracking_uri the recipe names answers, so a
    wrong address stops the run before anything is written rather than leaving it untracked."""
    require(spec)
    if not reach or spec is None or spec.mlflow is None or spec.mlflow.tracking_uri is None:
        return
    from potstill.tracking.mlflow_sink import experiment_id, import_mlflow, mlflow_calls

    MlflowClient, _, _ = import_mlflow()
    uri = spec.mlflow.tracking_uri
    try:
        with mlflow_calls(retries=1, timeout_s=10):  # a server that is down is reported in seconds
            experiment_id(MlflowClient(tracking_uri=uri), spec.mlflow.experiment or recipe_name, None)
    except Exception as error:  # MLflow raises many types (connection, permission, bad URI)
        raise PotstillError(f"logging.mlflow.tracking_uri: cannot use {uri} ({error_words(error)}); start the server "
                            "or correct the URI (nothing was written)") from None


def error_words(error: Exception, longest: int = 200) -> str:
    """The first line of an error's message, cut to `longest` characters (MLflow's run long)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= longest else first[: longest - 3] + "..."
