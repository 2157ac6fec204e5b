"""How each caller spells a setting: the Python parameter, ``emukg train``'s flag, the reference's flag.

A leaf: it imports nothing of emukg and no third-party package, so that every layer (the Config, the errors, the
reference mode at the top) can read the same table.  ``LEGACY_FLAGS`` is the reference's (RotatE → SANS → EMU
``codes/run.py``) spelling of each setting it has; emukg's own additions keep their emukg names.
"""

from __future__ import annotations

STYLES = ("python", "cli", "legacy", "yaml")

# the reference's spelling of the settings it has (emukg's own additions keep their emukg names)
LEGACY_FLAGS = {
    "dataset": "--data_path", "model": "--model", "hidden_dim": "-d", "gamma": "-g",
    "double_entity_embedding": "-de", "double_relation_embedding": "-dr", "negative_sample_size": "-n",
    "batch_size": "-b", "loss": "-if_CE", "sampler": "-if_CE", "khop": "-khop", "num_random_walks": "-nrw",
    "adversarial": "-adv", "adversarial_temperature": "-a", "uni_weight": "--uni_weight", "regularization": "-r",
    "emu": "-if_EMU", "neg_label": "-neg_label", "ce_coef": "-CE_coef", "mixup": "-if_Mixup", "only_ls": "-if_OnlyLS",
    "learning_rate": "-lr", "optimizer": "-if_Adagrad", "max_steps": "--max_steps", "warm_up_steps": "--warm_up_steps",
    "do_train": "--do_train", "do_valid": "--do_valid", "do_test": "--do_test", "evaluate_train": "--evaluate_train",
    "valid_steps": "--valid_steps", "log_steps": "--log_steps", "save_checkpoint_steps": "--save_checkpoint_steps",
    "test_log_steps": "--test_log_steps", "test_batch_size": "--test_batch_size", "save_path": "-save",
    "init_checkpoint": "-init", "device": "--cuda", "threads": "-cpu", "fixed_tail_negatives": "-if_adv_neg",
    "seed": "--seed", "walk_mode": "--walk_mode", "sans_memory_mb": "--sans_memory_mb", "progress": "--no_progress",
}


# settings whose value is not what the reference's flag holds (-if_CE 1 sets loss ce and sampler uniform, ...)
NOT_ONE_TO_ONE = ("loss", "sampler", "adversarial_sampler", "optimizer", "device", "progress", "fixed_tail_negatives")



def loss_settings(if_CE: int, sans: bool = False, adversarial: bool = False) -> dict:
    """The named Config settings of the reference's ``-if_CE`` mode (``sans``: ``-khop`` > 0)."""
    data_side = "sans" if sans else "filtered"
    if if_CE == 0:
        return dict(loss="sigmoid", sampler=data_side)
    if if_CE == 1:
        return dict(loss="ce", sampler="uniform", adversarial_sampler=data_side if adversarial else None)
    if if_CE == 2:
        return dict(loss="ce", sampler=data_side)
    if if_CE == 3:
        return dict(loss="1vsall", sampler=None, adversarial_sampler=data_side if adversarial else None)
    raise ValueError(f"-if_CE {if_CE}: must be 0 (sigmoid), 1 (CE, uniform), 2 (CE, data-side negatives) or 3 (1-vs-all).")


def one_to_one(param: str) -> bool:
    """Whether the reference's flag for ``param`` holds the setting's own value (``-if_CE 1`` sets loss and sampler)."""
    return param not in NOT_ONE_TO_ONE


def flag_name(param: str, style: str = "python") -> str:
    """How a caller of the given ``style`` spells the setting ``param``: ``learning_rate`` (python, yaml),
    ``--learning-rate`` (cli) or ``-lr`` (legacy)."""
    if style == "cli":
        return "--" + param.replace("_", "-")
    if style == "legacy":
        return LEGACY_FLAGS.get(param, "--" + param)
    return param


# settings with values as the reference's -if_CE spells them (one flag holds the loss and the sampler together)
REFERENCE_VALUES = {
    frozenset({("loss", "sigmoid")}): "-if_CE 0",
    frozenset({("loss", "ce"), ("sampler", "uniform")}): "-if_CE 1",
    frozenset({("loss", "ce")}): "-if_CE 1 or 2",
    frozenset({("loss", "1vsall")}): "-if_CE 3",
}


def setting_values(settings: dict, style: str = "python") -> str:
    """Settings with their values, spelled for ``style``: ``loss='ce', sampler='uniform'`` (python),
    ``--loss ce --sampler uniform`` (cli), ``-if_CE 1`` (legacy, where the reference's flags hold them together)."""
    if style == "legacy" and frozenset((k, str(v)) for k, v in settings.items()) in REFERENCE_VALUES:
        return REFERENCE_VALUES[frozenset((k, str(v)) for k, v in settings.items())]
    if style in ("cli", "legacy"):
        return " ".join(f"{flag_name(k, style)} {v}" for k, v in settings.items())
    return ", ".join(f"{k}={v!r}" for k, v in settings.items())
