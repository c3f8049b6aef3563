"""Finding, reading and validating presets. A preset file is never rewritten.

`resolve()` merges a preset with `--set` overrides, builds the typed `Config` and runs every
check that needs no torch: schema, model and dataset names, paths on disk. All problems are
collected, so `fbt presets validate` can report every one at once.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fbt_engine import paths
from fbt_engine.config.fields import Problem, build, describe_fields, leaf_fields, listed_choices
from fbt_engine.config.schema import SECTIONS, Config, DataSection
from fbt_engine.data.catalog import DATASETS
from fbt_engine.data.specs import parse_randaugment
from fbt_engine.methods.params import METHOD_PARAMS, FBTParams, MethodParams
from fbt_engine.models.names import is_known_model, known_model_names, own_model_names
from fbt_engine.registry import did_you_mean
from fbt_engine.store.runs import name_problem, tag_problem

SET_SOURCE = "--set"
_TOML_OPENERS = ("\"", "'", "[", "{")  # a --set value that starts so was meant as TOML (see parse_value)
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class PresetError(Exception):
    """The preset cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def exit_code(self) -> int:
        return 2 if any(not p.environment for p in self.problems) else 3


@dataclass
class Resolved:
    config: Config
    source: str  # the preset's path, or "<defaults>"
    raw: bytes  # the preset file's exact bytes, stored with the run
    problems: list[Problem] = field(default_factory=list)
    changed: dict[str, list] = field(default_factory=dict)  # on resume: key → [before, after]
    doubts: list[Problem] = field(default_factory=list)  # valid values seldom meant: warnings (DOUBTS)


# --- locating presets ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PresetRef:
    name: str
    path: Path
    builtin: bool


def list_presets() -> list[PresetRef]:
    """User presets first (they may shadow a built-in of the same name), then built-ins."""
    refs: list[PresetRef] = []
    for folder, builtin in ((paths.user_presets_dir(), False), (paths.builtin_presets_dir(), True)):
        if folder.is_dir():
            for p in sorted(folder.rglob("*.toml")):
                refs.append(PresetRef(p.relative_to(folder).with_suffix("").as_posix(), p, builtin))
    return refs


def find_preset(ref: str) -> Path:
    """A path to a file, or the name of a user/built-in preset ("mlp_to_cnn", "paper/vit_s_to_res18")."""
    candidate = Path(ref).expanduser()
    if candidate.is_file():
        return candidate
    name = ref.removesuffix(".toml")
    known = list_presets()
    for p in known:
        if p.name == name:
            return p.path
    if candidate.is_dir():  # "no such file or preset" of a folder that is there
        raise PresetError([Problem(ref, "preset", "a folder, not a preset: give a .toml file or a preset's name "
                                   "(fbt presets ls)")])
    raise PresetError([Problem(ref, "preset", "no such file or preset"
                               + did_you_mean(name, [p.name for p in known]))])


# --- parsing ------------------------------------------------------------------------------------

