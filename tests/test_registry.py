import pytest

from potstill.errors import PotstillError
from potstill.registry import Registry


def make_registry() -> Registry:
    registry = Registry("widget")

    @registry.register("round_widget")
    def round_widget(radius: float = 1.0, colour: str = "red"):
        """A round widget."""
        return ("round", radius, colour)

    return registry


def test_create_passes_keyword_arguments():
    assert make_registry().create("round_widget", radius=2.0) == ("round", 2.0, "red")


def test_duplicate_registration_is_an_error():
    registry = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("round_widget")(lambda: None)


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(PotstillError, match="did you mean 'round_widget'"):
        make_registry().get("rond_widget")


def test_unknown_keyword_suggests_the_nearest_and_lists_accepted():
    with pytest.raises(PotstillError) as error:
        make_registry().create("round_widget", radus=3)
    assert "did you mean 'radius'" in str(error.value)
    assert "accepts: radius, colour" in str(error.value)


def test_names_and_describe():
    registry = make_registry()
    assert registry.names() == ["round_widget"]
    assert registry.describe("round_widget") == "A round widget."
