"""`adapters.feishu` in bot.yaml: validation, the commented example staying true to the code,
and the wiring into build_adapters and the ASGI app."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from adapters.feishu.settings import FeishuSettings
from bot.adapter import adapter_settings, build_adapters
from bot.app.server import create_app
from bot.config import Config, ConfigError
from tests.adapters.common import bot_yaml_example
from tests.daemon import REPO

pytestmark = pytest.mark.unit


def test_bot_yaml_example_documents_every_setting_with_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = bot_yaml_example("feishu")
    assert set(example) == set(FeishuSettings.model_fields)
    monkeypatch.setenv("FEISHU_APP_SECRET", "secret")
    defaults = FeishuSettings(app_id="x", app_secret="y")
    for key, value in example.items():
        if key not in {"app_id", "app_secret", "encrypt_key", "verification_token"}:
            assert getattr(defaults, key) == value, key


def test_example_loads_once_uncommented(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEISHU_APP_SECRET", "the-secret")
    config = config_factory({"adapters": {"feishu": bot_yaml_example("feishu")}})
    _, feishu = adapter_settings(config, "feishu")
    assert isinstance(feishu, FeishuSettings)
    assert feishu.mode == "websocket"
    assert feishu.app_secret.get_secret_value() == "the-secret"
    assert "the-secret" not in repr(config)


def test_webhook_mode_needs_the_encrypt_key_and_token(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(
        {"adapters": {"feishu": {"app_id": "cli_x", "app_secret": "s", "mode": "webhook"}}}
    )
    with pytest.raises(ConfigError) as error:
        build_adapters(config)
    assert "adapters.feishu" in str(error.value)
    assert "encrypt_key and verification_token" in str(error.value)


@pytest.mark.parametrize(
    "domain",
    [
        "open.feishu.cn",
        "https://open.feishu.cn/open-apis",
        "ftp://x",
        "https://a@b",
        "http://open.feishu.cn",
    ],
)
def test_domain_must_be_an_https_origin(domain: str) -> None:
    with pytest.raises(ValueError, match=r"origin|https"):
        FeishuSettings(app_id="cli_x", app_secret="s", domain=domain)


def test_lark_domain_accepted() -> None:
    settings = FeishuSettings(app_id="cli_x", app_secret="s", domain="https://open.larksuite.com/")
    assert settings.domain == "https://open.larksuite.com"


def test_disabled_or_absent_feishu_does_not_import_the_sdk() -> None:
    code = (
        "import sys; from bot.config import load_config; from bot.adapter import build_adapters;"
        "names = [a.name for a in build_adapters(load_config('bot.yaml'))];"
        "print(names, 'lark_oapi' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['playground'] False"


async def test_webhook_route_is_mounted_on_the_bot_app(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    feishu = {
        "app_id": "cli_route_test",
        "app_secret": "s",
        "mode": "webhook",
        "encrypt_key": "k",
        "verification_token": "t",
        "webhook_path": "/hooks/feishu",
    }
    config = config_factory({"adapters": {"feishu": feishu}})
    adapters = build_adapters(config)
    assert [a.name for a in adapters] == ["playground", "feishu"]
    bot = await bot_factory(config, adapters, start=False)
    app = create_app(bot)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        hook = await client.post("/hooks/feishu", content=b"{}")
        assert hook.status_code == 503  # the adapter's route (it has not been started)
        page = await client.get("/console/")
        assert page.status_code == 403  # a real platform and no admin token: locked
    bot.db.dispose()
