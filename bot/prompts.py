"""Prompt templates: ``prompts/<name>.<language>.j2``, rendered in a jinja2 sandbox.

Templates are checked when the bot starts: a template that uses a variable the code does not
pass fails there, with the file name, instead of in a group chat. Admins can override any
template by putting a file of the same name in the folder named by ``prompts.dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from bot.resources import resource_dir

LANGUAGES = ("en", "zh")


class PromptError(Exception):
    """A template is missing, broken, or uses a variable the code does not provide."""


class Prompts:
    def __init__(self, override_dir: Path | None = None) -> None:
        folders = [str(override_dir)] if override_dir else []
        folders.append(str(resource_dir("prompts")))
        self.folders = folders
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def _template_name(self, name: str, language: str) -> str:
        candidates = [f"{name}.{language}.j2", f"{name}.en.j2"]
        for candidate in candidates:
            try:
                self.env.loader.get_source(self.env, candidate)  # type: ignore[union-attr]
            except jinja2.TemplateNotFound:
                continue
            return candidate
        raise PromptError(f"no prompt template {candidates[0]} in {', '.join(self.folders)}")

    def check(self, name: str, variables: set[str]) -> None:
        """Fail now if a language variant of ``name`` is missing, broken, or needs more."""
        for language in LANGUAGES:
            filename = self._template_name(name, language)
            source, path, _ = self.env.loader.get_source(self.env, filename)  # type: ignore[union-attr]
            try:
                parsed = self.env.parse(source)
            except jinja2.TemplateSyntaxError as exc:
                raise PromptError(f"{path}: line {exc.lineno}: {exc.message}") from None
            missing = meta.find_undeclared_variables(parsed) - variables
            if missing:
                raise PromptError(
                    f"{path}: uses undefined variable(s) {', '.join(sorted(missing))}; "
                    f"available: {', '.join(sorted(variables))}"
                )

    def render(self, name: str, language: str, **variables: Any) -> str:
        template = self.env.get_template(self._template_name(name, language))
        try:
            return template.render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise PromptError(f"{template.filename}: {exc}") from None