def parse_value(text: str) -> Any:
    """A `--set` value as TOML. Text that is not TOML is a string (cifar100, /data/my set, 2x),
    which the schema then judges as any string: "expected an integer" says more about "2x" than
    TOML's parser does. Only a quoted string, list or table gone wrong is an error of its own."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.startswith(_TOML_OPENERS):
            raise
        return text


def parse_overrides(items: Iterable[str]) -> tuple[dict[str, Any], list[Problem]]:
    nested: dict[str, Any] = {}
    problems: list[Problem] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem(SET_SOURCE, item, "expected key=value, e.g. optim.lr=3e-4"))
            continue
        if not text.strip():  # a value forgotten, not an empty string meant
            problems.append(Problem(SET_SOURCE, key, "no value after \"=\" (an empty string is written '\"\"')"))
            continue
        try:
            value = parse_value(text.strip())
        except tomllib.TOMLDecodeError as exc:
            # its position is in "v = …", and the value is short enough to see whole
            why = str(exc).split(" (at ", 1)[0]
            problems.append(Problem(SET_SOURCE, key, f"value {text.strip()!r} is not valid TOML ({why})"))
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(Problem(SET_SOURCE, key, f"{part} is a value, not a table"))
                break
        else:
            node[leaf] = value
    return nested, problems


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _dotted_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for k, v in table.items():
        keys.add(prefix + k)
        if isinstance(v, dict):
            keys |= _dotted_keys(v, f"{prefix}{k}.")
    return keys


def read_preset(path: Path) -> tuple[bytes, dict[str, Any], list[Problem]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return b"", {}, [Problem(str(path), "preset", f"cannot read: {exc.strerror}", environment=True)]
    try:
        return raw, tomllib.loads(raw.decode("utf-8")), []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # Notepad's UTF-8 starts with one; TOML's parser says only "Invalid statement (at line 1, column 1)"
        bom = "; the file starts with a byte-order mark, which TOML does not allow: save it as UTF-8 without one" \
            if raw.startswith(codecs.BOM_UTF8) else ""
        return raw, {}, [Problem(str(path), "preset", f"not valid TOML: {exc}{bom}")]


# --- building and checking ----------------------------------------------------------------------

def build_config(table: dict[str, Any], origin, problems: list[Problem]) -> Config:
    sections: dict[str, Any] = {}
    for name, value in table.items():
        if name not in SECTIONS:
            problems.append(Problem(origin(name), name, f"unknown section{did_you_mean(name, SECTIONS)}; "
                                                        f"a preset has {', '.join(SECTIONS)}"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(origin(name), name, f"expected a table [{name}], got {value!r}"))
            continue
        if name == "method":
            sections[name] = _build_method(value, origin, problems)
        else:
            start = len(problems)
            sections[name] = build(SECTIONS[name], value, f"{name}.", origin, problems)
            problems[start:] = [_hint_other_section(p) for p in problems[start:]]
    return Config(**sections)


def _hint_other_section(problem: Problem) -> Problem:
    """`train.lr` → (did you mean "optim.lr"?): a key that exists, in another section."""
    if not problem.message.startswith("unknown key") or "did you mean" in problem.message:
        return problem
    leaf = problem.key.rsplit(".", 1)[-1]
    homes = sorted((key.count("."), i, key) for i, key in enumerate(_setting_keys()) if key.rsplit(".", 1)[-1] == leaf)
    if not homes:
        return problem
    hint = f'unknown key (did you mean "{homes[0][2]}"?)'
    return replace(problem, message=problem.message.replace("unknown key", hint, 1))


@functools.cache
def _setting_keys() -> tuple[str, ...]:
    return tuple(f"{name}.{key}" for name, cls in SECTIONS.items() if name != "method"
                 for key, *_ in describe_fields(cls))


def every_setting() -> list[tuple[str, str, Any, str]]:
    """(key, what it takes, default, meaning) of every setting a preset holds: the sections', then
    the method's name and each method's own, under the method's table (`method.fbt.nce_weight`;
    a plain `method.nce_weight` sets the chosen method's)."""
    rows = [(f"{name}.{key}", *rest) for name, cls in SECTIONS.items() if name != "method"
            for key, *rest in describe_fields(cls)]
    methods = METHOD_PARAMS.names()
    rows.append(("method.name", f"one of {listed_choices(tuple(methods))}", FBTParams.name,
                 "the distillation method (scratch: the student alone, without a teacher)"))
    return rows + [(f"method.{method}.{key}", *rest) for method in methods
                   for key, *rest in describe_fields(METHOD_PARAMS.get(method))]


def _build_method(table: dict[str, Any], origin, problems: list[Problem]) -> MethodParams:
    """[method]: `name` picks the method; its settings are the flat keys, plus a sub-table named
    after it ([method.fbt] …). Sub-tables of the other methods are checked but left unused, so a
    preset can carry settings for several methods and `--set method.name=kd` still works on it."""
    params = dict(table)
    name = params.pop("name", FBTParams.name)
    # copies: _drop_foreign takes keys out, and the table is the caller's
    per_method = {k: dict(params.pop(k)) for k in list(params) if k in METHOD_PARAMS and isinstance(params[k], dict)}
    for other in [k for k in params if k in METHOD_PARAMS]:  # method.fbt = 3
        problems.append(Problem(origin(f"method.{other}"), f"method.{other}",
                                f"expected a table of {other}'s settings ([method.{other}]), "
                                f"got {params.pop(other)!r}"))
    for other, sub in per_method.items():
        if other != name:
            _drop_foreign(other, sub, f"method.{other}.", origin, problems)
            build(METHOD_PARAMS.get(other), sub, f"method.{other}.", origin, problems)
    if not isinstance(name, str) or name not in METHOD_PARAMS:
        problems.append(Problem(origin("method.name"), "method.name",
                                f"expected one of {', '.join(METHOD_PARAMS.names())}, got {name!r}"
                                + (did_you_mean(name, METHOD_PARAMS.names()) if isinstance(name, str) else "")))
        return FBTParams()
    own = per_method.get(name, {})
    clash = sorted(set(own) & set(params))
    if clash:
        problems.append(Problem(origin(f"method.{clash[0]}"), f"method.{clash[0]}",
                                f"set both in [method] and in [method.{name}]; keep one"))
    cls = METHOD_PARAMS.get(name)
    _drop_foreign(name, params, "method.", origin, problems)
    _drop_foreign(name, own, f"method.{name}.", origin, problems)
    if not own:
        return build(cls, params, "method.", origin, problems)
    # each part is checked under the keys as written; the settings are their union
    build(cls, params, "method.", origin, problems)
    build(cls, own, f"method.{name}.", origin, problems)
    return build(cls, {**params, **own}, "method.", origin, [])


