"""The release catalogue: its facts, its version specs, and a cross-check against apache/httpd's git."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from apachews import catalogue, patches
from apachews.catalogue import Tunnelling, Version
from apachews.errors import BadInput
from apachews.resources import package_data, patches_dir


@pytest.fixture(scope="module")
def releases() -> catalogue.Catalogue:
    return catalogue.load()


def _versions(picked: list[catalogue.Release]) -> list[str]:
    return [str(r.version) for r in picked]


def test_families_span_2_2_and_2_4(releases):
    assert releases.families() == ["2.2", "2.4"]
    assert _versions(releases.all("2.2"))[0] == "2.2.0" and _versions(releases.all("2.2"))[-1] == "2.2.34"
    assert _versions(releases.all("2.4"))[0] == "2.4.0"
    assert releases.get("2.2.31").tarballs == ("httpd-2.2.31.tar.bz2", "httpd-2.2.31.tar.gz")


@pytest.mark.parametrize("text", ["2.4.4", "2.4.1", "2.2.34", "2.2.0"])
def test_releases_before_the_stock_module_need_the_backport(releases, text: str):
    assert releases.get(text).needs_backport and releases.get(text).series == f"wstunnel-{text[:3]}"


def test_first_stock_wstunnel_release_is_2_4_6(releases):
    first_released = next(r for r in releases.all("2.4") if r.stock_wstunnel and r.released)
    assert str(first_released.version) == "2.4.6"
    assert releases.get("2.4.5").stock_wstunnel and releases.get("2.4.5").released is False
    assert releases.get("2.4.5").series is None  # the stock module is in: no series serves it
    assert releases.get("2.4.4").tunnelling is Tunnelling.APACHEWS
    # 2.4.6-2.4.9's stock module pools backend connections across handshakes (fixed in 2.4.10).
    assert releases.get("2.4.6").tunnelling is Tunnelling.APACHEWS and releases.get("2.4.6").stock_wstunnel
    assert releases.get("2.4.10").tunnelling is Tunnelling.WSTUNNEL


def test_proxy_http_upgrade_from_2_4_47_first_released_in_2_4_48(releases):
    assert not releases.get("2.4.46").proxy_http_upgrade
    assert releases.get("2.4.47").proxy_http_upgrade and releases.get("2.4.47").released is False
    first_released = next(r for r in releases.all("2.4") if r.proxy_http_upgrade and r.released)
    assert str(first_released.version) == "2.4.48"
    assert releases.get("2.4.48").tunnelling is Tunnelling.HTTP_UPGRADE


def test_not_released_lists(releases):
    unreleased = {str(r.version) for r in releases.all() if r.released is False}
    assert {"2.2.1", "2.2.5", "2.2.7", "2.2.28", "2.2.30", "2.2.33"} <= unreleased
    assert {"2.4.0", "2.4.5", "2.4.8", "2.4.11", "2.4.13", "2.4.14", "2.4.15", "2.4.47"} <= unreleased
    released = ("2.2.31", "2.2.34", "2.4.1", "2.4.4", "2.4.6", "2.4.48", "2.4.62")
    assert [v for v in released if releases.get(v).released is not True] == []


def test_unknown_and_malformed_versions_offer_close_matches(releases):
    with pytest.raises(BadInput) as caught:
        releases.get("2.2.35")
    assert "2.2.34" in caught.value.details["close_matches"]
    assert "close matches:" in caught.value.hint and "2.2.3" in caught.value.hint
    with pytest.raises(BadInput, match="not an Apache version"):
        releases.get("2.2")
    with pytest.raises(BadInput, match="not an Apache version"):
        releases.get("2.2.31; rm -rf /")
    with pytest.raises(BadInput, match="not in the catalogue"):
        releases.get("1.3.42")


def test_expand_ranges_families_and_lists(releases):
    assert _versions(releases.expand("2.2.20-2.2.34")) == [
        "2.2.20", "2.2.21", "2.2.22", "2.2.23", "2.2.24", "2.2.25", "2.2.26", "2.2.27",
        "2.2.29", "2.2.31", "2.2.32", "2.2.34",
    ]  # fmt: skip
    assert "2.2.28" in _versions(releases.expand("2.2.20-2.2.34", released_only=False))
    all_22 = releases.expand("all-2.2")
    assert len(all_22) == 35 - 6 and all(r.released for r in all_22)
    assert _versions(releases.expand("2.4.4, 2.2.31,2.2.31")) == ["2.2.31", "2.4.4"]
    assert len(releases.expand("all-2.2,2.4.1-2.4.4")) == len(all_22) + 4
    with pytest.raises(BadInput, match="backwards"):
        releases.expand("2.2.34-2.2.20")
    with pytest.raises(BadInput, match="unknown family"):
        releases.expand("all-1.3")
    with pytest.raises(BadInput, match="names no Apache release"):
        releases.expand(" , ")


def test_as_release_takes_a_release_or_looks_up_text(releases):
    release = releases.get("2.2.31")
    assert catalogue.as_release(release) is release and catalogue.as_release("2.2.31") == release
    with pytest.raises(BadInput, match="not in the catalogue"):
        catalogue.as_release("2.2.99")


# ---- which patch series serves which release: patches/index.json, the one place that says it -------------

SERIES_INDEX = json.loads((patches_dir() / "index.json").read_text())["series"]


def test_every_release_without_a_stock_module_has_exactly_one_series(releases):
    wrong = [str(r.version) for r in releases.all() if (r.series is not None) != r.needs_backport]
    assert wrong == []
    for release in releases.all():
        serving = [
            name for name, entry in SERIES_INDEX.items() if catalogue.in_ranges(release.version, entry["applies_to"])
        ]
        assert len(serving) <= 1, (str(release.version), serving)


def test_the_index_names_exactly_the_series_directories():
    assert set(SERIES_INDEX) == {path.parent.name for path in patches_dir().glob("*/series")}


@pytest.mark.parametrize("name", sorted(SERIES_INDEX))
def test_series_ranges_and_patches(releases, name: str):
    entry = SERIES_INDEX[name]
    assert set(entry) == {"applies_to", "description"}  # nothing that goes stale ("tested": README's Results)
    for spec in entry["applies_to"]:
        low, _, high = spec.partition("-")
        assert releases.get(low).family == releases.get(high or low).family == name.rsplit("-", 1)[1]
    series = patches.load_series(name)
    assert series.patch_files and all(path.is_file() for path in series.patch_files)
    own = {path.resolve() for path in (patches_dir() / name).glob("*.patch")}
    assert own <= set(series.patch_files), "a patch in the directory is missing from its series file"


def test_known_checksums_are_sha256_with_a_source(releases):
    data = json.loads(package_data("releases.json").read_text())
    for version, files in data["checksums"].items():
        release = releases.get(version)
        for name, info in files.items():
            assert name in release.tarballs, name
            assert re.fullmatch(r"[0-9a-f]{64}", info["sha256"]) and info["source"]
    for sdist_version, sdist in data["pypi_sdists"].items():
        assert sdist.startswith(sdist_version + "."), sdist
        assert f"httpd-{sdist_version}.tar.gz" in data["checksums"][sdist_version]


# ---- cross-check with an apache/httpd git repository ($APACHEWS_HTTPD_GIT) -------------------------

_RELEASE_TAG = re.compile(r"^2\.[24]\.\d+$")


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def git_dir(httpd_git: Path) -> Path:
    return httpd_git / ".git" if (httpd_git / ".git").exists() else httpd_git


@pytest.fixture(scope="module")
def release_tags(git_dir: Path) -> list[Version]:
    tags = [Version.parse(t) for t in _git(git_dir, "tag", "--list").split() if _RELEASE_TAG.match(t)]
    return sorted(tags)


def test_every_git_release_tag_is_catalogued(releases, release_tags: list[Version]):
    assert len(release_tags) > 90, "the git repository looks incomplete"
    missing = [str(v) for v in release_tags if v <= Version(2, 4, 62) and str(v) not in releases._releases]
    assert missing == []


@pytest.mark.parametrize("family", ["2.2", "2.4"])
def test_changes_not_released_markers_agree(releases, git_dir: Path, release_tags: list[Version], family: str):
    """Every `Changes with Apache V (not released)` in the newest CHANGES of each family is not_released."""
    unreleased = {str(r.version) for r in releases.all() if r.released is False}
    newest = max(v for v in release_tags if v.family == family)
    changes = _git(git_dir, "show", f"{newest}:CHANGES")
    marked = set(re.findall(r"^Changes with Apache (\d+\.\d+\.\d+) \(not released\)", changes, re.M))
    assert marked, f"no (not released) markers found in {newest}:CHANGES"
    assert marked <= unreleased, f"{family}: CHANGES says not released: {sorted(marked - unreleased)}"
    # Every version CHANGES has a heading for is catalogued too (headings of 2.3.x betas aside).
    headings = set(re.findall(rf"^Changes with Apache ({re.escape(family)}\.\d+)", changes, re.M))
    assert headings and all(version in releases._releases for version in headings)


@pytest.mark.parametrize("tag", ["2.2.34", "2.4.4", "2.4.5", "2.4.6"])
def test_stock_wstunnel_matches_the_code(releases, git_dir: Path, tag: str):
    """mod_proxy_wstunnel.c appears in 2.4.5."""
    has_wstunnel = bool(_git(git_dir, "ls-tree", tag, "modules/proxy/mod_proxy_wstunnel.c").strip())
    assert has_wstunnel == releases.get(tag).stock_wstunnel


@pytest.mark.parametrize("tag", ["2.4.46", "2.4.47", "2.4.48"])
def test_proxy_http_upgrade_matches_the_code(releases, git_dir: Path, tag: str):
    """mod_proxy_http learns to tunnel (upgrade=) in 2.4.47."""
    http_tunnels = "ap_proxy_tunnel_create" in _git(git_dir, "show", f"{tag}:modules/proxy/mod_proxy_http.c")
    assert http_tunnels == releases.get(tag).proxy_http_upgrade


def test_which_version_table_groups_releases() -> None:
    from click.testing import CliRunner

    from apachews.cli import main

    result = CliRunner().invoke(main, ["versions", "--markdown"])
    assert result.exit_code == 0
    assert "| 2.2.0 to 2.2.34 | apachews mod_proxy_wstunnel | wstunnel-2.2 |" in result.output
    assert "| 2.4.6 to 2.4.9 | apachews mod_proxy_wstunnel | - |" in result.output
    assert "| 2.4.10 to 2.4.46 | stock mod_proxy_wstunnel | - |" in result.output


@pytest.mark.parametrize(
    ("version", "named"), [("2.4.25", True), ("2.4.6", True), ("2.4.48", False), ("2.2.31", False)]
)
def test_versions_names_cve_2019_17567_where_the_stock_module_has_it(version: str, named: bool) -> None:
    from click.testing import CliRunner

    from apachews.cli import main

    result = CliRunner().invoke(main, ["versions", "--apache", version])
    assert result.exit_code == 0 and ("CVE-2019-17567" in result.output) is named, result.output
