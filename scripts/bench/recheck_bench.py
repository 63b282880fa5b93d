"""Drives the upstream re-check benchmark (scripts/bench-recheck.sh starts idsync and the
OpenID provider, oidc-provider under node).

Two providers in idsync point at the same OpenID provider and client: "idp" re-checks at every
refresh (recheck_interval_secs = 0), "plain" never does. Each probe account signs in through
idsync's browser flow (GET /sso/{provider}/start, the provider's login and consent forms, the
callback), as a browser would: a cookie jar, redirects followed by hand.

Measures:
  - refresh cost: POST /api/v1/token/refresh of a "plain" session (the baseline: memberships
    read from idsync's store) against an "idp" session (the provider's token endpoint asked,
    its ID token verified, the mappings evaluated, then the token);
  - time to revocation: a signed-in probe is removed from the mapped group at the provider
    (its test endpoint), then its token is refreshed every 5 ms until the answer no longer
    carries the permission; the webhook receiver (this script) records when idsync's
    permission-change POST names the probe. Then the probe's grant is revoked at the provider
    and the token refreshed until the refresh is refused.

Prints one JSON object with every figure. Standard library only.
Usage: recheck_bench.py BASE ISSUER WEBHOOK_PORT SAMPLES REFRESHES
"""

import html.parser
import http.cookiejar
import json
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import webhook

PERMISSION = "Images View"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Forms(html.parser.HTMLParser):
    """The interaction page's form: its action and its hidden prompt."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.prompt = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action")
        if tag == "input" and attrs.get("name") == "prompt":
            self.prompt = attrs.get("value")


def browser():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())


def fetch(opener, url, form=None):
    data = None if form is None else urllib.parse.urlencode(form).encode()
    try:
        response = opener.open(urllib.request.Request(url, data=data), timeout=60)
    except urllib.error.HTTPError as e:
        response = e
    return response.status, response.headers, response.read().decode("utf-8", "replace")


def sign_in(base, provider, login):
    """The browser flow, end to end: the login answer (with the token)."""
    opener = browser()
    url = f"{base}/sso/{provider}/start"
    for _ in range(20):
        status, headers, body = fetch(opener, url)
        if status in (302, 303):
            url = urllib.parse.urljoin(url, headers["Location"])
            continue
        if status == 200 and "/interaction/" in url:
            form = Forms()
            form.feed(body)
            fields = {"prompt": form.prompt}
            if form.prompt == "login":
                fields.update({"login": login, "password": "bench"})
            status, headers, body = fetch(opener, urllib.parse.urljoin(url, form.action or url), fields)
            if status in (302, 303):
                url = urllib.parse.urljoin(url, headers["Location"])
                continue
        if status == 200 and url.startswith(base):
            return json.loads(body)
        raise SystemExit(f"sign-in of {login} at {url}: {status} {body[:300]}")
    raise SystemExit(f"sign-in of {login}: too many steps")


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        response = e
    raw = response.read()
    return response.status, (json.loads(raw) if raw else None)


def summary(times):
    ordered = sorted(times)
    return {
        "n": len(times),
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "worst_ms": ordered[-1] * 1000,
    }


def main():
    base, issuer, webhook_port, samples, refreshes = sys.argv[1:6]
    samples, refreshes = int(samples), int(refreshes)
    webhook.start(webhook_port)

    def refresh(token):
        return post_json(f"{base}/api/v1/token/refresh", {"token": token})

    def timed_refreshes(token):
        times = []
        for _ in range(refreshes):
            started = time.perf_counter()
            status, answer = refresh(token)
            times.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"refresh: {status} {answer}")
        return summary(times)

    result = {}
    plain = sign_in(base, "plain", "probe-0")["token"]
    checked = sign_in(base, "idp", "probe-0")["token"]
    for _ in range(10):
        refresh(plain)
        refresh(checked)
    result["refresh_plain"] = timed_refreshes(plain)
    result["refresh_rechecked"] = timed_refreshes(checked)

    def refresh_until(token, gone):
        polls = 0
        while True:
            status, answer = refresh(token)
            polls += 1
            if gone(status, answer):
                return
            if polls > 100000:
                raise SystemExit(f"the change never arrived: {status} {answer}")
            time.sleep(0.005)

    removal, revoked = [], []
    for i in range(1, samples + 1):
        name = f"probe-{i}"
        login = sign_in(base, "idp", name)
        if PERMISSION not in login["permissions"]:
            raise SystemExit(f"{name} lacks {PERMISSION}: {login}")
        token = login["token"]
        started = time.monotonic()
        status, answer = post_json(f"{issuer}/__test/accounts", {"sub": name, "groups": []})
        if status != 200:
            raise SystemExit(f"group removal at the provider: {status} {answer}")
        refresh_until(token, lambda s, a: s == 200 and PERMISSION not in a.get("permissions", []))
        refreshed = time.monotonic()
        hooked = webhook.wait(name, started)
        removal.append({
            "refresh_s": refreshed - started,
            "webhook_s": None if hooked is None else hooked - started,
        })
        # The grant revoked at the provider: the next refresh is refused.
        started = time.monotonic()
        status, answer = post_json(f"{issuer}/__test/revoke-grants", {"sub": name})
        if status != 200 or answer.get("revoked", 0) < 1:
            raise SystemExit(f"grant revocation at the provider: {status} {answer}")
        refresh_until(token, lambda s, a: s == 401)
        revoked.append({"refresh_s": time.monotonic() - started})
    result["revocation"] = {"group_removal": removal, "grant_revoked": revoked}
    result["samples"] = samples
    print(json.dumps(result))


if __name__ == "__main__":
    main()
