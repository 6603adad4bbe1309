"""The flags generated from dataclasses (`contrec_hf.cli.arguments`) and the complete, generated `--help`."""

import argparse
import dataclasses
from typing import Literal

import pytest

from contrec_hf.cli import build_parser, main
from contrec_hf.cli.arguments import add_dataclass_arguments, dataclass_options, field_help


@dataclasses.dataclass
class _Options:
    """Options of a test.

    Args:
        rate (`float`, defaults to 0.5): how fast, e.g. 0.5. Not shown: the second sentence.
        size (`int`): the size of a `Thing` in [`Model`], 10% of ``width``.
        kind / other_kind (`str`): one entry for two fields; its text
            continues on this line.
        switch (`bool`): on or off
        widths (`tuple[int, ...]`): hidden widths.
        mode (`str`): a choice.
        limit (`int`, *optional*): no limit by default.
    """

    rate: float = 0.5
    size: int = 3
    kind: str = "a"
    other_kind: str = "b"
    switch: bool = True
    widths: tuple[int, ...] = (4, 8)
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_arguments(parser, _Options, **kwargs)
    return parser


def test_field_help_is_the_first_sentence_of_the_docstring_entry_as_plain_text():
    helps = field_help(_Options)
    assert helps["rate"] == "how fast, e.g. 0.5."
    assert helps["size"] == "the size of a Thing in Model, 10%% of width."  # % escaped for argparse
    assert helps["kind"] == helps["other_kind"] == "one entry for two fields; its text continues on this line."
    assert helps["switch"] == "on or off."


def test_flags_take_their_type_from_the_annotation_and_unset_flags_keep_the_default():
    parser = _parser()
    given = parser.parse_args(["--rate", "1", "--no-switch", "--widths", "2", "3", "--mode", "slow", "--limit", "7"])
    assert dataclass_options(given, _Options) == {
        "rate": 1.0, "switch": False, "widths": (2, 3), "mode": "slow", "limit": 7
    }  # fmt: skip
    assert isinstance(dataclass_options(given, _Options)["rate"], float)
    assert dataclass_options(parser.parse_args([]), _Options) == {}
    assert _Options(**dataclass_options(given, _Options)).widths == (2, 3)
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        parser.parse_args(["--mode", "medium"])
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        parser.parse_args(["--size", "2.5"])


def test_only_exclude_prefix_and_aliases():
    parser = _parser(only=("size", "rate"), exclude=("rate",), prefix="t-", aliases={"size": ("--old-size",)})
    assert dataclass_options(parser.parse_args(["--old-size", "5"]), _Options) == {"size": 5}
    assert dataclass_options(parser.parse_args(["--t-size", "6"]), _Options) == {"size": 6}
    with pytest.raises(SystemExit):  # an excluded field has no flag
        parser.parse_args(["--t-rate", "1"])
    help_text = " ".join(parser.format_help().split())
    assert "--t-size SIZE, --old-size SIZE" in help_text and "10% of width. (default: 3)" in help_text


def test_a_field_without_a_docstring_entry_is_refused():
    @dataclasses.dataclass
    class Undocumented:
        """No sections."""

        value: int = 1

    with pytest.raises(TypeError, match=r"Undocumented.value has no docstring entry"):
        add_dataclass_arguments(argparse.ArgumentParser(), Undocumented)


