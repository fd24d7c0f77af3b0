"""The usage page's static files: the vendored chart library is exactly what deploy/web/vendor.sh recorded
(an accidental edit, or a re-vendor that changed it, fails here), and every file the page refers to exists
and is served by the page's routes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pipeline.usage.api import ASSETS_PATH, WEB_DIR, page_assets

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "web" / "vendor.sh"
MANIFEST = ROOT / "deploy" / "web" / "vendor.sha256"
VENDOR = WEB_DIR / "vendor"


def script_setting(name: str) -> str:
    match = re.search(rf'^{name}="([^"]+)"$', SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{name} not found in {SCRIPT}"
    return match.group(1)


def manifest() -> tuple[str, dict[str, str]]:
    """(the 'package@version' of the header, {file name: sha256})."""
    lines = MANIFEST.read_text().splitlines()
    header = re.match(r"# (\S+@\S+),", lines[0])
    assert header, lines[0]
    hashes = dict(reversed(line.split(maxsplit=1)) for line in lines[1:] if line.strip())
    return header.group(1), hashes


def test_vendored_files_match_the_recorded_sha256():
    _, hashes = manifest()
    assert hashes, "vendor.sha256 lists no file"
    for name, expected in hashes.items():
        actual = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert actual == expected, f"pipeline/usage/web/vendor/{name} changed; re-run deploy/web/vendor.sh (--record)"
    assert {path.name for path in VENDOR.iterdir()} == set(hashes), "a vendored file is not in vendor.sha256"


def test_the_manifest_is_for_the_version_the_script_pins():
    package, version = script_setting("PACKAGE"), script_setting("VERSION")
    recorded, hashes = manifest()
    assert recorded == f"{package}@{version}", "VERSION changed without deploy/web/vendor.sh --record"
    assert f"Chart.js v{version}\n" in (VENDOR / "chart.umd.js").read_text()[:200]  # the library's own banner
    assert "MIT License" in (VENDOR / "chart.js.LICENSE.md").read_text()


def test_every_file_the_page_refers_to_is_served():
    served = page_assets(WEB_DIR)
    html = (WEB_DIR / "usage.html").read_text()
    referenced = re.findall(rf'(?:src|href)="{ASSETS_PATH}/([^"]+)"', html)
    assert "vendor/chart.umd.js" in referenced and "js/main.js" in referenced
    for module in (WEB_DIR / "js").glob("*.js"):
        # ES module imports are relative to the module: ./x.js
        referenced += [f"js/{name}" for name in re.findall(r'from "\./([^"]+)"', module.read_text())]
    missing = sorted(set(referenced) - set(served))
    assert not missing, f"the page refers to files that are not served: {missing}"
