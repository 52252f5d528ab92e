import json
import subprocess
import sys

from PIL import Image

from solvent.generation import parse_infotext


def test_solvent_generate_writes_a_png_other_tools_can_parse(tmp_path, home):
    env = {"SOLVENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "solvent.cli.main", "generate", "a red circle", "--out", str(tmp_path / "x.png"),
         "--seed", "7", "--n", "2", "--json", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    files = [tmp_path / "x-0.png", tmp_path / "x-1.png"]
    assert all(f.is_file() for f in files)
    assert "seed 7" in out.stdout and "seed 8" in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["seeds"] == [7, 8] and summary["usage"]["steps_run"] == 20
    params = parse_infotext(Image.open(files[1]).info["parameters"])
    assert params["prompt"] == "a red circle" and params["Seed"] == "8" and params["Model"] == "solvent-tiny"


def test_solvent_generate_bad_input_is_one_clear_line(home):
    env = {"SOLVENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "generate", "x", "--size", "100x64"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: `width` has to be divisible by 8 for solvent-tiny models but is 100."


def test_every_command_has_help():
    from solvent.cli.main import build_parser

    parser = build_parser()
    for cmd in (["generate"], ["models"], ["models", "add"], ["models", "pull"], ["samplers"]):
        try:
            parser.parse_args([*cmd, "--help"])
        except SystemExit as e:
            assert e.code == 0


def test_models_add_a_flux_file_with_its_components_then_generate(tmp_path, home):
    """As a ComfyUI user would: the transformer file, then its clip_l, t5xxl and ae files beside it."""
    from tests.flow_models import build_flux, write_flux_files

    paths = write_flux_files(build_flux(schnell=True), tmp_path / "comfy")
    env = {"SOLVENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "solvent.cli.main"]
    out = subprocess.run([*cli, "models", "add", str(paths["path"]), "--id", "flux1-schnell", "--clip-l",
                          str(paths["clip_l"]), "--t5", str(paths["t5"]), "--vae", str(paths["vae"]), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "flux single_file" in out.stdout and "with clip_l, t5, vae" in out.stdout and "schnell defaults: 4 steps" \
        in out.stdout
    out = subprocess.run([*cli, "generate", "a kite", "--model", "flux1-schnell", "--size", "256x256", "--seed", "3",
                          "--shift", "2", "--out", str(tmp_path / "f.png"), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    params = parse_infotext(Image.open(tmp_path / "f.png").info["parameters"])
    assert params["Steps"] == "4" and params["Model"] == "flux1-schnell" and params["Shift"] == "2"
    assert params["Distilled CFG Scale"] == "0"  # schnell: no guidance
    out = subprocess.run([*cli, "models", "add", str(paths["path"]), "--id", "bare", "--quiet"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "--clip-l" in out.stderr and "--t5" in out.stderr
