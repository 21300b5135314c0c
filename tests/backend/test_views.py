"""`/` is a landing page; Django's debug URL list never shows with DEBUG off."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.db


def test_the_landing_page_links_what_the_site_has(users):
    page = Client().get("/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'href="/admin/"' in body and 'href="/healthz"' in body


def test_the_admins_view_site_link_lands_on_it(users):
    from django.contrib import admin

    assert admin.site.site_url == "/"


def test_no_url_list_on_a_404(temp_settings, users):
    assert temp_settings.DEBUG is False
    page = Client().get("/no-such-page")
    assert page.status_code == 404
    body = page.content.decode()
    assert "URLconf" not in body and "api/jobs" not in body and "admin/" not in body
