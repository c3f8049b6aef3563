"""Bad input through the real `fbt run`: exit 2 (usage/config) or 3 (environment), one clear line
per problem naming the file, dotted key or path with a "did you mean" — and no run folder left."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PRESETS, REPO, run_fbt
from fbt_engine.models.pretrained import PROXY_VARIABLES
from helpers_engine import MLP_TO_CNN, assert_clean_error, run_dirs

PRESET_TEXT = (PRESETS / "mlp_to_cnn.toml").read_text(encoding="utf-8")
HAS_CUDA_DEVICE = Path("/dev/nvidiactl").exists()


def _preset(tmp_path: Path, text: str, name: str = "mine.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# (id, --set items, exit code, needles in stderr); "{tmp}" is the test's tmp_path
SET_CASES = [
    ("wrong-type", ['train.epochs="two"'], 2, ["--set: train.epochs: expected an integer, got \"two\""]),
    ("out-of-range", ["optim.momentum=1.5"], 2, ["optim.momentum: expected a value ≤ 1, got 1.5"]),
    ("unknown-key", ["train.epoch=2"], 2, ['train.epoch: unknown key (did you mean "epochs"?)']),
    ("unknown-section", ["trian.epochs=2"], 2, ['trian: unknown section (did you mean "train"?)']),
    ("unknown-model", ["student.model=resnet10_cifra"], 2,
     ['student.model: unknown model "resnet10_cifra" (did you mean "resnet10_cifar"?)']),
    ("unknown-teacher", ["teacher.model=mixer_nan"], 2, ['teacher.model: unknown model "mixer_nan"', '"mixer_nano"']),
    ("unknown-dataset", ["data.name=fashion_mnist_6k"], 2,
     ['data.name: expected one of', 'got "fashion_mnist_6k" (did you mean "fashion_mnist_5k"?)']),
    ("unknown-method", ["method.name=fbtt"], 2, ['method.name: expected one of', '(did you mean "fbt"?)']),
    ("bad-toml", ["train.epochs=[1,"], 2, ["--set: train.epochs: value '[1,' is not valid TOML"]),
    ("no-equals", ["train.epochs"], 2, ["--set: train.epochs: expected key=value"]),
    ("nan", ["optim.lr=nan"], 2, ["optim.lr: expected a finite number, got nan"]),
    ("subset-below-one-batch", ["data.subset=10"], 2, ["data.subset: 10 images cannot fill one batch"]),
    ("subset-beyond-the-dataset", ["data.subset=10000000"], 2,
     ["data.subset: 10,000,000 images is more than fashion_mnist_5k's 5,000 training images (0 trains on all"]),
    ("missing-checkpoint", ["teacher.checkpoint={tmp}/none/teacher.pt"], 3,
     ["teacher.checkpoint: no such file: {tmp}/none/teacher.pt"]),
    ("missing-data-folder", ["data.name=fashion_mnist", "data.root={tmp}/nothing"], 3,
     ["data.root: no such folder: {tmp}/nothing"]),
    ("cifar-without-its-files", ["data.name=cifar10", "data.root={tmp}"], 3,
     ["data.root: {tmp} has no cifar-10-batches-py/ folder", "data.download = true"]),
    # the preset names no dataset that needs a folder: --set's data.name made data.root a problem
    ("cifar-without-root", ["data.name=cifar100"], 2, ['--set: data.root: dataset "cifar100" needs a root folder']),
    ("imagefolder-layout", ["data.name=imagefolder", "data.root={tmp}"], 2,
     ['--set: data.img_size: dataset "imagefolder" has no native size',
      "--set: data.root: {tmp} has no train/ or val/ folder"]),
    ("device-typo", ['run.device="gpu"'], 2, ["run.device: expected auto, cpu, cuda or cuda:N, got \"gpu\""]),
    ("name-with-a-tab", ['run.name="a\tb"'], 2,
     ['--set: run.name: name "a\\tb": a name cannot hold control characters (tabs, newlines)']),
]


@pytest.mark.parametrize("sets,code,needles", [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_bad_overrides(fbt_home, tmp_path, sets, code, needles):
    args = [a for s in sets for a in ("--set", s.replace("{tmp}", str(tmp_path)))]
    result = run_fbt("run", MLP_TO_CNN, *args, "--json")
    assert_clean_error(result, code, *[n.replace("{tmp}", str(tmp_path)) for n in needles], home=fbt_home)
    problems = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(problems) == (2 if "imagefolder" in str(sets) else 1), result.stderr  # one line per problem


def test_run_names(fbt_home):
    """Any text on one line (beyond U+FFFF too: JSON's surrogate pairs made it invalid TOML, blamed on
    --set), but no control character and not "last"."""
    emoji = run_fbt("run", MLP_TO_CNN, "--name", "ünï-名前-🚀", "--set", "train.epochs=0")
    assert_clean_error(emoji, 2, "train.epochs: expected a value ≥ 1, got 0", home=fbt_home)
    assert emoji.stderr.count("error: ") == 1
    for name, needle in (("a\nb", '--name: name "a\\nb": a name cannot hold control characters'),
                         ("bad\udcff", '--name: name "bad\\udcff": a name cannot hold control characters (tabs, '
                                       'newlines) or bytes that are not UTF-8'),  # argv byte 0xff
                         ("last", '--name: a run cannot be named "last": it always means the newest run')):
        assert_clean_error(run_fbt("run", MLP_TO_CNN, "--name", name), 2, needle, home=fbt_home)


def test_misspelt_key_in_a_preset_file_names_file_and_key(fbt_home, tmp_path):
    preset = _preset(tmp_path, PRESET_TEXT.replace("epochs = 4", "epoch = 4"))
    result = run_fbt("run", preset)
    assert_clean_error(result, 2, f'{preset}: train.epoch: unknown key (did you mean "epochs"?)', home=fbt_home)
    assert result.stderr.count("error: ") == 1


def test_every_problem_of_a_preset_at_once(fbt_home, tmp_path):
    text = (PRESET_TEXT.replace("epochs = 4", "epoch = 4").replace('model = "resnet10_cifar"', 'model = "resnet_10"')
            .replace("lr = 0.05", 'lr = "0.05"').replace("[sched]", "[schedule]"))
    preset = _preset(tmp_path, text)
    result = run_fbt("run", preset)
    assert_clean_error(result, 2, f"{preset}: train.epoch: unknown key", f"{preset}: student.model: unknown model",
                       f"{preset}: optim.lr: expected a number", f'{preset}: schedule: unknown section (did you mean "sched"?)',
                       home=fbt_home)
    assert result.stderr.count("error: ") == 4
    validate = run_fbt("presets", "validate", preset, MLP_TO_CNN)
    assert validate.returncode == 2 and validate.stderr == result.stderr
    assert validate.stdout.strip() == f"ok: {MLP_TO_CNN}"


def test_a_preset_that_is_not_toml(fbt_home, tmp_path):
    preset = _preset(tmp_path, "[run\nname = 'x'\n")
    assert_clean_error(run_fbt("run", preset), 2, f"{preset}: preset: not valid TOML", "line 1", home=fbt_home)
    with_bom = tmp_path / "bom.toml"  # saved by an editor that starts UTF-8 with a byte-order mark
    with_bom.write_bytes(b"\xef\xbb\xbf" + PRESET_TEXT.encode())
    assert_clean_error(run_fbt("run", str(with_bom)), 2, "the file starts with a byte-order mark, which TOML does not "
                       "allow: save it as UTF-8 without one", home=fbt_home)


@pytest.mark.parametrize("ref,needles", [
    ("nope.toml", ["nope.toml: preset: no such file or preset"]),
    ("mlp_to_cnx", ['mlp_to_cnx: preset: no such file or preset (did you mean "mlp_to_cnn"?)']),
    ("presets", ["presets: preset: a folder, not a preset: give a .toml file or a preset's name (fbt presets ls)"]),
])
def test_a_missing_preset(fbt_home, ref, needles):
    """A mistyped preset is a usage error (2), not something this machine lacks (3)."""
    assert_clean_error(run_fbt("run", ref), 2, *needles, home=fbt_home)


@pytest.mark.parametrize("edit, code, needle", [
    (lambda text: text.replace("batch_size = 128", "batch_sise = 128"), 2, "data.batch_sise: unknown key"),
    (lambda text: text.replace('name = "fashion_mnist_5k"', 'name = "fashion_mnist"\nroot = "/no/such/folder"'),
     3, "data.root: no such folder"),
])
def test_doctor_on_a_preset_exits_as_fbt_run_would(fbt_home, tmp_path, edit, code, needle):
    """`fbt doctor --preset` answers whether the preset can run here: what `fbt run` refuses is a ✗
    with `fbt run`'s exit code (a missing data folder was a warning, exit 0; a typo exited 3)."""
    preset = _preset(tmp_path, edit(PRESET_TEXT))
    assert run_fbt("run", preset).returncode == code
    doctor = run_fbt("doctor", "--preset", preset)
    assert doctor.returncode == code and "Traceback" not in doctor.stderr
    (line,) = [line for line in doctor.stdout.splitlines() if needle in line]
    assert line.startswith("✗ preset")


