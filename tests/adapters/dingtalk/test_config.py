"""`adapters.dingtalk` in bot.yaml: validation, the commented example staying true to the code,
and the SDK imported only when DingTalk is configured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from adapters.dingtalk.settings import DingTalkSettings
from bot.adapter import adapter_settings, build_adapters
from bot.config import Config, ConfigError
from tests.adapters.common import bot_yaml_example
from tests.daemon import REPO

pytestmark = pytest.mark.unit


def test_bot_yaml_example_documents_every_setting_with_its_default() -> None:
    example = bot_yaml_example("dingtalk")
    assert set(example) == set(DingTalkSettings.model_fields)
    defaults = DingTalkSettings(client_id="x", client_secret="y")
    for key, value in example.items():
        if key not in {"client_id", "client_secret"}:
            assert getattr(defaults, key) == value, key


def test_example_loads_once_uncommented(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINGTALK_CLIENT_SECRET", "the-secret")
    config = config_factory({"adapters": {"dingtalk": bot_yaml_example("dingtalk")}})
    _, dingtalk = adapter_settings(config, "dingtalk")
    assert isinstance(dingtalk, DingTalkSettings)
    assert dingtalk.client_secret.get_secret_value() == "the-secret"
    assert "the-secret" not in repr(config) and "the-secret" not in repr(dingtalk)


def test_a_missing_client_id_names_the_key(config_factory: Callable[..., Config]) -> None:
    config = config_factory({"adapters": {"dingtalk": {"client_secret": "s"}}})
    with pytest.raises(ConfigError, match=r"adapters\.dingtalk\.client_id: required key"):
        build_adapters(config)


@pytest.mark.parametrize(
    "endpoint",
    ["api.dingtalk.com", "https://api.dingtalk.com/v1.0", "ftp://x", "http://api.dingtalk.com"],
)
def test_endpoints_must_be_https_origins(endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"origin|https"):
        DingTalkSettings(client_id="x", client_secret="s", openapi_endpoint=endpoint)
    with pytest.raises(ValueError, match=r"origin|https"):
        DingTalkSettings(client_id="x", client_secret="s", gateway_endpoint=endpoint)


def test_a_local_endpoint_may_be_plain_http() -> None:
    settings = DingTalkSettings(
        client_id="x", client_secret="s", gateway_endpoint="http://127.0.0.1:8080/"
    )
    assert settings.gateway_endpoint == "http://127.0.0.1:8080"


def test_the_backoff_must_grow() -> None:
    with pytest.raises(ValueError, match="reconnect_max_seconds"):
        DingTalkSettings(
            client_id="x", client_secret="s", reconnect_initial_seconds=5, reconnect_max_seconds=1
        )


def test_absent_dingtalk_does_not_import_the_sdk() -> None:
    code = (
        "import sys; from bot.config import load_config; from bot.adapter import build_adapters;"
        "names = [a.name for a in build_adapters(load_config('bot.yaml'))];"
        "print(names, 'dingtalk_stream' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['playground'] False"
