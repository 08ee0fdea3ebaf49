"""Teacher-output cache: the frozen teacher runs once per (sample, view), distillation reads its
outputs back, so a distillation epoch costs about what training the student alone costs."""

from potstill.cache.build import CacheJob, build
from potstill.cache.jobs import cache_folder, make_job
from potstill.cache.reader import TeacherCache

__all__ = ["CacheJob", "TeacherCache", "build", "cache_folder", "make_job"]
