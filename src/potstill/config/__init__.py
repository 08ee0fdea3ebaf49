"""Recipe files: strict validation against dataclass schemas, `--set` overrides, key reference.

    recipe = load("recipes/kd.yaml", Recipe, overrides=["distill.temperature=2"])
    dump_yaml(to_dict(recipe))             # the resolved recipe, saved beside the checkpoint
    print(reference(Recipe))               # Markdown table of every key

Schema authors: see `validate` for the supported field types, `metadata={"help", "min", "max"}`
and the optional `check(self) -> list[str]` hook.
"""

from potstill.config.files import load, load_yaml_file
from potstill.config.overrides import apply_overrides
from potstill.config.reference import reference
from potstill.config.safe_yaml import dump_yaml, parse_yaml
from potstill.config.validate import to_dict, validate

__all__ = ["apply_overrides", "dump_yaml", "load", "load_yaml_file", "parse_yaml", "reference", "to_dict", "validate"]