def test_doctor_downloads_nothing(fbt_home, tmp_path):
    """A check touches neither the network nor the disk: data a run would download is a warning
    (as in `presets validate`), and no folder is made for it."""
    root = tmp_path / "data" / "cifar100"
    doctor = run_fbt("doctor", "--preset", "paper/cifar100_vit_s_to_resnet18", "--set", f'data.root="{root}"')
    assert doctor.returncode == 0 and "Traceback" not in doctor.stderr, doctor.stderr
    (line,) = [line for line in doctor.stdout.splitlines() if "downloads it there first" in line]
    assert str(root) in line and not (tmp_path / "data").exists()


def test_a_data_home_fbt_cannot_use_is_named_as_one(tmp_path):
    """FBT_HOME naming a file: doctor ticked it, and `runs ls` said "File exists" of a path the
    user had to recognise as FBT_HOME."""
    home = tmp_path / "a-file"
    home.write_text("")
    doctor = run_fbt("doctor", home=home)
    assert f"✗ data home              {home} (FBT_HOME): {home} is not a folder" in doctor.stdout.splitlines()
    later = tmp_path / "not" / "yet"  # a first run makes it: a check does not
    doctor = run_fbt("doctor", home=later)
    assert f"✓ data home              {later} (FBT_HOME) (made by the first run)" in doctor.stdout.splitlines()
    assert not (tmp_path / "not").exists()
    listed = run_fbt("runs", "ls", home=home)
    assert listed.returncode == 3
    assert listed.stderr == f"error: {home}: File exists (fbt's data home is {home}, from FBT_HOME)\n"


