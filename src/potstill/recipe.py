"""The recipe schema: every key a YAML recipe may hold, its type, default and meaning.

These dataclasses are also the engine's configuration objects, so the Python API and the CLI
share one definition. `potstill.config.validate` checks a YAML mapping against them strictly and
`docs/recipes.md` is generated from the `help` texts here (`python -m potstill.cli.docs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from potstill.recipe_fields import (  # noqa: F401 - re-exported: the schema's building blocks
    REQUIRED, SEED_MAX, EPOCHS_MAX, BATCH_MAX, LR_MAX, WEIGHT_DECAY_MAX, LOSS_WEIGHT_MAX, TEMPERATURE_MAX, CROP_PADDING_MAX, ECE_BINS_MAX, LATENCY_BATCH_MAX, LATENCY_REPEATS_MAX, name_problem, option,
)
from potstill.recipe_search import SearchBudgetSpec, SearchParamSpec, SearchPrunerSpec, SearchSpec  # noqa: F401
from potstill.recipe_logging import LoggingSpec, MlflowSpec  # noqa: F401


@dataclass
class DataSpec:
    name: str = option("digits", "registered dataset (`potstill list datasets`)")
    root: Optional[str] = option(None, "folder holding the dataset's files; null = the dataset's default location")
    args: dict[str, Any] = option(help="extra arguments of the dataset builder (e.g. synthetic's num_samples)", factory=dict)
    val_fraction: float = option(0.0, "fraction of the training split held out for validation (stratified)", min=0.0, max=0.9)
    test_fraction: float = option(0.2, "fraction held out as test when the dataset has no official test split", min=0.05, max=0.9)
    train_size: Optional[int] = option(None, "train on a random subset of this many images (null = all)", min=1)
    test_size: Optional[int] = option(None, "evaluate on a random subset of this many test images (null = all; quick runs only)", min=1)
    split_seed: int = option(
        0, "seed of the held-out splits and subset (fixed across run seeds so all seeds share one test set)", min=0, max=SEED_MAX
    )
    batch_size: int = option(128, "training batch size", min=1, max=BATCH_MAX)
    eval_batch_size: int = option(1000, "batch size for evaluation", min=1, max=BATCH_MAX)
    hflip: bool = option(False, "random horizontal flip of training images (p = 0.5), done on the batch")
    crop_padding: int = option(0, "random crop after zero padding by this many pixels (0 = off)", min=0, max=CROP_PADDING_MAX)
    train_data: Literal["dataset", "none"] = option(
        "dataset", "dataset: train on the training split; none: no training images at all, only the test split is read "
        "(a data-free scheme, dafl, dfad or deep_inversion, with a teacher checkpoint; docs/data-free.md)"
    )

    def check(self) -> list[str]:
        return name_problem("name", self.name)


@dataclass
class NormaliseSpec:
    mean: list[float] = option(REQUIRED, "per-channel mean subtracted from the raw inputs (one value per channel, or one for all)")
    std: list[float] = option(REQUIRED, "per-channel std the inputs are divided by (positive)", min=1e-12)

    def check(self) -> list[str]:
        if not self.mean or len(self.mean) != len(self.std):
            return [f"std: give as many values as mean ({len(self.mean)}), one per channel"]
        return []


PREPROCESS_HELP = (
    "the input preprocessing this model expects, saved with its weights and applied by whatever loads them: "
    "none (raw inputs: uint8 images scaled to [0, 1], float data as given), dataset (mean/std of the training split), "
    "{mean: [...], std: [...]} (e.g. ImageNet's), or auto: dataset for a model trained in this run, and for a "
    "checkpoint what its file records (none when it records nothing, so a teacher trained elsewhere sees raw inputs)"
)


@dataclass
class InitSpec:
    source: Literal["teacher"] = option(
        "teacher", "whose weights the student starts from: the recipe's teacher (trained or loaded first); the student "
        "alone (baseline) starts from the same weights, so the report separates initialisation from distillation"
    )
    layers: Optional[list[int]] = option(
        None, "the teacher block each student block copies, 0-based (DistilBERT: [0, 2, 4] of 6); null = evenly spaced", min=0
    )
    method: Literal["select", "copy"] = option(
        "select", "select: weight selection, evenly spaced elements in every dimension for a narrower student (Xu et al., "
        "arXiv 2311.18823); copy: layer selection only, shapes must match"
    )
    container: Optional[str] = option(None, "the module holding the blocks (e.g. bert.encoder.layer); null = found by structure")


@dataclass
class PruneSpec:
    amount: float = option(
        REQUIRED, "fraction removed, strictly between 0 and 1: structured, of each prunable layer's channels/neurons "
        "(the classifier keeps its outputs); unstructured, of each prunable layer's weights (set to zero)", min=0.0, max=1.0,
    )
    method: Literal["structured", "unstructured"] = option(
        "structured", "structured: channels and neurons are removed (torch-pruning's dependency graph, L2 magnitude), so "
        "parameters and latency drop; unstructured: the smallest-magnitude weights of each layer are zeroed and stay "
        "zero while training (same shapes, so no latency saved on dense kernels)"
    )
    source: str = option(
        "teacher", "the trained weights pruned: teacher (the recipe's, trained or loaded first; its architecture must "
        "equal the student's), or a .safetensors file or run folder (as teacher.checkpoint reads) of the student's architecture"
    )

    def check(self) -> list[str]:
        problems = name_problem("source", self.source)
        if not 0.0 < self.amount < 1.0:
            problems.append(f"amount: {self.amount} removes {'nothing' if self.amount <= 0 else 'everything'}; "
                            "give a fraction strictly between 0 and 1, e.g. 0.5")
        return problems


@dataclass
class QuantizeSpec:
    """Quantization-aware distillation (Polino et al. 2018; Mishra & Marr 2017): int8 fake quantization while training."""

    deploy: Literal["dynamic", "static"] = option(
        "dynamic", "how the trained student becomes the int8 ONNX Runtime model timed after the run: dynamic (activation "
        "ranges per batch, close to the per-token ranges simulated in training) or static (ranges calibrated on "
        "training batches)"
    )


@dataclass
class ModelSpec:
    name: str = option(REQUIRED, "registered model (`potstill list models`)")
    args: dict[str, Any] = option(help="keyword arguments of the model builder, checked against its signature", factory=dict)
    preprocess: Union[Literal["auto", "none", "dataset"], NormaliseSpec] = option("auto", PREPROCESS_HELP)
    input: str = option(
        "input", "the batch field this model reads: input (the data's images), or teacher_input of a paired dataset "
        "(cross-modal distillation: the teacher sees another modality of each sample than the student; docs/cross-modal.md)"
    )
    init: Optional[InitSpec] = option(None, "student only: start from the teacher's weights (layer and weight selection); null = random")
    prune: Optional[PruneSpec] = option(
        None, "student only: start from a trained model of the same architecture, pruned (docs/compression.md); null = no pruning"
    )
    quantize: Optional[QuantizeSpec] = option(
        None, "student only: quantization-aware training of its linear layers (int8, torchao), then an int8 ONNX Runtime "
        "model, checked and timed (docs/compression.md); null = fp32"
    )

    def check(self) -> list[str]:
        problems = name_problem("name", self.name) + name_problem("input", self.input)
        if self.input in ("target", "index", "view"):
            problems.append(f"input: `{self.input}` is a batch's bookkeeping, not a model input; give input or teacher_input")
        if self.init is not None and self.prune is not None:
            problems.append("prune: a pruned student starts from the pruned source's weights, so init has nothing to do; "
                            "remove init or prune")
        return problems


@dataclass
class TrainSpec:
    epochs: int = option(10, "number of epochs", min=1, max=EPOCHS_MAX)
    optimizer: Literal["sgd", "adam", "adamw"] = option("adamw", "optimizer")
    lr: float = option(2e-3, "peak learning rate", min=0.0, max=LR_MAX)
    weight_decay: float = option(5e-4, "weight decay", min=0.0, max=WEIGHT_DECAY_MAX)
    momentum: float = option(0.9, "SGD momentum (sgd only)", min=0.0, max=1.0)
    scheduler: Literal["onecycle", "cosine", "multistep", "constant"] = option(
        "onecycle", "learning-rate schedule, stepped every batch (multistep: every epoch)"
    )
    milestones: list[int] = option(help="epochs at which multistep multiplies the lr by gamma", factory=list)
    gamma: float = option(0.1, "multistep decay factor (above 1 the lr would grow)", min=0.0, max=1.0)
    grad_clip: Optional[float] = option(None, "clip the gradient norm to this value (null = off)", min=0.0)
    label_smoothing: float = option(0.0, "label smoothing of the hard-label cross-entropy", min=0.0, max=1.0)

    def check(self) -> list[str]:
        problems = []
        if self.scheduler == "multistep" and not self.milestones:
            problems.append("milestones: multistep needs a list of epochs, e.g. [30, 60]")
        if any(m < 1 or m >= self.epochs for m in self.milestones):
            problems.append(f"milestones: every milestone must lie in 1..{self.epochs - 1}")
        if self.grad_clip == 0:
            problems.append("grad_clip: 0 would zero every gradient; give a positive norm, or null for no clipping")
        return problems


@dataclass
class TeacherSpec:
    model: ModelSpec = option(REQUIRED, "the teacher architecture")
    checkpoint: Optional[str] = option(
        None, "teacher weights: a .safetensors file or a `potstill train` run folder; null = train it in this run"
    )
    train: TrainSpec = option(help="how to pre-train the teacher (phase 1) when no checkpoint is given", factory=TrainSpec)


@dataclass
class ScheduleSpec:
    warmup_epochs: float = option(0.0, "raise the distillation weight linearly from 0 over this many epochs", min=0.0, max=EPOCHS_MAX)
    decay: Literal["none", "linear", "cosine"] = option("none", "after warm-up, decay the weight towards final_factor")
    final_factor: float = option(0.0, "weight factor reached at the end of a decay", min=0.0, max=1.0)
    stop_epoch: Optional[int] = option(
        None, "switch the distillation term off from this epoch (0-based) on: early-stopped KD (Cho & Hariharan 2019)",
        min=0, max=EPOCHS_MAX,
    )


@dataclass
class PairSpec:
    student: str = option(REQUIRED, "student module name (`potstill list taps MODEL`); suffix :input taps its input")
    teacher: str = option(REQUIRED, "teacher module name paired with it")

    def check(self) -> list[str]:
        return name_problem("student", self.student) + name_problem("teacher", self.teacher)


Pairs = Union[Literal["auto", "stages", "last_stage", "middle_stage", "embedding"], list[PairSpec]]
PAIRS_HELP = (
    "layers the loss compares: a list of {student, teacher} module names, or auto (the loss's own choice: "
    "stages, last_stage, middle_stage or embedding, paired by relative depth and printed at start-up)"
)


@dataclass
class TermSpec:
    loss: str = option(REQUIRED, "registered distillation loss (`potstill list losses`)")
    weight: Optional[float] = option(None, "weight of this term; null = the loss's paper default", min=0.0, max=LOSS_WEIGHT_MAX)
    temperature: Optional[float] = option(
        None, "softmax temperature for losses that take one; null = the loss's default", min=1e-6, max=TEMPERATURE_MAX
    )
    args: dict[str, Any] = option(help="other constructor arguments of the loss, checked against its signature", factory=dict)
    schedule: ScheduleSpec = option(help="how the weight changes over epochs", factory=ScheduleSpec)
    pairs: Pairs = option("auto", PAIRS_HELP)
    stages: list[Literal["init", "main"]] = option(
        help="stages the term is used in: main (distillation) and/or init (feature initialisation, distill.init_epochs)",
        factory=lambda: ["main"],
    )

    def check(self) -> list[str]:
        problems = name_problem("loss", self.loss)
        return problems if self.stages else problems + ["stages: give at least one of init, main"]


@dataclass
class CacheSpec:
    enabled: Union[bool, Literal["auto"]] = option(
        "auto", "run the teacher once over the training set and reuse its outputs (distillation at about student-alone cost); "
        "auto = on where that changes nothing: a frozen teacher, no random augmentation, logit-only losses",
    )
    path: Optional[str] = option(None, "cache folder; null = teacher_cache inside the run folder")
    views: int = option(
        1, "augmented views cached per sample (with data.hflip / crop_padding; view 0 is the plain image, so 1 = no augmentation); "
        "more views = less overfitting to a fixed teacher, more build time",
        min=1, max=255,
    )
    view_seed: int = option(0, "seed of the fixed bank of views (view 0 is always the plain image)", min=0, max=SEED_MAX)
    top_k: Optional[int] = option(None, "store only the k largest logits per view (+ one fill value); null = all logits", min=1)
    features: bool = option(False, "also cache the teacher layers the loss terms tap (feature and relation losses)")
    dtype: Literal["float16", "float32"] = option("float16", "storage type of cached logits and features")
    shard_size: int = option(8192, "samples per shard file", min=1)
    workers: int = option(1, "processes that build shards in parallel (one CPU thread each when > 1)", min=1)
    load: Literal["auto", "memory", "mmap"] = option(
        "auto", "memory: load the whole cache onto the training device; mmap: read rows from memory-mapped shards; auto: memory up to 2 GiB"
    )


@dataclass
class DistillSpec:
    loss: Optional[str] = option("kd", "registered distillation loss (`potstill list losses`); null = only `terms`")
    temperature: Optional[float] = option(
        None, "softmax temperature T for losses that take one; null = the loss's paper default (kd: 4)", min=1e-6, max=TEMPERATURE_MAX
    )
    alpha: float = option(0.5, "weight of the hard-label cross-entropy", min=0.0, max=LOSS_WEIGHT_MAX)
    beta: Optional[float] = option(0.5, "weight of the distillation loss; null = the loss's paper default", min=0.0, max=LOSS_WEIGHT_MAX)
    loss_args: dict[str, Any] = option(help="other constructor arguments of the loss, checked against its signature", factory=dict)
    schedule: ScheduleSpec = option(help="how beta changes over epochs", factory=ScheduleSpec)
    pairs: Pairs = option("auto", PAIRS_HELP + " (feature and relation losses)")
    terms: list[TermSpec] = option(
        help="more loss terms, each with its own weight, schedule and layer pairs, added to `loss`", factory=list
    )
    adapters: bool = option(True, "learn a projection where paired student and teacher features differ in shape; false = error")
    layer_map: Union[Literal["uniform", "last"], list[int]] = option(
        "uniform", "transformer losses over several layers (tinybert_hidden, tinybert_attention): which teacher layer each "
        "student layer learns from: uniform (TinyBERT's g(m) = m*N/M), last (the teacher's top layers), or a list of "
        "0-based teacher layers, one per student layer; printed at start-up with the pairs",
    )
    init_epochs: int = option(
        0, "feature initialisation first (FitNets stage 1, AB, FSP): train the student on the terms with stages [init] alone",
        min=0, max=EPOCHS_MAX,
    )
    baseline: bool = option(True, "also train the same student alone (same budget and seed) to measure the gain")
    teacher_check: Literal["refuse", "warn", "off"] = option(
        "refuse", "before distilling, measure the teacher on the test split; near chance or clearly below the student "
        "alone (likely wrong preprocessing, checkpoint or class order): refuse, or warn and go on, or skip the check"
    )
    cache: CacheSpec = option(help="teacher-output cache (`potstill cache build`): the teacher runs once, not every epoch", factory=CacheSpec)

    def check(self) -> list[str]:
        problems = name_problem("loss", self.loss)
        has_init = any("init" in term.stages for term in self.terms)
        if self.init_epochs > 0 and not has_init:
            problems.append("init_epochs: no term has stages [init]; add one, e.g. terms: [{loss: fitnet, stages: [init]}]")
        if has_init and self.init_epochs == 0:
            problems.append("terms: a term has stages [init] but init_epochs is 0; set init_epochs")
        return problems


@dataclass
class SchemeSpec:
    name: str = option(
        "offline", "who teaches whom (`potstill list schemes`): offline, online, collaborative, byot, born_again, "
        "snapshot, multi_teacher, assistant"
    )
    args: dict[str, Any] = option(help="hyperparameters of the scheme, checked against its constructor's signature and types", factory=dict)
    peers: list[ModelSpec] = option(help="online, collaborative: the models that learn beside the student (the student is peer 0)", factory=list)
    teachers: list[TeacherSpec] = option(help="multi_teacher: the teachers, each with a checkpoint or its own training (replaces `teacher`)", factory=list)
    assistants: list[ModelSpec] = option(help="assistant: teacher assistants, largest first; the chain is teacher -> assistants -> student", factory=list)


@dataclass
class RefineSpec:
    epochs: int = option(
        0, "phase 3: fine-tune the distilled student on hard labels for this many epochs (0 = skip)", min=0, max=EPOCHS_MAX
    )
    lr: float = option(2e-4, "refinement learning rate (cosine-annealed)", min=0.0, max=LR_MAX)


@dataclass
class ReportSpec:
    latency_batch_size: int = option(
        128, "the larger batch size CPU inference is timed at (batch 1 is always timed too)", min=1, max=LATENCY_BATCH_MAX
    )
    latency_repeats: int = option(
        20, "timed rounds per batch size, every model once per round, interleaved (after 3 warm-up rounds)",
        min=1, max=LATENCY_REPEATS_MAX,
    )
    ece_bins: int = option(15, "bins of the expected calibration error", min=1, max=ECE_BINS_MAX)


@dataclass
class EngineSpec:
    precision: Literal["fp32", "bf16"] = option("fp32", "bf16: autocast training steps (and the online teacher) to bfloat16, on CPU or GPU")
    channels_last: bool = option(False, "channels-last memory format for models and batches (faster convolutions on many CPUs and GPUs)")
    compile: bool = option(False, "torch.compile the student and the online teacher (first steps slower while compiling)")


@dataclass
class Recipe:
    name: str = option(REQUIRED, "run name; the run folder is output_dir/name unless --run-dir is given")
    seed: int = option(0, "seed of model initialisation, shuffling, augmentation and dropout", min=0, max=SEED_MAX)
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "where to train; auto = cuda when available")
    output_dir: str = option("runs", "folder that holds run folders")
    data: DataSpec = option(help="the dataset", factory=DataSpec)
    teacher: Optional[TeacherSpec] = option(None, "the teacher (required by `potstill train` and `potstill distill`)")
    student: Optional[ModelSpec] = option(None, "the student architecture (required by `potstill distill`)")
    train: TrainSpec = option(help="the student's training budget, shared by the distilled and the baseline student", factory=TrainSpec)
    distill: DistillSpec = option(help="phase 2: knowledge transfer", factory=DistillSpec)
    scheme: Union[str, SchemeSpec] = option(
        help="who teaches whom: a scheme name (`scheme: online`) or a section with its args and models", factory=SchemeSpec
    )
    refine: RefineSpec = option(help="phase 3: optional refinement on hard labels", factory=RefineSpec)
    report: ReportSpec = option(help="what the summary measures", factory=ReportSpec)
    engine: EngineSpec = option(help="speed settings; none changes what is computed beyond floating-point rounding", factory=EngineSpec)
    search: Optional[SearchSpec] = option(None, "`potstill search` only: the student search space, budget and trials; ignored by train and distill")
    logging: Optional[LoggingSpec] = option(
        None, "copies of every epoch's metrics in TensorBoard and MLflow, beside metrics.jsonl (docs/tracking.md); "
        "null = metrics.jsonl only"
    )

    def __post_init__(self) -> None:
        if isinstance(self.scheme, str):  # the shorthand `scheme: online`
            self.scheme = SchemeSpec(name=self.scheme)

    def check(self) -> list[str]:
        # the scheme's name is checked here, where both forms (`scheme: NAME` and a section) arrive
        problems = name_problem("name", self.name, folder=True) + name_problem("scheme.name", self.scheme.name)
        # sequence-level KD passes its knowledge in the teacher's sequences: cross-entropy alone is the method
        if self.distill.loss is None and not self.distill.terms and self.scheme.name != "seq_kd":
            problems.append("distill.loss: null leaves no distillation term; name a loss or add terms")
        return problems + self.cache_problems()

    def cache_problems(self) -> list[str]:
        cache, data = self.distill.cache, self.data
        if cache.views > 1 and cache.enabled is not True:
            return ["distill.cache.views: more than one view needs distill.cache.enabled: true (auto caches only unaugmented data)"]
        if cache.views > 1 and not (data.hflip or data.crop_padding):
            return [
                f"distill.cache.views: {cache.views} views, but data has no random augmentation (hflip, crop_padding), "
                "so every view is the same image; set views: 1 or turn augmentation on"
            ]
        return []