def _method_keys(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(METHOD_PARAMS.get(method))} - {"name"}


def _drop_foreign(method: str, table: dict[str, Any], prefix: str, origin, problems: list[Problem]) -> None:
    """Keys of `table` (`method`'s settings) that only other methods have, taken out with a problem
    that names whose they are: "unknown key" would be wrong, and its did-you-mean misleading."""
    takes = _method_keys(method)
    for key in sorted(set(table) - takes):
        owners = [m for m in METHOD_PARAMS.names() if key in _method_keys(m)]
        if owners:
            table.pop(key)
            problems.append(Problem(origin(f"{prefix}{key}", "method.name"), f"{prefix}{key}",
                                    f"is a setting of {' and '.join(owners)}, not of {method} ({method} takes "
                                    f"{', '.join(sorted(takes))}); method.{owners[0]}.{key} keeps it "
                                    f"for when {owners[0]} runs"))


def command_line_sets(sets: Iterable[str], device: str | None, name: str | None) -> list[str]:
    """`fbt run`'s --device and --name as the --set items they stand for, after the user's own."""
    return [*sets, *([f"run.device={toml_string(device)}"] if device else []),
            *([f"run.name={toml_string(name)}"] if name is not None else [])]


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: JSON's escapes are TOML's, but not its surrogate pairs, so
    characters beyond U+FFFF go as they are (control characters, which TOML wants escaped, JSON escapes)."""
    return json.dumps(text, ensure_ascii=False)


def check_semantics(cfg: Config, origin, problems: list[Problem]) -> None:
    """Checks across fields and against the world (names, files), still without torch."""
    if not _DEVICE.match(cfg.run.device):
        problems.append(Problem(origin("run.device"), "run.device",
                                f"expected auto, cpu, cuda or cuda:N, got \"{cfg.run.device}\""))
    for side in ("teacher", "student"):
        model = getattr(cfg, side).model
        if side == "teacher" and not cfg.method.needs_teacher:
            continue
        key = f"{side}.model"
        if not model:
            problems.append(Problem(origin(key, "method.name"), key, f'is required by method "{cfg.method.name}"'))
        elif not is_known_model(model):
            problems.append(Problem(origin(key), key,
                                    f'unknown model "{model}"{did_you_mean(model, known_model_names())}'))
        elif (getattr(cfg, side).kwargs.get("pretrained") and model in own_model_names()
              and not (side == "teacher" and cfg.teacher.checkpoint)):  # a checkpoint's weights replace them
            where = ("drop it, and give teacher.checkpoint or let [teacher.recipe] train the teacher"
                     if side == "teacher" else "drop it to train the student from scratch")
            problems.append(Problem(origin(f"{side}.kwargs", key), f"{side}.kwargs",
                                    f"pretrained: fbt's own {model} has no pretrained weights; {where}"))
    _check_data(cfg.data, origin, problems)
    problems += [Problem(origin("run.tags"), "run.tags", problem, newer_rule=True)
                 for problem in map(tag_problem, cfg.run.tags) if problem]
    if problem := name_problem(cfg.run.name):
        problems.append(Problem(origin("run.name"), "run.name", problem, newer_rule=True))
    ckpt = cfg.teacher.checkpoint
    if cfg.method.needs_teacher and ckpt and not Path(ckpt).expanduser().is_file():
        problems.append(Problem(origin("teacher.checkpoint"), "teacher.checkpoint",
                                f"no such file: {ckpt}{_path_hint(ckpt)}", environment=True))
    method = cfg.method
    if isinstance(method, FBTParams) and method.nce_tau_min > method.nce_tau_max:
        problems.append(Problem(origin("method.nce_tau_min", "method.nce_tau_max"), "method.nce_tau_min",
                                f"expected ≤ nce_tau_max ({method.nce_tau_max}), got {method.nce_tau_min}"))
    elif isinstance(method, FBTParams) and not method.nce_tau_min <= method.nce_tau <= method.nce_tau_max:
        problems.append(Problem(origin("method.nce_tau", "method.nce_tau_min", "method.nce_tau_max"), "method.nce_tau",
                                f"expected within [nce_tau_min, nce_tau_max] = "
                                f"[{method.nce_tau_min}, {method.nce_tau_max}], got {method.nce_tau}"))


def is_error(problem: Problem) -> bool:
    """Whether `problem` makes a preset invalid, as `presets validate` tells: a wrong value, or a
    file that cannot be read. What this machine lacks (a dataset folder) is not."""
    return not problem.environment or problem.key == "preset"


def spoiled(problems: Iterable[Problem]) -> Callable[[str], bool]:
    """Whether a key's value, in a config built despite `problems`, is the schema's default rather
    than what the preset said: its key, its section (`train = 3`) or the whole file was wrong."""
    wrong = {p.key for p in problems if is_error(p)}
    return lambda key: "preset" in wrong or any(key == w or key.startswith(w + ".") for w in wrong)


def trains_teacher(cfg: Config) -> bool:
    """Whether a run of `cfg` trains its teacher with [teacher.recipe] (unless one is cached): no
    checkpoint and no pretrained weights to load."""
    return cfg.method.needs_teacher and not cfg.teacher.checkpoint and not cfg.teacher.kwargs.get("pretrained")


@dataclass(frozen=True)
class Doubt:
    """A value that runs but is seldom meant, as data: fbt warns of it and runs it anyway (a learning
    rate of 0 is how one checks that nothing moves)."""

    key: str
    causes: tuple[str, ...]  # keys whose --set makes `key`'s value doubtful, as in origin()
    applies: Callable[[Config], bool]
    message: str


HIGH_LR = {"sgd": 1.0, "adamw": 0.1}  # above these a run seldom trains: its loss soon goes non-finite
_HIGH_LR_SAID = "is above 1 for SGD or 0.1 for AdamW: training seldom survives it (a non-finite loss ends the run)"

DOUBTS = (
    Doubt("optim.lr", (), lambda c: c.optim.lr == 0,
          "is 0: no weight will learn (BatchNorm's running statistics still move)"),
    Doubt("optim.lr", ("optim.name",), lambda c: c.optim.lr > HIGH_LR[c.optim.name], _HIGH_LR_SAID),
    Doubt("teacher.recipe.lr", ("teacher.checkpoint", "teacher.kwargs"),
          lambda c: trains_teacher(c) and c.teacher.recipe.lr == 0,
          "is 0: the teacher trained from scratch will not learn"),
    Doubt("teacher.recipe.lr", ("teacher.recipe.optimizer", "teacher.checkpoint", "teacher.kwargs"),
          lambda c: trains_teacher(c) and c.teacher.recipe.lr > HIGH_LR[c.teacher.recipe.optimizer], _HIGH_LR_SAID),
)


@functools.cache
def path_keys() -> tuple[tuple[str, ...], ...]:
    """The key paths of the settings that are files or folders (setting(path=True)). [method] is
    left out: which class holds its settings depends on the preset (and none is a path)."""
    return tuple(key for name, cls in SECTIONS.items() if name != "method"
                 for key, f, _ in leaf_fields(cls, (name,)) if f.metadata.get("path"))


def anchor_paths(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """`table` (a preset's or the --set overrides') with its relative paths made absolute from `base`:
    a preset's own from its folder (a preset and the checkpoint beside it move together), a --set's
    from the working directory, as on any command line. Absolute, they mean the same to a run
    resumed from anywhere and in a preset saved elsewhere. `~` is left for the point of use."""
    out = table
    for *parents, leaf in path_keys():
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            continue  # absent, not a string (the schema says so), or absolute already
        patch: dict[str, Any] = {leaf: os.path.normpath(base.absolute() / value)}
        for part in reversed(parents):
            patch = {part: patch}
        out = merge(out, patch)
    return out


def anchored_merge(table: dict[str, Any], base: Path, over: dict[str, Any]) -> dict[str, Any]:
    """A preset's table, whose relative paths start at `base`, under --set overrides, whose start at
    the working directory."""
    return merge(anchor_paths(table, base), anchor_paths(over, Path.cwd()))


def _check_data(data: DataSection, origin, problems: list[Problem]) -> None:
    if data.randaugment:
        try:
            parse_randaugment(data.randaugment)
        except ValueError as exc:
            problems.append(Problem(origin("data.randaugment"), "data.randaugment", str(exc)))
    if len(data.rrc_scale) != 2 or data.rrc_scale[0] > data.rrc_scale[1]:
        problems.append(Problem(origin("data.rrc_scale"), "data.rrc_scale",
                                f"expected [low, high] with low ≤ high, got {data.rrc_scale}"))
    info = DATASETS.get(data.name)
    if info is None:
        return  # already reported by the schema
    if not info.native_size and not data.img_size:  # folders hold images of any size
        problems.append(Problem(origin("data.img_size", "data.name"), "data.img_size",
                                f'dataset "{data.name}" has no native size; set the side the models see, e.g. 224'))
    if info.train_images and data.subset > info.train_images:
        problems.append(Problem(origin("data.subset", "data.name"), "data.subset",
                                f"{data.subset:,} images is more than {data.name}'s {info.train_images:,} training "
                                "images (0 trains on all of them)", newer_rule=True))
    if data.subset and data.subset < data.batch_size:  # training drops the last partial batch
        problems.append(Problem(origin("data.subset", "data.batch_size"), "data.subset",
                                f"{data.subset} images cannot fill one batch of data.batch_size = {data.batch_size}"))
    root = data.root or info.default_root
    root_origin = origin("data.root", "data.name")  # the folder the dataset needs, or its layout
    if info.needs_root and not root:
        problems.append(Problem(root_origin, "data.root", f'dataset "{data.name}" needs a root folder'))
    elif root and not (data.download or Path(root).expanduser().is_dir()):
        hint = _path_hint(root) or (" (apt-get install -y dataset-fashion-mnist)" if data.name == "fashion_mnist" else "")
        missing_origin = origin("data.root") if data.root else root_origin  # else the dataset's default folder
        problems.append(Problem(missing_origin, "data.root", f"no such folder: {root}{hint}", environment=True))
    elif root and info.folder and not data.download and not (Path(root).expanduser() / info.folder).is_dir():
        problems.append(Problem(root_origin, "data.root",
                                f"{root} has no {info.folder}/ folder (torchvision's {data.name} layout); "
                                "set data.download = true to fetch it", environment=True))
    elif root and not info.in_memory:
        missing = [f"{s}/" for s in ("train", "val") if not (Path(root).expanduser() / s).is_dir()]
        if missing:
            problems.append(Problem(root_origin, "data.root",
                                    f"{root} has no {' or '.join(missing)} folder (expected train/<class>/… and "
                                    "val/<class>/…)", environment=True))


def _path_hint(path: str) -> str:
    """' (did you mean "/data/cifar"?)' for a near miss among the existing parent's entries."""
    target = Path(path).expanduser()
    try:
        siblings = [p.name for p in target.parent.iterdir()] if target.parent.is_dir() else []
    except OSError:
        return ""
    close = did_you_mean(target.name, siblings)  # ' (did you mean "name"?)': put the folder in front
    return close.replace('"', f'"{target.parent}/', 1) if close else ""