def test_a_preset_name_runs_the_built_in_one_and_user_presets_shadow_it(fbt_home, tmp_path):
    user = fbt_home / "config" / "presets"
    user.mkdir(parents=True)
    (user / "mlp_to_cnn.toml").write_text(PRESET_TEXT.replace("[train]", "[train]\nbogus = 1"), encoding="utf-8")
    result = run_fbt("run", "mlp_to_cnn")
    assert_clean_error(result, 2, f"{user / 'mlp_to_cnn.toml'}: train.bogus: unknown key", home=fbt_home)


@pytest.mark.parametrize("args, needle", [
    (["--tag", ""], "--tag: a tag cannot be empty"),
    (["--tag", "a,b"], 'tag "a,b": a tag cannot hold a comma'),
    (["--set", 'run.tags=["fine", "x,y"]'], 'run.tags: tag "x,y": a tag cannot hold a comma'),
    (["--tag", "two words"], 'tag "two words": a tag is one word, without spaces'),
])
def test_a_tag_that_lists_could_not_show(fbt_home, args, needle):
    """`runs ls` joins tags with commas and the app reads "-tag" as removal: such tags are refused."""
    assert_clean_error(run_fbt("run", MLP_TO_CNN, *args), 2, needle, home=fbt_home)


@pytest.mark.parametrize("args, needle", [
    (["--nproc-per-node", "0"], "--nproc-per-node: at least 1 process, got 0"),
    (["--node-rank", "1"], "--node-rank 1: a rank among several machines; give --nnodes too"),
    (["--nnodes", "2"], "--nnodes 2: give --rdzv-endpoint HOST:PORT, where the machines meet"),
])
def test_process_flags_torchrun_would_misread_are_refused(fbt_home, args, needle):
    """--nproc-per-node 0 trained as one process, --node-rank alone was ignored, and --nnodes 2
    with no meeting place waited for ever without a word."""
    assert_clean_error(run_fbt("run", MLP_TO_CNN, *args), 2, needle, home=fbt_home)


