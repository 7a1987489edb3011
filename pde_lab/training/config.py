"""The training configuration: one typed dataclass, loadable from YAML and overridable by ``key=value``.

Every value is converted to its field's type and checked when a :class:`TrainConfig` is made (in
``__post_init__``), whether it comes from Python, YAML or the command line, so a bad value fails
before any data is read, with a :class:`~pde_lab.errors.UserError` naming the key, the value and what
is allowed. The defaults are the FNO paper's training settings (Adam, lr 1e-3, weight decay 1e-4,
learning rate halved every 100 epochs, 500 epochs, batch 20).

Overrides (``apply_overrides``) take ``key=value`` strings. Nested keys use a dot: ``task.mode=window``,
``model_args.width=32``, ``optimizer_args.betas=[0.9,0.99]``; the values of ``model_args`` and
``optimizer_args`` are parsed as numbers, booleans, ``none``, YAML lists/maps or else strings. Lists
(``levels``) take ``a,b,c`` or ``[a, b, c]``; optional values take ``none``.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from ..errors import UserError, check_choice, check_positive, did_you_mean
from ..optim.first_order import FIRST_ORDER
from ..pdes.base import Task

OPTIMIZERS = tuple(FIRST_ORDER)
SCHEDULERS = ("cosine", "step", "none")
TASK_MODES = ("one_shot", "window", "time")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class YamlConfig:
    """Conversions shared by the config dataclasses: dict and YAML round trips with checked keys.

    Subclasses are dataclasses; ``_kind`` names them in error messages.
    """

    _kind = "config"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, as written to YAML and stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def check_key(cls, key: str) -> None:
        """``UserError`` naming ``key``, the closest allowed key and all allowed keys, if unknown."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        if key not in allowed:
            raise UserError(f"unknown {cls._kind} key {key!r}{did_you_mean(key, allowed)}; "
                            f"allowed: {', '.join(allowed)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "YamlConfig":
        """A config from a mapping; unknown keys raise :class:`UserError` listing the allowed keys."""
        if not isinstance(values, Mapping):
            raise UserError(f"a {cls._kind} must be a mapping of keys to values, got {type(values).__name__}")
        for key in values:
            cls.check_key(str(key))
        return cls(**dict(values))

    @classmethod
    def split_override(cls, item: str) -> tuple[str, str, str]:
        """``"head.sub=raw"`` → ``(head, sub, raw)`` with ``head`` a known key (``sub`` may be empty)."""
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key=value")
        head, _, sub = key.partition(".")
        cls.check_key(head)
        return head, sub, raw

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> "YamlConfig":
        """A config from a YAML file path (or YAML text containing a newline)."""
        if isinstance(source, str) and "\n" in source:
            text = source
        else:
            path = Path(source)
            if not path.is_file():
                raise UserError(f"config file {str(path)!r} does not exist")
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                raise UserError(f"config file {str(path)!r} is not a UTF-8 text (YAML) file") from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise UserError(f"config is not valid YAML: {err}") from None
        return cls.from_dict(values or {})


@dataclass
class TrainConfig(YamlConfig):
    """Everything a training run depends on; a run directory stores it resolved as ``config.yaml``.

    Data:
        data: dataset directory (what ``pde-lab generate --out`` wrote).
        levels: difficulty levels to train on; ``None`` = all levels in ``data``.
        parameters: physical parameters given to the model as constant input channels, each ``NAME``
            or ``log:NAME``; ``None`` = every parameter that varies in the training split (resolved
            and stored when training starts); ``[]`` = none.
        task: what the model learns (``mode``, ``input_steps``, ``output_steps``, see
            :class:`~pde_lab.pdes.base.Task`); ``None`` = the PDE's default task.
        level_mix: level → fraction of the training trajectories (sums to 1), e.g.
            ``{easy: 0.9, hard: 0.1}`` (command line: ``level_mix=easy:0.9,hard:0.1``); ``None`` =
            each level's share of the data (see :mod:`pde_lab.datasets.mixing`).
        n_train: train on this many trajectories, split between levels by ``level_mix``.
        compute_budget: instead of ``n_train``: train on the trajectories whose recorded generation
            time (``trajectories/wall_time``) sums to at most this many seconds.
        budget_share: what ``level_mix`` splits under a budget: ``count`` (trajectories) or
            ``compute`` (seconds). Unset ``level_mix``, ``n_train`` and ``compute_budget``: all data.
        preload: hold the training and validation trajectories in memory (float32) instead of
            reading every item from HDF5, which costs milliseconds per item and starves a GPU.
    Model:
        model: registered model name (``pde_lab.operators.MODELS``).
        model_args: constructor arguments of the model; ``in_channels``, ``out_channels`` and
            ``n_dims`` are filled in from the data when the model takes them.
    Optimisation:
        optimizer: ``adam``, ``adamw``, ``soap`` or ``shampoo`` (:mod:`pde_lab.optim.first_order`);
            optimizer_args: extra keyword arguments (``betas``, ``eps``, ``precondition_frequency``).
        lr, weight_decay: learning rate and weight decay.
        scheduler: ``step`` (multiply by ``gamma`` every ``step_size`` epochs), ``cosine`` (cosine
            decay to zero over ``epochs``) or ``none``; stepped once per epoch.
        epochs: total number of epochs (a resumed run continues up to this number).
        batch_size: samples per step.
        grad_clip: clip the gradient's global norm to this value; ``None`` = no clipping.
        normalize: standardise inputs and targets per channel with the training split's statistics.
        time_limit_minutes: do not start an epoch that would end after this much training time;
            ``None`` = no limit. At least one epoch always runs.
        patience: early stopping: stop once the validation loss has not improved for this many
            epochs; ``None`` = train all ``epochs``.
        amp: mixed precision: the forward pass under bfloat16 autocast (convolutions and linear
            layers in bfloat16; the spectral layers opt out and stay float32, as the FFTs need); the
            loss and the optimizer state stay float32. Meant for CUDA; works on CPU too.
        pushforward: the ``window`` task's pushforward trick: unroll each training sample up to this
            many steps with the model's own predictions, without gradient, before the loss
            (:mod:`pde_lab.training.pushforward`); 0 = teacher forcing only.
    Run:
        seed: seeds the model initialisation and the order of the samples.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``, ``mps``. Under ``torchrun`` the
            ranks train data-parallel (:mod:`pde_lab.training.distributed`), rank ``r`` on
            ``cuda:LOCAL_RANK`` when the device is CUDA.
        num_workers: DataLoader worker processes.
        tensorboard: also write the per-epoch log as TensorBoard scalars to ``out/tensorboard``
            (needs the optional ``tensorboard`` package).
        out: run directory.
        resume: continue the run in ``out`` from ``checkpoints/last.pt``; a run already finished under
            this config's ``epochs`` and ``patience`` is left untouched
            (:func:`~pde_lab.training.trainer.finished_reason`).
        overwrite: replace the run artefacts in an existing, non-empty ``out``.
        progress: show a tqdm progress bar.
    """

    data: str | None = None
    levels: list[str] | None = None
    parameters: list[str] | None = None
    task: Task | None = None
    level_mix: dict[str, float] | None = None
    n_train: int | None = None
    compute_budget: float | None = None
    budget_share: str = "count"
    preload: bool = False
    model: str = "fno"
    model_args: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "step"
    step_size: int = 100
    gamma: float = 0.5
    epochs: int = 500
    batch_size: int = 20
    grad_clip: float | None = None
    normalize: bool = True
    time_limit_minutes: float | None = None
    patience: int | None = None
    pushforward: int = 0
    amp: bool = False
    tensorboard: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.level_mix, str) and "{" not in self.level_mix and any(c in self.level_mix for c in ":="):
            # The command-line forms easy:0.9,hard:0.1 and easy=0.9,hard=0.1 (a YAML mapping also works).
            pairs = [part.replace("=", ":").partition(":") for part in self.level_mix.split(",") if part.strip()]
            self.level_mix = {k.strip(): v.strip() for k, _, v in pairs}
        hints = _field_types()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self._validate()

    # ---- checks --------------------------------------------------------------------------------
    def _validate(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if not _DEVICE.match(self.device):
            raise UserError(f"unknown device {self.device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        _positive("lr", self.lr)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("step_size", self.step_size)
        _positive("gamma", self.gamma)
        _positive("num_workers", self.num_workers, allow_zero=True)
        _positive("pushforward", self.pushforward, allow_zero=True)
        for name in ("grad_clip", "time_limit_minutes", "patience", "n_train", "compute_budget"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        from ..datasets.mixing import SHARES, check_ratios

        check_choice("budget_share", self.budget_share, SHARES)
        if self.level_mix is not None:
            check_ratios(self.level_mix, list(self.level_mix))  # levels are checked against the data later
            self.level_mix = {str(k): float(v) for k, v in self.level_mix.items()}
        if self.n_train is not None and self.compute_budget is not None:
            raise UserError(f"give n_train ({self.n_train}) or compute_budget ({self.compute_budget}), not both")
        if self.task is not None:
            check_choice("task.mode", self.task.mode, TASK_MODES)
            _positive("task.input_steps", self.task.input_steps)
            _positive("task.output_steps", self.task.output_steps)
        _positive("seed", self.seed, allow_zero=True)  # numpy's SeedSequence takes no negative seed
        check_model_args(self.model, self.model_args)

    def apply_overrides(self, overrides: Sequence[str]) -> "TrainConfig":
        """A new config with ``key=value`` overrides applied (see the module docstring for the syntax)."""
        values = self.to_dict()
        for item in overrides:
            head, sub, raw = self.split_override(item)
            if not sub:
                values[head] = raw.strip()
                continue
            if head in ("model_args", "optimizer_args"):
                values[head] = {**values[head], sub: _parse_scalar(raw.strip())}
            elif head == "task":
                task_fields = [f.name for f in dataclasses.fields(Task)]
                if sub not in task_fields:
                    raise UserError(f"unknown config key {head + '.' + sub!r}; allowed: "
                                    + ", ".join(f"task.{n}" for n in task_fields))
                values["task"] = {**(values["task"] or dataclasses.asdict(Task())), sub: raw.strip()}
            else:
                raise UserError(f"config key {head!r} has no sub-keys; use {head}=VALUE")
        return type(self).from_dict(values)


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given (``UserError`` for a name torch
    does not know, or if CUDA is asked for but absent)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch's message for "gpu" is a list of every backend it knows
        raise UserError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(name)!r} asked for but CUDA is not available; use cpu or auto")
    return device


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _positive(name: str, value, allow_zero: bool = False) -> None:
    """:func:`~pde_lab.errors.check_positive` for the config key ``name``."""
    check_positive(f"config key {name!r}", value, allow_zero=allow_zero)


def check_model_args(model: str, model_args: Mapping[str, Any]) -> None:
    """:class:`UserError` for an unknown ``model`` or a ``model_args`` key its constructor does not take,
    when the config is made rather than after the data is read. The values are checked when the model
    is built (they may need the data's channels and dimension)."""
    from ..operators import MODELS, model_parameters  # registers the models; imported late to keep this light

    check_choice("model", model, MODELS.names())
    allowed = model_parameters(model)
    unknown = sorted(set(model_args) - set(allowed))
    if unknown:
        raise UserError(f"model {model!r} has no argument {', '.join(map(repr, unknown))}"
                        f"{did_you_mean(unknown[0], allowed)}; "
                        f"allowed model_args: {', '.join(allowed)}")


_NONE_WORDS = ("none", "null", "~")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def _parse_scalar(text: str) -> Any:
    """Best-effort typed value of a command-line string: none, bool, int, float, YAML list/map, string."""
    low = text.lower()
    if low in _NONE_WORDS:
        return None
    if low in ("true", "false"):
        return low == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            pass
    return text


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             Task: "a task mapping (mode, input_steps, output_steps)"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (list, Sequence):
        return "a list (a,b,c)"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    return str(tp)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` converted to the type ``tp`` of config key ``key``; :class:`UserError` if impossible."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS + ("",)):
            return None
        if len(args) == 1:
            return _coerce(key, value, args[0])
        raise TypeError(f"unsupported config type {tp}")  # a bug in TrainConfig, not user input

    def fail() -> typing.NoReturn:
        raise UserError(f"config key {key!r} must be {_describe(tp)}, got {value!r}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        fail()
    if tp is int:
        if isinstance(value, bool):
            fail()
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            fail()
        if not number.is_integer():
            fail()
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            fail()
        try:
            return float(value)
        except (TypeError, ValueError):
            fail()
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        fail()
    if origin is list:
        (item_type,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            fail()
        return [v if item_type is Any else _coerce(key, v, item_type) for v in value]
    if origin is dict:
        if isinstance(value, str):
            value = _parse_scalar(value.strip())
        if not isinstance(value, Mapping):
            fail()
        return dict(value)
    if tp is Task:
        if isinstance(value, Task):
            value = dataclasses.asdict(value)
        if isinstance(value, str):
            value = _parse_scalar(value.strip())
        if not isinstance(value, Mapping):
            fail()
        hints = typing.get_type_hints(Task)
        unknown = sorted(set(value) - set(hints))
        if unknown:
            raise UserError(f"unknown config key {'task.' + unknown[0]!r}; allowed: "
                            + ", ".join(f"task.{n}" for n in hints))
        converted = {}
        for name, sub_value in value.items():
            sub_tp = str if name == "mode" else hints[name]  # Literal modes are checked in _validate
            converted[name] = _coerce(f"task.{name}", sub_value, sub_tp)
        return Task(**converted)
    raise TypeError(f"unsupported config type {tp}")
