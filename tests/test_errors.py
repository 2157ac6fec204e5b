"""Errors in the caller's language (ParamError: Python parameter, emukg's flag, the reference's flag) and the one
resolver's near-miss suggestions."""

from __future__ import annotations

import pytest

from emukg.cli import main
from emukg.config import Config, ConfigError
from emukg.errors import EmukgError, ParamError
from emukg.resolver import Registry, choose, nearest


def test_param_error_spells_the_parameter_for_each_caller():
    e = ParamError("learning_rate", -1.0, "must be a finite number > 0; see {max_steps}.")
    assert str(e) == "learning_rate=-1.0: must be a finite number > 0; see max_steps."
    assert e.render("cli") == "--learning-rate -1.0: must be a finite number > 0; see --max-steps."
    assert e.render("legacy") == "-lr -1.0: must be a finite number > 0; see --max_steps."
    assert e.render("yaml", "base.yaml") == "base.yaml: learning_rate: -1.0: must be a finite number > 0; see max_steps."
    assert isinstance(e, EmukgError) and e.restyle("cli").args[0] == e.render("cli")


def test_flags_braces_and_settings_with_values():
    e = ParamError("save_path", "/r/{a}", "continue with {init_checkpoint} /r/{{a}}; or use {loss=ce,sampler=uniform}.",
                   flags={"init_checkpoint": "--resume"})
    assert str(e) == "save_path='/r/{a}': continue with init_checkpoint /r/{a}; or use loss='ce', sampler='uniform'."
    assert e.render("cli") == "--save-path /r/{a}: continue with --resume /r/{a}; or use --loss ce --sampler uniform."
    assert e.render("legacy") == "-save /r/{a}: continue with -init /r/{a}; or use -if_CE 1."


@pytest.mark.parametrize("given,want", [("RotatEE", "RotatE"), ("transee", "TransE"), ("ComplEks", "ComplEx"),
                                        ("distmul", "DistMult")])
def test_model_near_miss_gets_a_suggestion(given, want):
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(dict(dataset="x", model=given))
    assert f"did you mean {want}?" in str(exc.value) and str(exc.value).startswith(f"model={given!r}: unknown model;")
    assert exc.value.render("cli").startswith(f"--model {given}: unknown model; did you mean {want}?")


def test_names_resolve_in_any_case_and_far_misses_list_the_choices():
    assert Config.from_dict(dict(dataset="x", model="rotate", double_entity_embedding=True, schedule="COSINE")).model == "RotatE"
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(dict(dataset="x", loss="hinge"))
    assert "did you mean" not in str(exc.value) and "choose sigmoid, ce or 1vsall." in str(exc.value)
    assert nearest("filterd", ["uniform", "filtered", "sans"]) == "filtered"
    assert choose("tie_policy", "Realistic", ["optimistic", "pessimistic", "realistic"]) == "realistic"


def test_registry_refuses_a_second_name_in_another_case():
    reg: Registry = Registry("thing", "thing")
    reg.register(int, name="Alpha")
    with pytest.raises(ValueError):
        reg.register(float, name="alpha")
    assert reg.get("ALPHA") is int and "alpha" in reg and list(reg) == ["Alpha"]


def test_cli_renders_a_library_parameter_as_its_flag(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path), "--model", "RotatEE", "--save-path", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--model RotatEE: unknown model; did you mean RotatE?" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