def test_doctor_says_each_problem_of_a_preset_on_its_own_line(fbt_home):
    doctor = run_fbt("doctor", "--preset", MLP_TO_CNN, "--set", "train.epochs=0", "--set", "optim.lr=-1")
    assert doctor.returncode == 2
    problems = [line for line in doctor.stdout.splitlines() if line.startswith("✗ preset")]
    assert len(problems) == 2 and any("train.epochs" in p for p in problems) and any("optim.lr" in p for p in problems)


def test_run_without_a_preset_and_resume_of_nothing(fbt_home):
    assert_clean_error(run_fbt("run"), 2, "give a preset", home=fbt_home)
    assert_clean_error(run_fbt("run", "--resume", "last"), 2, "no runs yet", home=fbt_home)
    assert_clean_error(run_fbt("run", MLP_TO_CNN, "--id", "not-an-id"), 2, "--id not-an-id", home=fbt_home)
    usage = run_fbt("run", MLP_TO_CNN, "--device", "tpu")
    assert usage.returncode == 2 and "invalid choice: 'tpu'" in usage.stderr and run_dirs(fbt_home) == []


def test_a_cuda_device_that_is_not_there_exits_3(fbt_home):
    if not HAS_CUDA_DEVICE:  # the case the issue names
        for how in (["--device", "cuda"], ["--set", 'run.device="cuda"']):  # the flag sets the key
            result = run_fbt("run", MLP_TO_CNN, *how)
            assert_clean_error(result, 3, "run.device: cuda: CUDA is not available", "--device cpu",
                               home=fbt_home)
    else:  # a GPU machine: ask for a device it does not have
        result = run_fbt("run", MLP_TO_CNN, "--set", 'run.device="cuda:99"')
        assert_clean_error(result, 3, "run.device: cuda:99: only", home=fbt_home)


def test_an_unreadable_teacher_checkpoint_exits_3(fbt_home, tmp_path):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"not a checkpoint")
    result = run_fbt("run", MLP_TO_CNN, "--set", f"teacher.checkpoint={bad}")
    assert_clean_error(result, 3, f"teacher.checkpoint: cannot read {bad}", home=fbt_home)


def test_pretrained_weights_neither_cached_nor_reachable_exit_3_at_once(fbt_home, tmp_path, monkeypatch):
    """Offline, the hub client would retry for about 50 s before failing: the run is refused as
    soon as the hub's host refuses the connection, naming the weights and the cache it looked in."""
    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for inherited in (*PROXY_VARIABLES, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(inherited, raising=False)
    result = run_fbt("run", MLP_TO_CNN, "--set", 'teacher.model="test_resnet.r160_in1k"',
                     "--set", "teacher.kwargs.pretrained=true")
    assert_clean_error(result, 3, "teacher.kwargs.pretrained: timm/test_resnet.r160_in1k's weights are not in the "
                       f"Hugging Face cache ({tmp_path / 'hub'})", f"http://127.0.0.1:{port} cannot be reached",
                       "or set teacher.kwargs.pretrained = false to train the teacher here, or give teacher.checkpoint",
                       home=fbt_home)
    assert "Retrying" not in result.stderr


def test_a_bad_model_keyword_names_the_dotted_key(fbt_home):
    result = run_fbt("run", MLP_TO_CNN, "--set", "student.kwargs.bogus=1")
    assert_clean_error(result, 2, "student.kwargs", "bogus", home=fbt_home)


def test_the_app_without_a_terminal_says_so_and_exits(fbt_home):
    """`fbt < /dev/null > out`: the app drew its escape codes into the file and waited for ever."""
    result = subprocess.run([sys.executable, "-m", "fbt_tui.launch"], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, cwd=REPO)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: the app needs a terminal (stdin and stdout)")


def test_doctor_says_which_folder_denies_a_look(tmp_path, monkeypatch):
    """A parent of the data home that denies a look (Path.exists raises there, as Python 3.11's
    does on EACCES) stopped the whole report with one error line."""
    from fbt_engine.doctor import _home_check, _nearest_existing

    closed = tmp_path / "closed"
    real_exists = Path.exists

    def exists(path: Path) -> bool:
        if path.parent == closed:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", exists)
    home = closed / "fbt" / "home"
    assert _home_check(home, _nearest_existing(home))["detail"].endswith(f"cannot look in {closed}: Permission denied")
