"""Issue a pair and revoke it through the admin in headless Chromium, against a live server."""

import json
import re
import urllib.error
import urllib.request

import pytest

from pat_tokens.models import PersonalAccessToken

from ..factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SESSIONS_PATH = "/admin/pat_tokens/personalaccesstoken/"
# No proxy, even if the environment names one: the live server is on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call_me(base_url, access_token):
    """GET /api/me/ with the token; return the status code and the JSON body."""
    request = urllib.request.Request(  # noqa: S310 (an http:// URL of the live server)
        f"{base_url}/api/me/", headers={"Authorization": f"Bearer {access_token}"}
    )
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_issue_and_revoke_in_browser(live_server, chromium, screenshot):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    alice = UserFactory(username="alice")
    base_url = f"http://127.0.0.1:{live_server.thread.port}"

    with chromium() as page:
        page.goto(f"{base_url}/admin/login/?next={SESSIONS_PATH}")
        page.fill("#id_username", "root")
        page.fill("#id_password", PASSWORD)
        screenshot(page, "01-login")
        page.click("input[type=submit]")
        page.wait_for_url(f"{base_url}{SESSIONS_PATH}")
        screenshot(page, "02-sessions-empty")

        page.click(".object-tools a.addlink")
        page.wait_for_url(f"{base_url}{SESSIONS_PATH}add/")
        page.fill("#id_user", str(alice.pk))
        screenshot(page, "03-issue-form")
        page.click("input[value='Issue tokens']")
        page.wait_for_selector("#access-token")
        access_token = page.input_value("#access-token")
        refresh_token = page.input_value("#refresh-token")
        session_link = page.get_attribute("#view-session", "href")
        screenshot(page, "04-tokens-issued")

        status, body = call_me(base_url, access_token)
        assert status == 200, body
        assert body["username"] == "alice"

        page.goto(f"{base_url}{SESSIONS_PATH}")
        session_id = re.search(r"/(\d+)/change/$", session_link).group(1)
        page.check(f"input[name=_selected_action][value='{session_id}']")
        page.select_option("select[name=action]", "revoke_selected")
        screenshot(page, "05-revoke-selected")
        page.click("button[name=index]")
        page.wait_for_selector("text=Are you sure you want to revoke 1 session?")
        screenshot(page, "06-revoke-confirmation")
        page.click("input[value='Yes, revoke']")
        page.wait_for_selector("text=Revoked 1 session.")
        screenshot(page, "07-revoked")
        list_html = page.content()

    status, body = call_me(base_url, access_token)
    assert status == 401
    assert body["code"] == "token_invalid"
    assert access_token not in list_html
    assert refresh_token not in list_html
    assert not PersonalAccessToken.objects.filter(pk=int(session_id)).exists()
