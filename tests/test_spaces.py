"""Search-space files: expansion, the shipped grids, and every validation error."""

from pathlib import Path

import pytest

from gridstudy.errors import UserError
from gridstudy.spaces import load_space

SPACES = Path(__file__).parent.parent / "search_spaces"


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, runs", [("paper_gan", 6144), ("paper_ebgan", 512),
                                        ("paper_ebgan_pt", 512)])
def test_paper_grids_have_the_papers_size(name, runs):
    space = load_space([SPACES / f"{name}.yaml"])
    configs = space.runs
    assert len(configs) == runs
    assert len({c.run_id() for c in configs}) == runs


def test_paper_ebgan_pt_uses_the_papers_weight():
    configs = load_space([SPACES / "paper_ebgan_pt.yaml"]).runs
    settings = {(c.model, c.pt_weight, c.lr, c.margin) for c in configs}
    assert settings == {("ebgan_pt", 0.1, 1e-3, 10.0)}


def test_every_shipped_space_loads():
    for path in SPACES.glob("*.yaml"):
        assert load_space([path]).runs, path


def test_blocks_seeds_and_model_axis(tmp_path):
    path = write(tmp_path, """
blocks:
  - model: gan
    axes: {lr: [0.001, 0.0001], n_layers_g: [2, 3]}
    fixed: {steps: 10}
    seeds: [0, 1]
  - name: energy
    axes: {model: [ebgan, ebgan_pt]}
""")
    space = load_space([path])
    runs = space.runs
    assert len(runs) == 2 * 2 * 2 + 2
    assert sum(r.model == "gan" and r.steps == 10 for r in runs) == 8
    assert {r.seed for r in runs if r.model == "gan"} == {0, 1}
    assert {r.pt_weight for r in runs if r.model == "ebgan_pt"} == {0.1}
    summary = space.summary()
    assert summary.startswith("10 runs: ebgan 1, ebgan_pt 1, gan 8")
    assert "axis lr: [0.001, 0.0001]" in summary


def test_single_block_file_and_overrides(tmp_path):
    path = write(tmp_path, "model: ebgan\naxes: {margin: [5, 10]}\n")
    runs = load_space([path], {"steps": 7}).runs
    assert [(r.margin, r.steps) for r in runs] == [(5.0, 7), (10.0, 7)]


def test_identical_runs_from_two_blocks_count_once(tmp_path):
    a = write(tmp_path, "model: gan\naxes: {lr: [0.001, 0.01]}\n", "a.yaml")
    b = write(tmp_path, "model: gan\naxes: {lr: [0.001]}\n", "b.yaml")
    assert len(load_space([a, b]).runs) == 2


@pytest.mark.parametrize("text, message", [
    ("model: gan\naxes: {lr: [0.1,\n", "malformed YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("model: gan\naxes: {learning_rate: [0.1]}\n", "axes: unknown key 'learning_rate'"),
    ("model: gan\ngrid: {}\n", "unknown key 'grid'"),
    ("model: gan\naxes: {lr: 0.1}\n", "axes.lr: expected a list"),
    ("model: gan\naxes: {lr: []}\n", "axes.lr: empty axis"),
    ("model: gan\naxes: {lr: [0.1, 0.1]}\n", "axes.lr: duplicate value 0.1"),
    ("model: gan\naxes: {lr: [0.1, -1]}\n", "axes.lr: must be a finite number > 0"),
    ("model: gan\naxes: {size_d: [64, 0]}\n", "axes.size_d: must be a positive integer"),
    ("model: gan\naxes: {size_d: [64.5]}\n", "axes.size_d: expected an integer"),
    ("model: gan\naxes: {optim_d: [adam, rmsprop]}\n", "axes.optim_d: 'rmsprop' is not one of"),
    ("model: gan\naxes: {dropout_d: [yes please]}\n", "axes.dropout_d: expected true or false"),
    ("model: gan\nfixed: {n_layers_g: 1}\n", "fixed.n_layers_g: must be an integer >= 2"),
    ("axes: {lr: [0.1]}\n", "model: missing"),
    ("model: gan\naxes: {lr: [0.1]}\nfixed: {lr: 0.2}\n", "lr is given twice (axes, zip or fixed)"),
    ("model: gan\nseeds: [0, -1]\n", "seeds must be integers >= 0"),
    ("model: gan\naxes: {seed: [1, 2]}\n", "use the block's seeds"),
    ("model: gan\nfixed: {pt_weight: 0.1}\n", "only ebgan_pt uses the pulling-away term"),
    ("blocks: []\n", "non-empty list"),
])
def test_bad_files_are_one_line_errors_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_space([path])
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="search space file not found"):
        load_space([tmp_path / "nope.yaml"])


def test_set_cannot_override_an_axis(tmp_path):
    path = write(tmp_path, "model: gan\naxes: {lr: [0.1, 0.01]}\n")
    with pytest.raises(UserError, match="--set lr"):
        load_space([path], {"lr": 0.5})


def test_a_sweep_command_expands_its_space_once(monkeypatch, capsys):
    """--dry-run, the size check and the sweep all read the runs load_space expanded."""
    from gridstudy import spaces
    from gridstudy.cli import main

    calls = []
    original = spaces.Block.expand

    def counting(self, overrides=None):
        calls.append(self.name)
        return original(self, overrides)

    monkeypatch.setattr(spaces.Block, "expand", counting)
    assert main(["sweep", str(SPACES / "smoke.yaml"), "--study", "x", "--dry-run"]) == 0
    assert len(calls) == len(set(calls)), f"a block was expanded more than once: {calls}"


def test_zipped_keys_vary_together(tmp_path):
    path = tmp_path / "z.yaml"
    path.write_text("""
model: gan
axes: {n_layers_d: [2, 3]}
zip:
  - {size_g: [100, 200], size_d: [32, 64]}
  - {optim_d: [adam, sgd, adam], optim_g: [adam, sgd, sgd], lr: [0.0001, 0.01, 0.01]}
seeds: [0, 1]
""")
    space = load_space([path])
    pairs = {(r.size_g, r.size_d) for r in space.runs}
    settings = {(r.optim_d, r.optim_g, r.lr) for r in space.runs}
    assert len(space.runs) == 2 * 2 * 3 * 2 == space.blocks[0].size()
    assert pairs == {(100, 32), (200, 64)}
    assert settings == {("adam", "adam", 0.0001), ("sgd", "sgd", 0.01), ("adam", "sgd", 0.01)}
    assert "zip size_g, size_d: [(100, 32), (200, 64)]" in space.summary()
    with pytest.raises(UserError, match="--set size_g"):
        load_space([path], {"size_g": 50})


@pytest.mark.parametrize("zipped, message", [
    ("[{size_g: [1, 2], size_d: [3]}]", "lists of different lengths"),
    ("[{size_g: [100, 100], size_d: [32, 32]}]", "duplicate level"),
    ("{size_g: [1]}", "expected a list of groups"),
    ("[{sizeG: [1]}]", "unknown key 'sizeG'"),
    ("[{size_g: [100], n_layers_d: [2]}]", "n_layers_d is given twice"),
    ("[{size_g: [-1]}]", "size_g"),
])
def test_bad_zip_groups_are_one_line_errors(tmp_path, zipped, message):
    path = tmp_path / "z.yaml"
    path.write_text(f"model: gan\naxes: {{n_layers_d: [2, 3]}}\nzip: {zipped}\n")
    with pytest.raises(UserError, match=message) as info:
        load_space([path])
    assert "\n" not in str(info.value)
