"""Project options: KEY=VALUE parsing, typing, choices, required checks, merging, staging."""

from __future__ import annotations

import collections

import pytest

from microtvm_tasks.errors import OptionError
from microtvm_tasks.options import (
    Layer,
    check_required,
    coerce_options,
    earliest_stage,
    merge_options,
    normalize_options,
    options_for_method,
    parse_kv,
    resolve,
)

# The wire form (server_info_query result), as a TVM template reports it.
OPTS = [
    {"name": "verbose", "type": "bool", "default": False, "choices": None,
     "required": None, "optional": ["generate_project", "build"], "help": "Verbose output."},
    {"name": "project_type", "type": "str", "choices": ["host_driven", "aot_standalone_demo"],
     "default": None, "required": ["generate_project"], "optional": None, "help": "Type."},
    {"name": "board", "type": None, "choices": None, "default": None,
     "required": ["generate_project", "build", "flash", "open_transport"], "optional": None,
     "help": "Board."},
    {"name": "stack_size", "type": "int", "choices": None, "default": 2048,
     "required": None, "optional": ["build"], "help": "Stack."},
    {"name": "port", "type": "str", "choices": None, "default": None,
     "required": None, "optional": ["open_transport", "flash"], "help": "Serial port."},
    {"name": "level", "type": "int", "choices": [1, 2, 3], "default": 1,
     "required": None, "optional": ["generate_project"], "help": "Level."},
]
W = "-o on the command line"


def test_parse_kv():
    assert parse_kv(["a=1", "b=x=y", "a=2", "c="], W) == {"a": "2", "b": "x=y", "c": ""}
    assert parse_kv(None, W) == {}
    with pytest.raises(OptionError, match="not of the form KEY=VALUE") as ei:
        parse_kv(["verbose"], W)
    assert W in str(ei.value)
    with pytest.raises(OptionError, match="empty name"):
        parse_kv(["=3"], W)


@pytest.mark.parametrize("text, value", [
    ("true", True), ("TRUE", True), ("1", True), ("Yes", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False),
])
def test_bool_from_strings(text, value):
    assert coerce_options({"verbose": text}, OPTS, where=W) == {"verbose": value}


def test_bool_from_yaml_and_errors():
    assert coerce_options({"verbose": True}, OPTS, where=W)["verbose"] is True
    assert coerce_options({"verbose": 0}, OPTS, where=W)["verbose"] is False
    with pytest.raises(OptionError, match="must be a bool") as ei:
        coerce_options({"verbose": "maybe"}, OPTS, where="projects.yaml:12 project sine_host")
    assert "projects.yaml:12 project sine_host" in str(ei.value) and "'verbose'" in str(ei.value)
    with pytest.raises(OptionError, match="must be a bool"):
        coerce_options({"verbose": 2}, OPTS, where=W)


def test_int():
    assert coerce_options({"stack_size": "4096"}, OPTS, where=W) == {"stack_size": 4096}
    assert coerce_options({"stack_size": "0x1000"}, OPTS, where=W) == {"stack_size": 4096}
    assert coerce_options({"stack_size": 8192}, OPTS, where=W) == {"stack_size": 8192}
    for bad in ("4k", "", True, 1.5, "1.0"):
        with pytest.raises(OptionError, match="'stack_size'.*must be an int") as ei:
            coerce_options({"stack_size": bad}, OPTS, where=W)
        assert W in str(ei.value)


def test_str_and_none_type():
    assert coerce_options({"board": "mps2_an385"}, OPTS, where=W) == {"board": "mps2_an385"}
    assert coerce_options({"port": ["a", "b"]}, OPTS, where=W) == {"port": ["a", "b"]}
    with pytest.raises(OptionError, match="must be a string.*quote it"):
        coerce_options({"board": 1234}, OPTS, where="projects.yaml:3")


def test_choices():
    assert coerce_options({"project_type": "host_driven"}, OPTS, where=W)["project_type"] == "host_driven"
    with pytest.raises(OptionError) as ei:
        coerce_options({"project_type": "hosted"}, OPTS, where=W)
    msg = str(ei.value)
    assert "'hosted' is not one of the allowed values: host_driven, aot_standalone_demo" in msg
    assert W in msg
    assert coerce_options({"level": "2"}, OPTS, where=W) == {"level": 2}
    with pytest.raises(OptionError, match="allowed values: 1, 2, 3"):
        coerce_options({"level": "4"}, OPTS, where=W)


