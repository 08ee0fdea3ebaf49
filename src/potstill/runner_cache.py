"""The teacher-output cache steps of a Runner: whether a transfer caches, where, and building,
checking and opening the cache (potstill.cache does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from potstill.cache import CacheJob, TeacherCache, build, cache_folder, make_job
from potstill.engine import distributed
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.recipe import ModelSpec
from potstill.schemes.base import SCHEMES
from potstill.schemes.offline import tapped


def text_layer_cache_error(layers: list[str]) -> PotstillError:
    return PotstillError(
        f"distill.cache: teacher layers are compared here ({', '.join(layers[:3])}), and text batches differ in "
        "length, so those layers cannot be cached per sample; set distill.cache.enabled: auto (the teacher runs "
        "online for layer losses) or use logit losses with the cache"
    )


class CacheSteps:
    """Mixed into Runner, whose recipe, run, bench and reporter these methods use."""

    def teacher_cache(self, teacher: nn.Module, terms: list[WeightedTerm], own: str | None = None,
                      architecture: ModelSpec | None = None) -> TeacherCache | None:
        """Build (or finish, or check) the teacher-output cache of one transfer and open it. The
        recipe's teacher uses distill.cache.path; another teacher (an assistant, an earlier
        generation) gets teacher_cache_<own> in the run folder."""
        spec = self.recipe.distill.cache
        if not self.cache_wanted(terms):
            return None
        folder = cache_folder(spec, self.run.path) if own is None else self.run.path / f"teacher_cache_{own}"
        job = self.cache_job(teacher, terms, folder, architecture)
        distributed.on_main(lambda: self.build_cache(job))  # under torchrun rank 0 builds, every rank reads
        cache = TeacherCache(job.folder, self.bench.device, spec.load, fingerprint=job.fingerprint)
        info = cache.describe()
        self.reporter.message(
            f"cache  {job.folder}: {info['samples']} samples x {info['views']} views, "
            f"{sum(info['bytes']['per_sample_view'].values())} B per sample-view, "
            f"{info['bytes']['total'] / 2**20:.1f} MiB, read from {info['load']}"
        )
        return cache

    def cache_wanted(self, terms: list[WeightedTerm]) -> bool:
        """enabled: auto caches exactly where the cache changes nothing but the cost: every view of
        a sample is the plain image and the terms need only the teacher's logits."""
        enabled, data = self.recipe.distill.cache.enabled, self.recipe.data
        if enabled != "auto":
            return enabled
        if not SCHEMES.get(self.recipe.scheme.name).cache:  # e.g. gkd: the teacher scores sequences made in training
            return False
        if self.bench.splits.task == "causal_lm":  # V logits per token: cached only when asked (top-k keeps it small)
            return False
        return not (data.hflip or data.crop_padding) and not tapped(terms, "teacher")

    def cache_job(self, teacher: nn.Module, terms: list[WeightedTerm], folder: Path, architecture: ModelSpec | None = None) -> CacheJob:
        taps = tapped(terms, "teacher")
        if taps and self.bench.splits.modality == "text":
            raise text_layer_cache_error(taps)
        if taps and not self.recipe.distill.cache.features:
            raise PotstillError(
                f"distill.cache: the loss terms compare teacher layers ({', '.join(taps)}); set distill.cache.features: true "
                "to cache those layers too, or distill.cache.enabled: false to run the teacher online"
            )
        return make_job(self.recipe, self.bench, teacher, taps, folder, architecture)

    def build_cache(self, job: CacheJob, rebuild: bool = False) -> dict[str, Any]:
        return build(job, rebuild, progress=self.reporter.message, on_shard=lambda shard: self.reporter.message(f"cache: shard {shard} written"))
