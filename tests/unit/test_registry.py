from importlib.metadata import EntryPoint

import pytest

from adapters import BUILTINS, ENTRY_POINT_GROUP, AdapterLoadError, load_registry


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_builtins_load_with_their_names_and_templates() -> None:
    registry = load_registry(plugins=[])
    assert set(registry) == set(BUILTINS)
    assert "checknothing" in registry["denier"].templates
    assert "quota" in registry["memquota"].templates
    assert "metric" in registry["prometheus"].templates


def test_an_entry_point_plugin_is_added() -> None:
    registry = load_registry(plugins=[ep("sleepy", "tests.plugins.sleepy:INFO")])
    assert registry["sleepy"].name == "sleepy"


def test_a_plugin_that_does_not_import_stops_startup_naming_it() -> None:
    with pytest.raises(
        AdapterLoadError,
        match=r"entry point 'broken' \(no\.such\.module:INFO\) in group 'mixer\.adapters': "
        r"cannot be loaded",
    ):
        load_registry(plugins=[ep("broken", "no.such.module:INFO")])


def test_a_plugin_that_is_not_an_adapter_info_is_refused() -> None:
    with pytest.raises(
        AdapterLoadError,
        match=r"entry point 'bad'.*expected an adapters\.base\.AdapterInfo, "
        r"got function",
    ):
        load_registry(plugins=[ep("bad", "tests.plugins.sleepy:parse_params")])


def test_a_name_clash_is_refused() -> None:
    with pytest.raises(AdapterLoadError, match=r"adapter name 'sleepy' is already registered"):
        load_registry(
            plugins=[
                ep("sleepy", "tests.plugins.sleepy:INFO"),
                ep("again", "tests.plugins.sleepy:INFO"),
            ]
        )
