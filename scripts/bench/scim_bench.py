"""Drives the SCIM benchmark against a running `idsync serve` (scripts/bench-scim.sh starts it).

Measures, over one keep-alive HTTP connection, as a SCIM client such as Entra ID or Okta sends
its requests one after another:
  - baseline: authenticated GET /ServiceProviderConfig (what a request costs with no work);
  - user creation: POST /Users;
  - membership changes: PATCH /Groups/{id} adding, then removing, members in batches (each
    write followed at once by idsync: the users' memberships change in the same request);
  - time to revocation: a provisioned user signs in through the login hook, the client removes
    them from the mapped group (PATCH), then deactivates them; after each, the user's token is
    refreshed every 5 ms until the answer no longer carries the permission, or is refused. The
    webhook receiver (this script) records when idsync's permission-change POST names them.

Prints one JSON object with every figure. Standard library only.
Usage: scim_bench.py BASE SCIM_TOKEN PIPELINE_KEY WEBHOOK_PORT USERS BATCH SAMPLES
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse

import webhook

SCIM = "application/scim+json"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PERMISSION = "Images View"


class Client:
    def __init__(self, base, token):
        url = urllib.parse.urlparse(base)
        self.prefix = url.path.rstrip("/")
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.token = token

    def call(self, method, path, body=None, content_type=SCIM, token=None):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        self.conn.request(method, self.prefix + path, body=data, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        answer = json.loads(raw) if raw else None
        return response.status, answer


def timed(n, fn):
    times = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return times


def summary(times):
    ordered = sorted(times)
    return {
        "n": len(times),
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "total_s": sum(times),
    }


def main():
    base, token, pipeline, webhook_port, users, batch, samples = sys.argv[1:8]
    users, batch, samples = int(users), int(batch), int(samples)
    webhook.start(webhook_port)
    scim = Client(base + "/scim/v2/okta", token)
    hook = Client(base, pipeline)
    result = {}

    def expect(status, answer, wanted, what):
        if status != wanted:
            raise SystemExit(f"{what}: {status} {answer}")

    # Baseline: a request that does no work.
    def baseline(_):
        status, answer = scim.call("GET", "/ServiceProviderConfig")
        expect(status, answer, 200, "baseline")

    timed(20, baseline)
    result["baseline"] = summary(timed(200, baseline))

    ids = []

    def create(i):
        status, answer = scim.call(
            "POST",
            "/Users",
            {
                "schemas": [USER_URN],
                "userName": f"user{i:06d}@example.com",
                "externalId": f"ext{i:06d}",
                "active": True,
                "name": {"givenName": "User", "familyName": f"{i:06d}"},
                "emails": [{"value": f"user{i:06d}@example.com", "type": "work", "primary": True}],
            },
        )
        expect(status, answer, 201, "create user")
        ids.append(answer["id"])

    result["create_user"] = summary(timed(users, create))

    status, group = scim.call("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Probe"})
    expect(status, group, 201, "create group")
    gid = group["id"]
    batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]

    def add(i):
        status, answer = scim.call(
            "PATCH",
            f"/Groups/{gid}?excludedAttributes=members",
            {"schemas": [PATCH_URN], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": m} for m in batches[i]]}]},
        )
        expect(status, answer, 200, "add members")

    result["add_members"] = summary(timed(len(batches), add))

    def remove(i):
        status, answer = scim.call(
            "PATCH",
            f"/Groups/{gid}?excludedAttributes=members",
            {"schemas": [PATCH_URN], "Operations": [
                {"op": "remove", "path": "members", "value": [{"value": m} for m in batches[i]]}]},
        )
        expect(status, answer, 200, "remove members")

    result["remove_members"] = summary(timed(len(batches), remove))
    result["users"] = users
    result["batch"] = batch

    # Time to revocation.
    def sign_in(name):
        status, answer = hook.call(
            "POST",
            "/api/v1/login/okta",
            {"type": "verified_attributes", "username": name, "groups": []},
            content_type="application/json",
        )
        expect(status, answer, 200, "sign in")
        if PERMISSION not in answer["permissions"]:
            raise SystemExit(f"the probe's token lacks {PERMISSION}: {answer}")
        return answer["token"]

    def refresh_until(token, gone):
        polls = 0
        while True:
            status, answer = hook.call(
                "POST", "/api/v1/token/refresh", {"token": token}, content_type="application/json"
            )
            polls += 1
            if gone(status, answer):
                return polls
            if polls > 200000:
                raise SystemExit("the permission never went")
            time.sleep(0.005)

    revocations = {"group_removal": [], "deactivation": []}
    for i in range(samples):
        uid = ids[i]
        name = f"user{i:06d}@example.com"
        status, answer = scim.call(
            "PATCH",
            f"/Groups/{gid}?excludedAttributes=members",
            {"schemas": [PATCH_URN], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": uid}]}]},
        )
        expect(status, answer, 200, "probe joins")
        token = sign_in(name)
        started = time.monotonic()
        status, answer = scim.call(
            "PATCH",
            f"/Groups/{gid}?excludedAttributes=members",
            {"schemas": [PATCH_URN], "Operations": [
                {"op": "remove", "path": f'members[value eq "{uid}"]'}]},
        )
        expect(status, answer, 200, "probe leaves")
        answered = time.monotonic()
        refresh_until(
            token, lambda s, a: s == 200 and PERMISSION not in a.get("permissions", [])
        )
        refreshed = time.monotonic()
        hooked = webhook.wait(name, started)
        revocations["group_removal"].append({
            "patch_answered_s": answered - started,
            "refresh_s": refreshed - started,
            "webhook_s": None if hooked is None else hooked - started,
        })
        # Back in, then deactivated: the refresh is refused.
        status, answer = scim.call(
            "PATCH",
            f"/Groups/{gid}?excludedAttributes=members",
            {"schemas": [PATCH_URN], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": uid}]}]},
        )
        expect(status, answer, 200, "probe rejoins")
        token = sign_in(name)
        started = time.monotonic()
        status, answer = scim.call(
            "PATCH", f"/Users/{uid}",
            {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "value": {"active": False}}]},
        )
        expect(status, answer, 200, "deactivate")
        answered = time.monotonic()
        refresh_until(token, lambda s, a: s in (401, 403))
        refreshed = time.monotonic()
        hooked = webhook.wait(name, started)
        revocations["deactivation"].append({
            "patch_answered_s": answered - started,
            "refresh_s": refreshed - started,
            "webhook_s": None if hooked is None else hooked - started,
        })
    result["revocation"] = revocations
    print(json.dumps(result))


if __name__ == "__main__":
    main()