def test_bool_choices_as_tvm_wrote_them():
    # Older TVM templates declared bool options with choices (True, False).
    opts = [{"name": "v", "type": "bool", "choices": [True, False], "optional": ["build"]}]
    assert coerce_options({"v": "false"}, opts, where=W) == {"v": False}


def test_unknown_option_lists_known():
    with pytest.raises(OptionError) as ei:
        coerce_options({"bord": "x"}, OPTS, where=W)
    msg = str(ei.value)
    assert "unknown option 'bord'" in msg and W in msg
    assert "board, level, port, project_type, stack_size, verbose" in msg


def test_none_values_dropped():
    assert coerce_options({"board": None, "verbose": "1"}, OPTS, where=W) == {"verbose": True}


def test_namedtuple_project_options():
    PO = collections.namedtuple("ProjectOption", "name choices default type required optional help")
    opts = [PO("x", None, None, "int", None, ["build"], "h")]
    assert coerce_options({"x": "3"}, opts, where=W) == {"x": 3}
    assert normalize_options(opts)["x"]["required"] == []


def test_check_required():
    check_required({"board": "b", "project_type": "host_driven"}, OPTS, "generate_project", W)
    check_required({"board": "b"}, OPTS, "build", W)
    with pytest.raises(OptionError) as ei:
        check_required({}, OPTS, "generate_project", "projects.yaml:7 project sine_host")
    msg = str(ei.value)
    assert "missing required options 'project_type', 'board' for generate_project" in msg
    assert "projects.yaml:7 project sine_host" in msg
    assert "-o project_type=host_driven|aot_standalone_demo" in msg and "-o board=VALUE" in msg
    with pytest.raises(OptionError, match="missing required option 'board' for flash.*-o board=VALUE"):
        check_required({"project_type": "host_driven"}, OPTS, "flash", W)


def test_merge_precedence():
    defaults = {"verbose": False, "stack_size": 2048}
    yaml_layer = {"verbose": True, "board": "a"}
    state = {"board": "b", "port": None}
    cli = {"stack_size": 4096}
    assert merge_options(defaults, None, yaml_layer, state, cli) == {
        "verbose": True, "stack_size": 4096, "board": "b",
    }
    assert merge_options() == {}


def test_options_for_method():
    opts = {"verbose": True, "project_type": "host_driven", "board": "b", "stack_size": 1, "port": "p"}
    assert options_for_method(opts, OPTS, "generate_project") == {
        "verbose": True, "project_type": "host_driven", "board": "b"}
    assert options_for_method(opts, OPTS, "flash") == {"board": "b", "port": "p"}
    assert options_for_method({"board": "b"}, OPTS, "build", with_defaults=True) == {
        "verbose": False, "board": "b", "stack_size": 2048}


def test_earliest_stage():
    assert earliest_stage("verbose", OPTS) == "generate_project"
    assert earliest_stage("stack_size", OPTS) == "build"
    assert earliest_stage("port", OPTS) == "flash"
    opts = OPTS + [{"name": "baud", "type": "int", "optional": ["open_transport"]},
                   {"name": "odd", "type": "str", "optional": ["server_info_query"]}]
    assert earliest_stage("baud", opts) == "open_transport"
    assert earliest_stage("odd", opts) == "generate_project"
    with pytest.raises(OptionError, match="unknown option 'nope'"):
        earliest_stage("nope", OPTS)


def test_resolve_merges_types_checks_and_filters_for_the_method():
    info = {"project_options": OPTS}
    remembered = Layer({"board": "b1", "project_type": "host_driven", "level": 2, "gone": 1}, ".tvmc.json",
                       typed=True)  # names the template no longer declares are dropped
    cli = Layer({"stack_size": "0x100", "port": "/dev/ttyX"}, W)
    assert resolve("build", remembered, cli, server_info=info) == {"board": "b1", "stack_size": 256,
                                                                   "verbose": False}
    assert resolve("flash", remembered, cli, server_info=info) == {"board": "b1", "port": "/dev/ttyX"}
    assert resolve("generate_project", {"board": "b2", "project_type": "host_driven"}, server_info=OPTS) == {
        "board": "b2", "project_type": "host_driven", "verbose": False, "level": 1}
    with pytest.raises(OptionError, match=r"option 'level' \(projects.yaml\)"):
        resolve("generate_project", remembered, Layer({"level": 9}, "projects.yaml"), server_info=info)
    with pytest.raises(OptionError, match="missing required option 'board' for build \\(-o here\\)"):
        resolve("build", None, {"stack_size": 1}, server_info=info, where="-o here")
