"""The recipe schema: every key a YAML recipe may hold, its type, default and meaning.

These dataclasses are also the engine's configuration objects, so the Python API and the CLI
share one definition. `potstill.config.validate` checks a YAML mapping against them strictly and
`docs/recipes.md` is generated from the `help` texts here (`python -m potstill.cli.docs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

REQUIRED = object()  # marks a key a recipe must set

# Upper bounds: generous, yet far from where a number overflows or allocates absurdly (every
# number is also checked to be finite and every integer to fit in 64 bits, whatever its key).
SEED_MAX = 2**32 - 1  # loaders seed torch generators with seed * 1_000_003 + epoch, which must stay below 2**64
EPOCHS_MAX = 100_000  # the longest published KD runs ("patient" KD, Beyer et al. 2022) take ~10,000 epochs
BATCH_MAX = 1_000_000  # more images than one batch of any dataset potstill reads; bounds one batch's memory
LR_MAX = 10.0  # published peak lrs stay below ~5 (linear scaling: 0.1 x 8192 / 256 = 3.2); 1e300 overflows float32
WEIGHT_DECAY_MAX = 10.0  # usual values are 5e-4 (SGD) to 0.1 (AdamW); lr x decay must not overflow float32
LOSS_WEIGHT_MAX = 1e6  # the largest published loss weight is PKT's 3e4 (CRD benchmark); weight x loss stays finite
TEMPERATURE_MAX = 1000.0  # papers use 1-20; KD scales its loss by T**2, here at most 1e6
CROP_PADDING_MAX = 127  # crop offsets (0..2 x padding) are stored as bytes, so 127 is the most that is drawn correctly
ECE_BINS_MAX = 1000  # calibration papers use 10-20 bins; every bin is one pass over the test logits
LATENCY_BATCH_MAX = 65_536  # the timed CPU batch is allocated at once: 65,536 CIFAR images are 0.8 GB
LATENCY_REPEATS_MAX = 10_000  # 20 already gives a stable mean


def name_problem(key: str, value: str | None, folder: bool = False) -> list[str]:
    """["key: ..."] when a name is empty (or, for a folder name, not one folder); else []."""
    if value is None:
        return []
    if not value.strip():
        return [f"{key}: must not be empty"]
    if folder and (value in (".", "..") or any(char in value for char in "/\\\0")):
        return [f"{key}: {value!r} must be usable as one folder name: no '/', '\\' or NUL, not '.' or '..'"]
    return []


def option(default: Any = None, help: str = "", factory: Any = None, **limits: Any) -> Any:
    """A dataclass field with a help text (shown in docs) and optional min/max limits."""
    metadata = {"help": help, **limits}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if default is REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


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
    init: Optional[InitSpec] = option(None, "student only: start from the teacher's weights (layer and weight selection); null = random")
    prune: Optional[PruneSpec] = option(
        None, "student only: start from a trained model of the same architecture, pruned (docs/compression.md); null = no pruning"
    )
    quantize: Optional[QuantizeSpec] = option(
        None, "student only: quantization-aware training of its linear layers (int8, torchao), then an int8 ONNX Runtime "
        "model, checked and timed (docs/compression.md); null = fp32"
    )

    def check(self) -> list[str]:
        problems = name_problem("name", self.name)
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


SEARCH_TRIALS_MAX = 10_000  # each trial trains a student; more would run for weeks


@dataclass
class SearchParamSpec:
    """One searched recipe key: a list of choices, or a number range (int when low and high are integers)."""

    choices: Optional[list[Any]] = option(None, "the values tried (any YAML values, e.g. lists of widths [[256], [512, 256]])")
    low: Optional[Union[int, float]] = option(None, "smallest value of a range (integers when low, high and step are)")
    high: Optional[Union[int, float]] = option(None, "largest value of a range (inclusive)")
    step: Optional[Union[int, float]] = option(None, "spacing of a range's values; null = any value (1 for integers)", min=0.0)
    log: bool = option(False, "draw a range on a log scale (learning rates, widths); low must be positive")
    depth: Optional[list[int]] = option(
        None, "the key is a list of min..max entries, each drawn from choices or low..high (an MLP's depth and widths)", min=1, max=64
    )

    def check(self) -> list[str]:
        ranged = self.low is not None or self.high is not None
        if (self.choices is None) == (not ranged):
            return ["give either choices: [...] or a range low: ..., high: ..., not both and not neither"]
        if self.choices is not None:
            problems = [] if self.choices else ["choices: give at least one value"]
            if self.step is not None or self.log:
                problems.append("step, log: only for a range (low, high)")
        elif self.low is None or self.high is None:
            return ["a range needs both low and high"]
        else:
            problems = [] if self.low < self.high else [f"high: must be above low ({self.low}), got {self.high}"]
            if self.log and self.low <= 0:
                problems.append(f"log: a log-scale range needs a positive low, got {self.low}")
            if self.log and self.step is not None:
                problems.append("step: a log-scale range takes no step (Optuna draws it continuously)")
            if self.step == 0:
                problems.append("step: must be positive, or null")
        if self.depth is not None and (len(self.depth) != 2 or self.depth[0] > self.depth[1]):
            problems.append(f"depth: give [min, max] with min <= max, got {list(self.depth)}")
        return problems


@dataclass
class SearchBudgetSpec:
    params: Optional[int] = option(None, "most parameters a student may have; null = no limit", min=1)
    latency_ms: Optional[float] = option(
        None, "slowest batch-1 CPU forward pass a student may take, in ms, timed on this machine with its torch threads "
        "(search.latency_repeats rounds, median); null = no limit", min=0.0,
    )


@dataclass
class SearchPrunerSpec:
    enabled: bool = option(True, "stop a trial early when its validation accuracy is hopeless")
    warmup_epochs: int = option(1, "epochs every trial trains before it can be stopped", min=1, max=EPOCHS_MAX)
    min_trials: int = option(2, "finished trials needed at an epoch before others are compared with them there", min=1)
    margin: float = option(
        0.02, "stop a trial whose validation accuracy is this far (0.02 = 2 points) below the median of finished trials "
        "after the same epoch", min=0.0, max=1.0,
    )


@dataclass
class SearchSpec:
    """`potstill search`: student architecture search with distillation as the training objective (docs/compression.md)."""

    space: dict[str, SearchParamSpec] = option(
        help="what is searched (at least one key): recipe keys as --set writes them (student.args.hidden, train.lr), each "
        "with its choices or range; teacher, data (but data.batch_size) and distill.cache keys stay fixed so every trial "
        "learns from the same cached teacher outputs", factory=dict,
    )
    trials: int = option(20, "students trained (each a distill run without baseline); fewer when the space has fewer "
                         "combinations", min=1, max=SEARCH_TRIALS_MAX)
    budget: SearchBudgetSpec = option(help="limits a student must meet; checked before it trains", factory=SearchBudgetSpec)
    objectives: list[Literal["latency_ms", "params"]] = option(
        help="costs minimised beside validation accuracy (maximised); the Pareto front is over all of them",
        factory=lambda: ["latency_ms", "params"],
    )
    objective_split: Literal["val"] = option(
        "val", "the split that selects: validation (needs data.val_fraction > 0); test accuracy is reported, never used to choose"
    )
    sampler: Literal["tpe", "nsga2", "random"] = option(
        "tpe", "Optuna sampler, seeded with the recipe's seed; a space with at most `trials` combinations is tried exhaustively"
    )
    pruner: SearchPrunerSpec = option(help="stopping hopeless trials early", factory=SearchPrunerSpec)
    candidates: int = option(
        64, "architectures measured before any training to check the budget can be met (all of them when the space has "
        "no more)", min=1, max=SEARCH_TRIALS_MAX,
    )
    latency_repeats: int = option(10, "timed batch-1 forward passes per architecture (after 3 warm-up passes)", min=1,
                                  max=LATENCY_REPEATS_MAX)
    storage: Optional[str] = option(
        None, "Optuna storage: a SQLite file or a database URL; null = search.db in the search folder, so a killed "
        "search continues where it stopped"
    )

    def check(self) -> list[str]:
        problems = []
        if len(set(self.objectives)) != len(self.objectives):
            problems.append(f"objectives: each cost at most once, got {self.objectives}")
        return problems + name_problem("storage", self.storage)


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
