"""Configuration: `${ENV}` substitution, and one clear message naming the key for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resolvers.config import build_config, load_config
from resolvers.errors import ConfigError
from resolvers.results import Vendor

GOOD = """
[server]
cors_origins = ["http://localhost:5173"]

[[auth.tokens]]
name = "frontend"
token = "${FRONTEND_TOKEN}"
scopes = ["contacts:read"]

[store]
url = "sqlite:///./test.db"

[vendors.oneserve]
base_url = "http://127.0.0.1:9/oneserve/acme"
token = "${ONESERVE_TOKEN}"
client_ref = "29"
timeout_s = 5

[vendors.eros]
base_url = "http://127.0.0.1:9/eros/"
username = "gateway"
password = "${EROS_PASSWORD}"
data_source_instance_id = "0b3a6f0e-8a51-4a57-9d43-5a3c3b1f0001"
contact_type_id = "0b3a6f0e-8a51-4a57-9d43-5a3c3b1f0002"
role_ids = ["0b3a6f0e-8a51-4a57-9d43-5a3c3b1f0003"]
"""

ENV = {"FRONTEND_TOKEN": "f" * 32, "ONESERVE_TOKEN": "jwt-secret", "EROS_PASSWORD": "pw"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_good_config_with_env_substitution(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), ENV)
    assert config.auth.tokens[0].token.get_secret_value() == "f" * 32
    oneserve: Any = config.vendors[Vendor.ONESERVE]
    assert oneserve.token.get_secret_value() == "jwt-secret"
    assert oneserve.base == "http://127.0.0.1:9/oneserve/acme/", "base_url always ends with a slash"
    assert oneserve.timeout_s == 5
    assert "jwt-secret" not in repr(config), "secrets never appear in reprs"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("timeout_s = 5", "timeout_s = -1"), "vendors.oneserve.timeout_s: "),
        (
            lambda t: t.replace("timeout_s = 5", "timeout_secs = 5"),
            "vendors.oneserve.timeout_secs: unknown key",
        ),
        (
            lambda t: t.replace('client_ref = "29"\n', ""),
            "vendors.oneserve.client_ref: required key is missing",
        ),
        (lambda t: t.replace("[vendors.eros]", "[vendors.erros]"), "vendors.erros: unknown vendor"),
        (lambda t: t.replace('role_ids = ["0b3a', 'role_ids = ["nope'), "vendors.eros.role_ids[0]: "),
        (
            lambda t: t.replace('scopes = ["contacts:read"]', 'scopes = ["contacts:everything"]'),
            "auth.tokens[0].scopes[0]: ",
        ),
        (lambda t: t.replace("[server]", "[server]\nport = 1"), "server.port: unknown key"),
        (
            lambda t: t.replace('"${EROS_PASSWORD}"', '"${NOT_SET_ANYWHERE}"'),
            "vendors.eros.password: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (lambda t: t.replace("sqlite:///./test.db", "mysql://x"), "store.url: unsupported store 'mysql'"),
        (lambda t: t + "\n[vendors.oneserve]\n", "not valid TOML"),
    ],
    ids=[
        "bad-value",
        "unknown-key",
        "missing-key",
        "unknown-vendor",
        "bad-guid",
        "bad-scope",
        "unknown-server-key",
        "missing-env",
        "bad-store",
        "bad-toml",
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config = load_config(write(tmp_path, change(GOOD)), ENV)
        from resolvers.store import engine_url

        engine_url(config.store.url)
    assert message in str(caught.value)


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    """The gateway's tables and each vendor's are all checked before the error is raised: an operator sees every
    mistake of the file in one message, the gateway's first, then the vendors' in the file's order."""
    text = (
        GOOD.replace("[server]", "[server]\nport = 1")
        .replace("timeout_s = 5", "timeout_secs = 5")
        .replace('role_ids = ["0b3a', 'role_ids = ["nope')
        + '\n[vendors.acme]\nbase_url = "http://127.0.0.1:9"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), ENV)
    parts = str(caught.value).split("; ")
    assert parts[0] == "server.port: unknown key"
    assert parts[1] == "vendors.oneserve.timeout_secs: unknown key"
    assert parts[2].startswith("vendors.eros.role_ids[0]: ")
    assert parts[3].startswith("vendors.acme: unknown vendor (known: ")
    assert len(parts) == 4


def test_limits_are_worded_as_everywhere_else() -> None:
    """An operator reads the same words a front end does ("must be more than 0", "required"), not pydantic's."""
    with pytest.raises(ConfigError) as caught:
        build_config({"outbox": {"poll_interval_s": 0, "max_parallel": 0}}, {})
    assert str(caught.value) == "outbox.poll_interval_s: must be more than 0; outbox.max_parallel: must be at least 1"


def test_short_api_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"auth.tokens\[0\].token: at least 16 characters$"):
        build_config({"auth": {"tokens": [{"name": "a", "token": "short", "scopes": ["contacts:read"]}]}}, {})


def test_serve_stops_with_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("timeout_s = 5", "timeout_secs = 5"))
    done = subprocess.run(
        [sys.executable, "-m", "graph.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **ENV},
    )
    assert done.returncode == 2
    assert "vendors.oneserve.timeout_secs: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_backoff_cap_below_its_base_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"outbox: backoff_cap_s \(1\) is below backoff_base_s \(100\)"):
        build_config({"outbox": {"backoff_base_s": 100, "backoff_cap_s": 1}})
