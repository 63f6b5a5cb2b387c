"""Every setting read from the environment is documented and listed in .env.example."""

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pwd_site import env

ROOT = Path(__file__).resolve().parent.parent
READS = re.compile(r'env\w*\(\s*"([A-Z][A-Z0-9_]+)"')


def settings_variables() -> set[str]:
    names = set(READS.findall((ROOT / "pwd_site" / "settings.py").read_text()))
    for script in ["node-image/build.sh", "scripts/prereqs.sh"]:
        text = (ROOT / script).read_text()
        names |= set(re.findall(r"\$\{((?:PWD|DEBIAN)_[A-Z0-9_]+):?-", text))
    return names


def test_every_setting_is_in_env_example():
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert settings_variables() - listed == set()


def test_every_setting_is_documented():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    undocumented = {name for name in settings_variables() if f"`{name}`" not in docs}
    assert undocumented == set()


def test_a_bad_duration_names_the_variable(monkeypatch):
    monkeypatch.setenv("PWD_IDLE_TIMEOUT", "soon")
    with pytest.raises(ImproperlyConfigured, match="PWD_IDLE_TIMEOUT"):
        env.envduration("PWD_IDLE_TIMEOUT", "30m")


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("4h", 14400), ("250ms", 0.25)]
)
def test_durations_parse(raw, seconds):
    assert env.parse_duration(raw) == seconds


@pytest.mark.parametrize(
    ("raw", "size"), [("1m", 1024**2), ("1g", 1024**3), ("64MiB", 64 * 1024**2), ("512", 512)]
)
def test_sizes_parse(raw, size):
    assert env.parse_size(raw) == size


def test_rates_parse():
    assert env.parse_rate("30/h") == (30, 3600)
    with pytest.raises(ValueError, match="thirty"):
        env.parse_rate("thirty an hour")


def test_booleans_and_whole_numbers_refuse_garbage(monkeypatch):
    monkeypatch.setenv("PWD_DEBUG", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="PWD_DEBUG"):
        env.envbool("PWD_DEBUG", False)
    monkeypatch.setenv("PWD_MAX_NODES", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.envint("PWD_MAX_NODES", 5, minimum=1)