def _commands(parser: argparse.ArgumentParser, path=()):
    """Every leaf command of the parser as (argv path, its parser)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


COMMANDS = [path for path, _ in _commands(build_parser())]


def test_every_command_is_reached():
    assert {" ".join(p) for p in COMMANDS} == {
        "data stats", "data prepare", "baseline", "tokenizer train", "train", "recommend", "pipeline build", "run",
        "push",
    }  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_option_of_every_command_has_help(path, capsys):
    parser = dict(_commands(build_parser()))[path]
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{' '.join(path)} {action.option_strings} has no help"
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: contrec-hf {' '.join(path)}")


def _all_fields(cls, exclude=()):
    own = vars(cls)["__annotations__"]
    return [f.name for f in dataclasses.fields(cls) if f.name in own and f.name not in exclude]


def test_the_stage_options_are_every_field_of_the_classes_behind_them(capsys):
    from contrec_hf import ContRecConfig, ContRecTokenizerConfig
    from contrec_hf.baselines import SASRecConfig, SASRecTrainingArguments
    from contrec_hf.cli.parser import STAGE2_CONFIG_FIELDS
    from contrec_hf.features import CollaborativeConfig
    from contrec_hf.training import RecommenderTrainingArguments, TokenizerTrainingArguments

    def flags(path):
        with pytest.raises(SystemExit):
            main([*path, "--help"])
        return capsys.readouterr().out

    def flag(name, prefix=""):
        return f"--{prefix}{name}".replace("_", "-")

    device = ("device", "mixed_precision")
    expected = {
        ("baseline",): [flag(n) for n in _all_fields(SASRecConfig, ("num_items",))]
        + [flag(n) for n in _all_fields(SASRecTrainingArguments, ("output_dir", *device))],
        ("tokenizer", "train"): [flag(n) for n in _all_fields(ContRecTokenizerConfig, ("input_dim",))]
        + [flag(n) for n in _all_fields(TokenizerTrainingArguments, device)]
        + [flag(n, "cf-") for n in _all_fields(CollaborativeConfig, ("seed",))],
        ("train",): [flag(n) for n in _all_fields(RecommenderTrainingArguments, ("output_dir", *device))]
        + [flag(n) for n in STAGE2_CONFIG_FIELDS],
        ("run",): [flag(n) for n in STAGE2_CONFIG_FIELDS],
    }
    for path, names in expected.items():
        text = flags(path)
        assert not [n for n in names if n not in text], path
    assert "--output-dir" not in flags(("baseline",))  # the baselines' resume folder is --output/training
    # The stage-2 flags are every ContRecConfig field but the few set by the library itself.
    fixed = set(_all_fields(ContRecConfig)) - set(STAGE2_CONFIG_FIELDS)
    assert fixed == {
        "text_config", "item_tokenizer_config", "user_tokenizer_config", "item_start_token_id", "item_end_token_id",
        "item_token_id", "pref_token_id", "user_token_id", "num_catalog_items", "tie_word_embeddings",
    }  # fmt: skip


def test_every_stage2_flag_at_its_default_builds_the_default_config(tmp_path):
    """Each generated flag parses its own default back into a valid `ContRecConfig` equal to the default one."""
    from contrec_hf import ContRecConfig
    from contrec_hf.cli.commands import config_overrides
    from contrec_hf.cli.parser import STAGE2_CONFIG_FIELDS

    default = ContRecConfig()
    argv = ["run", "--output", str(tmp_path)]
    for name in STAGE2_CONFIG_FIELDS:
        value = getattr(default, name)
        if isinstance(value, bool):
            argv.append(f"--{'' if value else 'no-'}{name}".replace("_", "-"))
        else:
            argv += [f"--{name}".replace("_", "-"), str(value)]
    overrides = config_overrides(build_parser().parse_args(argv))
    assert sorted(overrides) == sorted(STAGE2_CONFIG_FIELDS)
    assert ContRecConfig(**overrides).to_dict() == default.to_dict()


def test_older_flag_names_still_work(tmp_path):
    from contrec_hf import ContRecTokenizerConfig
    from contrec_hf.cli.commands import config_overrides

    args = build_parser().parse_args(
        ["train", "--tokenizer", "t", "--output", str(tmp_path), "--dispersive-weight", "0", "--lm-weight", "1",
         "--ranking-weight", "2"]
    )  # fmt: skip
    assert config_overrides(args) == {"dispersive_loss_weight": 0.0, "lm_loss_weight": 1.0, "ranking_loss_weight": 2.0}
    args = build_parser().parse_args(
        ["tokenizer", "train", "--output", str(tmp_path), "--no-sigma-sampling", "--mu-regularizer", "0.1",
         "--barlow-twins", "0.2", "--cf-method", "mf"]
    )  # fmt: skip
    assert dataclass_options(args, ContRecTokenizerConfig) == {
        "sigma_sampling": False, "mu_regularizer_weight": 0.1, "barlow_twins_weight": 0.2
    }  # fmt: skip