def resolve(preset: str | Path | None, overrides: Iterable[str] = ()) -> Resolved:
    """The validated config of `preset` + overrides. Raises PresetError listing every problem."""
    resolved = collect(preset, overrides)
    if resolved.problems:
        raise PresetError(resolved.problems)
    return resolved


def collect(preset: str | Path | None, overrides: Iterable[str] = (), *, relative_to: Path | None = None) -> Resolved:
    """Like resolve(), but returns the problems instead of raising (for `validate` and the TUI form).
    `relative_to`: where the file's relative paths start, when not at its own folder."""
    problems: list[Problem] = []
    raw, table, source = b"", {}, "<defaults>"
    if preset is not None:
        try:
            path = find_preset(str(preset))
        except PresetError as exc:
            return Resolved(Config(), str(preset), b"", exc.problems)
        source = str(path)
        raw, table, problems = read_preset(path)
    over, over_problems = parse_overrides(overrides)
    if problems:  # unreadable or not TOML: "x is required" for every key would only be noise
        return Resolved(Config(), source, raw, problems + over_problems)
    problems += over_problems
    from_set = _dotted_keys(over)
    table = anchored_merge(table, relative_to or Path(source).parent, over)

    def origin(key: str, *causes: str) -> str:
        """Where a problem with `key` comes from: --set where it or a key that made it a problem
        (`causes`: data.name, for a root that dataset needs) was set there."""
        return SET_SOURCE if from_set.intersection((key, *causes)) else source

    cfg = build_config(table, origin, problems)
    # Cross-field checks run on a partly invalid config too (invalid fields hold their defaults),
    # but a key already reported is not reported twice.
    reported = {p.key for p in problems}
    semantic: list[Problem] = []
    check_semantics(cfg, origin, semantic)
    problems += [p for p in semantic if p.key not in reported]
    doubts = [Problem(origin(d.key, *d.causes), d.key, d.message) for d in DOUBTS
              if d.key not in reported and d.applies(cfg)]
    return Resolved(cfg, source, raw, problems, doubts=doubts)
