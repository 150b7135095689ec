"""Recipes: which one a run gets, explicit flags over the recipe, --config FILE under the command line,
and the errors of a bad config file."""

from __future__ import annotations

import json

import pytest
from c3d_distill.cli import build_parser
from c3d_distill.runs.config import RunConfig
from c3d_distill.runs.recipes import FIELDS, RECIPES, apply_recipe, recipe_for
from c3d_distill.train.cli import config_from_args


def cfg_of(*argv: str) -> RunConfig:
    args = build_parser(argv[0]).parse_args(list(argv))
    return config_from_args(args, argv[0])


def test_recipe_for_each_situation():
    assert recipe_for("train", "transfer").name == "fresh"  # RunConfig's default init
    assert recipe_for("train", "random").name == "fresh"
    assert recipe_for("train", None).name == "fresh"
    assert recipe_for("train", "runs/teacher/checkpoint.pt").name == "finetune"
    assert recipe_for("distill", "transfer").name == "distill"
    assert recipe_for("distill", "student.pt").name == "distill"


def test_every_recipe_sets_every_field_and_validates():
    for r in RECIPES.values():
        assert set(r.values) == set(FIELDS)
        cfg = RunConfig(mode="train", data="synth:x", out="o")
        cfg.init = "transfer"
        apply_recipe(cfg, {})
        assert cfg.validate()


def test_finetune_is_the_published_c3d_recipe():
    cfg = RunConfig(mode="train", init="runs/c3d.pt")
    apply_recipe(cfg, {})
    assert cfg.recipe == "finetune"
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 1e-3, 0.9, 5e-4)
    assert (cfg.schedule, cfg.step_epochs, cfg.gamma, cfg.clip_grad, cfg.dropout) == ("step", 20, 0.1, 40.0, 0.5)


def test_cli_fills_unset_flags_from_the_recipe_and_explicit_flags_win():
    cfg = cfg_of("train", "--data", "synth:d", "--out", "o")
    assert cfg.recipe == "fresh"
    assert {k: getattr(cfg, k) for k in FIELDS} == RECIPES["fresh"].values
    cfg = cfg_of("train", "--data", "synth:d", "--out", "o", "--lr", "0.05", "--optimizer", "sgd",
                 "--clip-grad", "0", "--dropout", "0.25")
    assert cfg.recipe == "fresh"
    assert (cfg.lr, cfg.optimizer, cfg.clip_grad, cfg.dropout) == (0.05, "sgd", None, 0.25)
    assert cfg.warmup_epochs == RECIPES["fresh"].values["warmup_epochs"]  # the rest still the recipe's
    cfg = cfg_of("distill", "--teacher", "t", "--data", "synth:d", "--out", "o", "--epochs", "3")
    assert cfg.recipe == "distill" and cfg.epochs == 3
    assert cfg.lr == RECIPES["distill"].values["lr"] and cfg.clip_grad == RECIPES["distill"].values["clip_grad"]


def test_recipe_is_recorded_in_config_json(tmp_path):
    cfg = cfg_of("distill", "--teacher", "t", "--data", "synth:d", "--out", "o")
    cfg.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["recipe"] == "distill"
    assert {k: saved[k] for k in FIELDS} == RECIPES["distill"].values
    assert RunConfig.load(tmp_path / "config.json").recipe == "distill"


def test_help_shows_each_recipes_default(capsys):
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--lr LR default by recipe: fresh 0.001, finetune 0.001, distill 0.01" in out
    assert "fresh 30, finetune 45, distill 10" in out


def test_config_file_under_the_command_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data: synth:from_file\nout: o\nlr: 1e-2\nclip-grad: 2\nflip: false\nplain: true\n"
                 "optimizer: sgd\nepochs: 7\nresize: [40, 50]\n")
    cfg = cfg_of("train", "--config", str(f), "--epochs", "3")
    assert cfg.data == "synth:from_file" and cfg.out == "o"  # required flags may come from the file
    assert cfg.lr == 1e-2  # YAML reads 1e-2 as a string: converted with the flag's type
    assert (cfg.clip_grad, cfg.flip, cfg.fast, cfg.optimizer) == (2.0, False, False, "sgd")
    assert cfg.epochs == 3  # the command line wins
    assert cfg.resize == (40, 50)  # a config.json field without a flag
    assert cfg.warmup_epochs == RECIPES["fresh"].values["warmup_epochs"]  # neither: the recipe


def test_a_runs_own_config_json_works(tmp_path):
    first = cfg_of("distill", "--teacher", "t", "--data", "synth:d", "--out", "o", "--lr", "0.004")
    first.save(tmp_path / "config.json")
    again = cfg_of("distill", "--config", str(tmp_path / "config.json"), "--out", "o2")
    assert again.out == "o2" and again.teacher == "t" and again.lr == 0.004
    assert {k: getattr(again, k) for k in FIELDS} == {k: getattr(first, k) for k in FIELDS}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: synth:d\nout: o\nlearning_rate: 0.1\n", "unknown key 'learning_rate'"),
        ("data: synth:d\nout: o\noptimizer: adam\n", "optimizer: 'adam' is not one of"),
        ("data: synth:d\nout: o\nepochs: many\n", "epochs: 'many' is not a valid --epochs value"),
        ("data: synth:d\nout: o\nmode: distill\n", "mode 'distill' is another command's"),
        ("- lr: 1\n", "expected a mapping"),
        ("lr: [1\n", "not valid YAML"),
        ("out: o\n", "--data: required"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ValueError) as exc:
        cfg_of("train", "--config", str(f))
    assert message in str(exc.value)
    if "required" not in message:
        assert str(f) in str(exc.value)


def test_config_json_file_and_missing_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"data": "synth:d", "out": "o", "gamma": 0.5, "bogus": 1}')
    with pytest.raises(ValueError, match=r"c\.json: unknown key 'bogus'"):
        cfg_of("train", "--config", str(f))
    with pytest.raises(ValueError, match="cannot read it"):
        cfg_of("train", "--config", str(tmp_path / "none.yaml"), "--data", "synth:d", "--out", "o")
