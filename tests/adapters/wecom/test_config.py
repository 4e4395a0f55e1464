"""`adapters.wecom` in bot.yaml: validation, the commented example staying true to the code,
and the wiring into build_adapters and the ASGI app."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route

from adapters.wecom.settings import GroupRobot, WeComApp, WeComBot, WeComSettings
from bot.adapter import adapter_settings, build_adapters
from bot.config import Config, ConfigError
from tests.adapters.common import bot_yaml_example

pytestmark = pytest.mark.unit

AES_KEY = base64.b64encode(bytes(range(32))).decode()[:43]
TOKEN = "T0ken4Callbacks"


def app(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "docs",
        "corp_id": "ww01",
        "agent_id": 1000002,
        "secret": "s",
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        **overrides,
    }


def test_bot_yaml_example_documents_every_setting_with_its_default() -> None:
    example = bot_yaml_example("wecom")
    assert set(example) == set(WeComSettings.model_fields)
    assert set(example["apps"][0]) == set(WeComApp.model_fields)
    assert set(example["bots"][0]) == set(WeComBot.model_fields)
    assert set(example["group_robots"][0]) == set(GroupRobot.model_fields)
    defaults = WeComSettings(apps=(WeComApp.model_validate(app()),))
    for key, value in example.items():
        if key not in {"apps", "bots", "group_robots"}:
            assert getattr(defaults, key) == value, key
    assert example["apps"][0]["message_format"] == defaults.apps[0].message_format
    assert example["apps"][0]["callback_path"] == defaults.apps[0].callback_path
    # Secrets come from the environment.
    for entry, keys in (
        (example["apps"][0], ("secret", "token", "encoding_aes_key")),
        (example["bots"][0], ("token", "encoding_aes_key")),
        (example["group_robots"][0], ("key",)),
    ):
        assert all(entry[k].startswith("${") for k in keys)


def test_example_loads_once_uncommented(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WECOM_DOCS_SECRET", "WECOM_ROBOT_KEY"):
        monkeypatch.setenv(name, f"value-of-{name}")
    for name in ("WECOM_DOCS_TOKEN", "WECOM_HELPER_TOKEN"):
        monkeypatch.setenv(name, TOKEN)
    for name in ("WECOM_DOCS_AES_KEY", "WECOM_HELPER_AES_KEY"):
        monkeypatch.setenv(name, AES_KEY)
    config = config_factory({"adapters": {"wecom": bot_yaml_example("wecom")}})
    _, wecom = adapter_settings(config, "wecom")
    assert isinstance(wecom, WeComSettings)
    assert [c.path for c in wecom.callbacks()] == ["/wecom/docs", "/wecom/helper"]
    assert wecom.apps[0].secret.get_secret_value() == "value-of-WECOM_DOCS_SECRET"
    assert "value-of-WECOM_DOCS_SECRET" not in repr(config)
    assert AES_KEY not in repr(wecom)


def test_the_routes_are_served_by_the_bots_http_app(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(
        {
            "adapters": {
                "wecom": {
                    "apps": [app(), app(name="ops", callback_path="/hooks/ops")],
                    "bots": [{"name": "helper", "token": TOKEN, "encoding_aes_key": AES_KEY}],
                }
            }
        }
    )
    [_playground, wecom] = build_adapters(config)
    routes = [r for r in wecom.routes if isinstance(r, Route)]
    assert [(r.path, sorted(r.methods or ())) for r in routes] == [
        ("/wecom/docs", ["GET", "HEAD", "POST"]),
        ("/hooks/ops", ["GET", "HEAD", "POST"]),
        ("/wecom/helper", ["GET", "HEAD", "POST"]),
    ]
    assert wecom.health() == {
        "status": "ok",
        "callbacks": {"docs": "/wecom/docs", "ops": "/hooks/ops", "helper": "/wecom/helper"},
    }


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({}, "at least one app"),
        ({"apps": [app(encoding_aes_key=AES_KEY[:42])]}, "encoding_aes_key: expected the 43"),
        ({"apps": [app(encoding_aes_key="!" * 43)]}, "got 43 characters"),
        ({"apps": [app(token="ab")]}, "token: expected 3 to 32 letters and digits, got 2"),
        ({"apps": [app(token="x" * 33)]}, "3 to 32 letters and digits, got 33"),
        ({"apps": [app(), app()]}, "own name: ['docs'] repeated"),
        (
            {"apps": [app(), app(name="ops", callback_path="/wecom/docs")]},
            "own callback path: ['/wecom/docs'] repeated",
        ),
        ({"apps": [app(callback_path="/healthz")]}, "taken by the bot's own http server"),
        ({"apps": [app(callback_path="/api/x")]}, "taken by the bot's own http server"),
        ({"apps": [app(callback_path="no-slash")]}, "callback_path"),
        ({"apps": [app(name="Docs!")]}, "name"),
        ({"apps": [app(secret=None)]}, "secret"),
        ({"apps": [app()], "api_base_url": "http://qyapi.weixin.qq.com"}, "https://"),
        ({"apps": [app()], "api_base_url": "https://x/cgi-bin"}, "no path"),
        ({"apps": [app()], "max_message_bytes": 4096}, "max_message_bytes"),
        ({"apps": [app()], "colour": "red"}, "colour"),
        (
            {"apps": [app()], "group_robots": [{"chat_id": "c", "key": "k"}] * 2},
            "one group robot per chat",
        ),
    ],
)
def test_mistakes_name_the_key(
    config_factory: Callable[..., Config], section: dict[str, Any], expected: str
) -> None:
    config = config_factory({"adapters": {"wecom": section}})
    with pytest.raises(ConfigError) as error:
        build_adapters(config)
    assert "adapters.wecom" in str(error.value)
    assert expected in str(error.value)
    for secret in (AES_KEY, AES_KEY[:42], TOKEN):
        assert secret not in str(error.value)
