"""The browser tests' fixtures (a live node, chromium pages) for the page fallback test."""

from tests.browser.conftest import live, pages

__all__ = ["live", "pages"]
