"""
A plain (non-editable) install of the wheel makes `twistd communigate`
work: the plugin file lives in the namespace package twisted.plugins and is
easy to lose from a wheel.
"""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--no-build-isolation", "--wheel-dir", str(out), ROOT],
        check=True, cwd=out, timeout=300,
    )
    (path,) = out.glob("communigate-*.whl")
    return path


def test_the_wheel_ships_the_plugin_and_not_twisted_itself(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/communigate_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "communigate/plugins/cli.py" in names


def test_twistd_finds_the_plugin_in_a_fresh_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The dependencies come from this test run's environment (no network),
    # the package itself only from the wheel.
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    with open(os.path.join(fresh_site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True, timeout=300,
    )
    # twistd's console script belongs to Twisted, installed elsewhere here;
    # its entry point is the same function.
    twistd = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    done = subprocess.run(
        [str(python), "-c", twistd, "communigate", "--help"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--data=" in done.stdout and "--cli=" in done.stdout and "--http=" in done.stdout
    located = subprocess.run(
        [str(python), "-c", "import communigate; print(communigate.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout
    assert located.startswith(fresh_site)
