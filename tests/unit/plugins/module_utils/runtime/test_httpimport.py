"""httpimport: requests imported with its charset detector and idna deferred, and behaving as before.

Each case runs in a fresh interpreter (what is imported is process state),
with warnings as errors, so requests' own dependency check must pass.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict

import ansible_collections.berth.containers.plugins.module_utils.runtime as runtime_package

MODULE_UTILS = os.path.dirname(os.path.dirname(os.path.abspath(runtime_package.__file__)))


def run(code: str) -> Dict[str, Any]:
    """Run *code* (which prints one JSON line) with the runtime importable as ``runtime``."""
    prelude = f"import json, sys\nsys.path.insert(0, {MODULE_UTILS!r})\nfrom runtime import httpimport\n"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", prelude + code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def kinds(names: str) -> str:
    return f"{{name: type(sys.modules[name]).__name__ for name in {names} if name in sys.modules}}"


def test_requests_loads_without_the_deferred_modules() -> None:
    found = run(
        "requests = httpimport.import_requests()\n"
        f"print(json.dumps({{'kinds': {kinds('[entry[0] for entry in httpimport.DEFERRED]')},"
        " 'session': type(requests.Session()).__name__}))"
    )
    assert found["session"] == "Session"
    assert found["kinds"], "neither charset_normalizer, chardet nor idna is installed: nothing was deferred"
    assert set(found["kinds"].values()) == {"DeferredModule"}


def test_a_deferred_module_is_the_real_one_on_first_use() -> None:
    found = run(
        "requests = httpimport.import_requests()\n"
        "response = requests.models.Response()\n"
        "response._content = 'caf\\u00e9 cr\\u00e8me br\\u00fbl\\u00e9e'.encode('utf-8') * 20\n"
        "encoding = response.apparent_encoding\n"
        "import idna\n"
        "encoded = idna.encode('b\\u00fccher.example', uts46=True).decode()\n"
        "detector = requests.compat.chardet\n"
        "print(json.dumps({'encoding': encoding, 'idna': encoded, 'detect': callable(detector.detect),"
        " 'text': response.text[:4]}))"
    )
    assert found["encoding"].lower().replace("_", "-") == "utf-8"
    assert found["idna"] == "xn--bcher-kva.example"
    assert found["detect"] is True
    assert found["text"] == "caf\u00e9"


def test_importlib_metadata_waits_for_its_first_real_use() -> None:
    found = run(
        "httpimport.import_requests()\n"
        f"before = {kinds(repr(['importlib.metadata']))}\n"
        "import importlib.metadata\n"
        "version = importlib.metadata.version('requests')\n"
        "from importlib.metadata import distribution\n"
        "print(json.dumps({'before': before, 'version': version, 'dist': distribution('requests').version,"
        f" 'after': {kinds(repr(['importlib.metadata']))}}}))"
    )
    assert found["before"] == {"importlib.metadata": "DeferredModule"}  # urllib3 2.x imported it by name only
    assert found["version"] == found["dist"]
    assert found["version"][0].isdigit()
    assert found["after"] == {"importlib.metadata": "module"}


def test_submodules_still_import_after_requests() -> None:
    found = run(
        "httpimport.import_requests()\n"
        "import idna.core\n"
        "print(json.dumps({'alabel': idna.core.alabel('b\\u00fccher').decode(),"
        f" 'kinds': {kinds(repr(['idna']))}}}))"
    )
    assert found["alabel"] == "xn--bcher-kva"
    assert found["kinds"] == {"idna": "module"}


def test_a_module_imported_before_is_left_alone() -> None:
    found = run(
        "import idna\n"
        "real = idna\n"
        "deferred = httpimport.defer('idna', False)\n"
        "httpimport.import_requests()\n"
        "print(json.dumps({'deferred': deferred, 'same': sys.modules['idna'] is real}))"
    )
    assert found == {"deferred": False, "same": True}


def test_a_missing_package_is_not_made_up() -> None:
    found = run(
        "print(json.dumps({'deferred': httpimport.defer('berth_no_such_package', False),"
        " 'present': 'berth_no_such_package' in sys.modules}))"
    )
    assert found == {"deferred": False, "present": False}
